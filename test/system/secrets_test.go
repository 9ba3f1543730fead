package system

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
)

// TestSecretsStayOut runs flusso with a database password and sslpassword,
// a NATS password, an OpenSearch password and control-surface credentials,
// drives it (backfill, a live change, an authorized and a refused control
// call), then greps its log, its lock, /status and /metrics: none of the
// secrets may appear. TestSecretsStayOutOfCommands covers the commands.
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
	createRole(t, role, "SUPERUSER REPLICATION", dbSecret)
	sslSecret := "SslPw-" + suffix + "-w6"
	natsSecret := "NatsPw-" + suffix + "-v5"
	u, _ := url.Parse(d.DBURL)
	u.User = url.UserPassword(role, dbSecret)
	// Read only with a client key, which this URL has none of: a secret
	// the pipeline carries without using.
	q := u.Query()
	q.Set("sslpassword", sslSecret)
	u.RawQuery = q.Encode()
	natsURL, _ := url.Parse(d.nats.URL)
	natsURL.User = url.UserPassword("flusso", natsSecret) // a server without auth ignores it
	secrets := []string{dbSecret, osSecret, adminSecret, sslSecret, natsSecret}

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

	p := harness.NewProc(t, "flusso", d.Dir, "--config", "flusso.toml", "--nats-url", natsURL.String(), "--lock", "flusso.lock", "--slot", d.Slot(), "--admin-user", "ops")
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
		mustNotContain(t, "/indexes answer", string(body), secrets...)
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
		mustNotContain(t, path, string(body), secrets...)
	}
	p.Stop()
	lock, err := os.ReadFile(filepath.Join(d.Dir, "flusso.lock"))
	must(t, err)
	mustNotContain(t, "flusso.lock", string(lock), secrets...)
	log, err := os.ReadFile(p.LogFile)
	must(t, err)
	mustNotContain(t, "the log", string(log), secrets...)
}

