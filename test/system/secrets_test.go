package system

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
)

// TestSecretsStayOut runs flusso with a database password, an OpenSearch
// password and control-surface credentials, drives it (backfill, a live
// change, an authorized and a refused control call), then greps its log,
// its lock, /status and /metrics: none of the secrets may appear.
func TestSecretsStayOut(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: needs the dev services")
	}
	d := newDeployment(t, `
		CREATE TABLE accounts (id bigserial PRIMARY KEY, ver bigint NOT NULL DEFAULT 0, name text NOT NULL);
		CREATE TABLE notes (id bigserial PRIMARY KEY, account_id bigint NOT NULL REFERENCES accounts, body text NOT NULL);
		INSERT INTO accounts (name) SELECT 'a' || g FROM generate_series(1, 100) g;`)
	suffix := strings.TrimSuffix(d.Prefix, "_")
	dbSecret := "DbPw-" + suffix + "-x9"
	osSecret := "OsPw-" + suffix + "-y8"
	adminSecret := "AdPw-" + suffix + "-z7"

	// A role of our own, so its password is a string found nowhere else.
	role := "sec_" + suffix
	admin := testenv.Conn(t, testenv.PostgresAdminURL())
	if _, err := admin.Exec(context.Background(), fmt.Sprintf("CREATE ROLE %s LOGIN SUPERUSER REPLICATION PASSWORD '%s'", role, dbSecret)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testenv.PostgresAdminURL())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
			c.Close(context.Background())
		}
	})
	u, _ := url.Parse(d.DBURL)
	u.User = url.UserPassword(role, dbSecret)

	cfg := fmt.Sprintf(`prefix = %q
[source]
type = "postgres"
connection_url = { env = "SECRET_TEST_DB_URL" }

[sinks.primary]
type = "opensearch"
url = %q
username = "flusso"
password = { env = "SECRET_TEST_OS_PASSWORD" }
number_of_replicas = 0
refresh_interval = "1s"

[[index]]
name = "accounts"
schema = "accounts.schema.yml"
enabled = true
`, d.Prefix, d.OpenSearch)
	must(t, os.WriteFile(filepath.Join(d.Dir, "flusso.toml"), []byte(cfg), 0o644))
	must(t, os.WriteFile(filepath.Join(d.Dir, "accounts.schema.yml"), []byte(accountsSchema), 0o644))

	p := d.proc("flusso", "--admin-user", "ops")
	p.Env = []string{
		"SECRET_TEST_DB_URL=" + u.String(),
		"SECRET_TEST_OS_PASSWORD=" + osSecret,
		"FLUSSO_ADMIN_PASSWORD=" + adminSecret,
		"RUST_LOG=debug",
	}
	p.Start()
	d.Converge("accounts", accountsSchema, 2*time.Minute, p)
	d.Exec(`UPDATE accounts SET name = 'changed' WHERE id = 1`)
	d.Converge("accounts", accountsSchema, time.Minute, p)

	private := privateAddr(t, p)
	for _, pw := range []string{adminSecret, "wrong-" + adminSecret} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+private+"/indexes", nil)
		req.SetBasicAuth("ops", pw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		mustNotContain(t, "/indexes answer", string(body), dbSecret, osSecret, adminSecret)
	}
	for _, path := range []string{"/status", "/metrics"} {
		resp, err := http.Get("http://" + p.Public + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		mustNotContain(t, path, string(body), dbSecret, osSecret, adminSecret)
	}
	p.Stop()
	lock, err := os.ReadFile(filepath.Join(d.Dir, "flusso.lock"))
	must(t, err)
	mustNotContain(t, "flusso.lock", string(lock), dbSecret, osSecret, adminSecret)
	log, err := os.ReadFile(p.LogFile)
	must(t, err)
	mustNotContain(t, "the log", string(log), dbSecret, osSecret, adminSecret)
}

// privateAddr is the private surface address the harness gave the process.
func privateAddr(t *testing.T, p *harness.Proc) string {
	for i, a := range p.Args {
		if a == "--private-address" {
			return p.Args[i+1]
		}
	}
	t.Fatal("no --private-address")
	return ""
}

func mustNotContain(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s contains the secret %q", where, s)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
