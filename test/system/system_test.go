// Package system tests flusso as an operator runs it: real processes of the
// built binary against real Postgres, NATS and OpenSearch, killed and
// restarted, with what lands in OpenSearch compared to a fresh build.
package system

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/schema"
)

// deployment is one flusso deployment under test: a database, an index
// prefix, a config directory and a broker.
type deployment struct {
	t      *testing.T
	dbURL  string
	db     *pgx.Conn
	os     string
	prefix string
	dir    string
	nats   *testenv.NATSProcess
}

func newDeployment(t *testing.T, ddl string) *deployment {
	t.Helper()
	d := &deployment{t: t, dbURL: testenv.Postgres(t), os: testenv.OpenSearch(t), prefix: testenv.IndexPrefix(t), dir: t.TempDir()}
	d.db = testenv.Conn(t, d.dbURL)
	d.exec(ddl)
	d.nats = testenv.StartNATSProcess(t)
	return d
}

func (d *deployment) exec(sql string, args ...any) {
	d.t.Helper()
	if _, err := d.db.Exec(context.Background(), sql, args...); err != nil {
		d.t.Fatalf("exec %q: %v", sql, err)
	}
}

// writeConfig writes flusso.toml and the schemas into the deployment's
// directory.
func (d *deployment) writeConfig(schemas map[string]string, onError string) {
	d.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "on_error = %q\nprefix = %q\n\n[source]\ntype = \"postgres\"\nconnection_url = %q\n\n", onError, d.prefix, d.dbURL)
	fmt.Fprintf(&b, "[sinks.primary]\ntype = \"opensearch\"\nurl = %q\nnumber_of_replicas = 0\nrefresh_interval = \"1s\"\nmax_retries = 8\n\n", d.os)
	for name, body := range schemas {
		file := name + ".schema.yml"
		if err := os.WriteFile(filepath.Join(d.dir, file), []byte(body), 0o644); err != nil {
			d.t.Fatal(err)
		}
		fmt.Fprintf(&b, "[[index]]\nname = %q\nschema = %q\nenabled = true\n\n", name, file)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "flusso.toml"), []byte(b.String()), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// proc prepares a flusso process of this deployment on the external broker.
func (d *deployment) proc(name string, args ...string) *harness.Proc {
	d.t.Helper()
	args = append([]string{"--config", "flusso.toml", "--nats-url", d.nats.URL, "--lock", name + ".lock", "--slot", d.slot()}, args...)
	return harness.NewProc(d.t, name, d.dir, args...)
}

// slot is the deployment's replication slot: slot names are cluster-wide
// and tests share the cluster.
func (d *deployment) slot() string { return "flusso_" + strings.TrimSuffix(d.prefix, "_") }

// confirmed reads the slot's confirmed position.
func (d *deployment) confirmed() uint64 {
	d.t.Helper()
	var lsn *string
	err := d.db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, d.slot()).Scan(&lsn)
	if err != nil || lsn == nil {
		return 0
	}
	return parseLSN(d.t, *lsn)
}

func (d *deployment) walPosition() uint64 {
	d.t.Helper()
	var lsn string
	if err := d.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		d.t.Fatal(err)
	}
	return parseLSN(d.t, lsn)
}

func parseLSN(t testing.TB, s string) uint64 {
	var hi, lo uint64
	if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
		t.Fatalf("parsing LSN %q: %v", s, err)
	}
	return hi<<32 | lo
}

// settle waits until the index equals a fresh build from Postgres.
func (d *deployment) settle(name, body string, within time.Duration, procs ...*harness.Proc) harness.Result {
	d.t.Helper()
	ix, err := schema.Parse(name+".schema.yml", []byte(body))
	if err != nil {
		d.t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	var res harness.Result
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		res, err = harness.Compare(ctx, d.dbURL, d.os, d.prefix+name, name, ix)
		cancel()
		if err == nil && res.OK() {
			return res
		}
		if time.Now().After(deadline) {
			for _, p := range procs {
				d.t.Logf("%s log tail:\n%s", p.Name, p.Tail())
			}
			d.t.Fatalf("index %s did not converge within %s: %v %v", name, within, res, err)
		}
		for _, p := range procs {
			if done, perr := p.Exited(); done {
				d.t.Fatalf("%s exited (%v) before the index converged:\n%s", p.Name, perr, p.Tail())
			}
		}
		time.Sleep(time.Second)
	}
}