// TestSecretsStayOutOfCommands runs the commands that print connection
// settings or fail quoting them, with each kind of secret in each place it
// can be given, and greps what they print (report, log lines, the final
// error line) for it. The keyword form (password=…) is refused in config
// files and flags, so only errors quote it: internal/server's test has it.
func TestSecretsStayOutOfCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: needs the dev services")
	}
	d := harness.NewDeployment(t, `CREATE TABLE accounts (id bigserial PRIMARY KEY, ver bigint NOT NULL DEFAULT 0, name text NOT NULL);
		CREATE TABLE notes (id bigserial PRIMARY KEY, account_id bigint NOT NULL REFERENCES accounts, body text NOT NULL);`)
	suffix := strings.TrimSuffix(d.Prefix, "_")
	role := "cli_" + suffix
	dbSecret := "CliPw-" + suffix + "-q4"
	createRole(t, role, "SUPERUSER", dbSecret)
	must(t, os.WriteFile(filepath.Join(d.Dir, "accounts.schema.yml"), []byte(accountsSchema), 0o644))
	db, _ := url.Parse(d.DBURL)
	closed := testenv.FreeAddr(t) // nobody listens there

	// pgURL is the deployment's database (or, down, a closed port) reached
	// as role with the password given in the user info or the query, and a
	// secret sslpassword beside it.
	pgURL := func(pwInQuery, down bool) string {
		u := *db
		if down {
			u.Host = closed
		}
		q := u.Query()
		q.Set("sslpassword", "SslPw-"+suffix)
		if pwInQuery {
			u.User = url.User(role)
			q.Set("password", dbSecret)
		} else {
			u.User = url.UserPassword(role, dbSecret)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	// config writes a flusso.toml with that source and sink, returning its path.
	n := 0
	config := func(connURL, sinkURL, sinkPassword string) string {
		n++
		path := filepath.Join(d.Dir, fmt.Sprintf("flusso-%d.toml", n))
		must(t, os.WriteFile(path, []byte(fmt.Sprintf(`[source]
type = "postgres"
connection_url = %q

[sinks.primary]
type = "opensearch"
url = %q
password = %q

[[index]]
name = "accounts"
schema = "accounts.schema.yml"
enabled = true
`, connURL, sinkURL, sinkPassword)), 0o644))
		return path
	}
	sinkSecret := "SinkPw-" + suffix
	sinkURLSecret := "SinkUrlPw-" + suffix
	sinkURL := "https://flusso:" + sinkURLSecret + "@search.example:9200"
	natsSecret := "NatsPw-" + suffix
	adminSecret := "AdminPw-" + suffix

	type run struct {
		output string
		args   []string
		want   string // printed where the secret would be: the grep proves something
	}
	checks := func(cfg string) []run {
		return []run{
			{"check --offline (human)", []string{"check", "--offline", "-c", cfg}, "xxxxx"},
			{"check --offline (json)", []string{"check", "--offline", "--format", "json", "-c", cfg}, "xxxxx"},
			{"check (human)", []string{"check", "-c", cfg}, "database postgres://" + role},
			{"check (json)", []string{"check", "--format", "json", "-c", cfg}, ""}, // prints no connection settings
		}
	}
	tests := []struct {
		kind    string
		secrets []string
		runs    []run
	}{
		{"database URL password", []string{dbSecret, "SslPw-" + suffix}, checks(config(pgURL(false, false), "https://search.example:9200", ""))},
		{"database ?password= and sslpassword=", []string{dbSecret, "SslPw-" + suffix}, checks(config(pgURL(true, false), "https://search.example:9200", ""))},
		{"database password in a connect error", []string{dbSecret, "SslPw-" + suffix}, []run{
			{"check, exit message", []string{"check", "-c", config(pgURL(false, true), "https://search.example:9200", "")}, "connecting to postgres://" + role},
			{"check ?password=, exit message", []string{"check", "-c", config(pgURL(true, true), "https://search.example:9200", "")}, "connecting to postgres://" + role},
		}},
		{"sink URL password and sink password", []string{sinkURLSecret, sinkSecret}, checks(config(pgURL(false, false), sinkURL, sinkSecret))[:2]},
		{"NATS user:password", []string{natsSecret}, []run{
			{"quarantine, exit message", []string{"quarantine", "list", "--nats-url", "nats://flusso:" + natsSecret + "@" + closed}, "xxxxx@"},
		}},
		{"NATS token", []string{natsSecret}, []run{
			{"quarantine, exit message", []string{"quarantine", "list", "--nats-url", "nats://" + natsSecret + "@" + closed}, "xxxxx@"},
		}},
		{"control surface password", []string{adminSecret}, []run{
			{"indexes --server user:password, exit message", []string{"indexes", "--server", "http://ops:" + adminSecret + "@" + closed}, "xxxxx@"},
			{"reindex --admin-password, exit message", []string{"reindex", "--server", "http://" + closed, "--admin-password", adminSecret, "accounts"}, ""}, // never printed
		}},
	}
	bin := harness.Binary(t)
	for _, tc := range tests {
		for _, r := range tc.runs {
			t.Run(tc.kind+" × "+r.output, func(t *testing.T) {
				t.Parallel() // a NATS connect waits out its 10 s
				cmd := exec.Command(bin, r.args...)
				cmd.Dir = d.Dir
				cmd.Env = append(os.Environ(), "RUST_LOG=debug", "NO_COLOR=1")
				out, err := cmd.CombinedOutput()
				mustNotContain(t, strings.Join(r.args, " "), string(out), tc.secrets...)
				if !strings.Contains(string(out), r.want) {
					t.Errorf("%s did not print %q (exit %v):\n%s", strings.Join(r.args, " "), r.want, err, out)
				}
			})
		}
	}
}

// privateAddr is the private surface address the harness gave the process.
// createRole creates a login role with attrs and password, dropped at
// cleanup.
func createRole(t *testing.T, role, attrs, password string) {
	t.Helper()
	admin := testenv.Conn(t, testenv.PostgresAdminURL())
	if _, err := admin.Exec(context.Background(), fmt.Sprintf("CREATE ROLE %s LOGIN %s PASSWORD '%s'", role, attrs, password)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testenv.PostgresAdminURL())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
			c.Close(context.Background())
		}
	})
}

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
