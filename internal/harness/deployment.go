package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/schema"
)

// Deployment is one flusso deployment under test: a fresh database, an index
// prefix of its own on the dev OpenSearch node and a directory for its
// flusso.toml and schemas. Tests share the services, so each deployment
// names its own slot too.
type Deployment struct {
	T          testing.TB
	DBURL      string
	DB         *pgxpool.Pool // a pool survives a Postgres restart
	OpenSearch string
	Prefix     string
	Dir        string
}

// NewDeployment creates the database and runs ddl in it.
func NewDeployment(t testing.TB, ddl string) *Deployment {
	t.Helper()
	d := &Deployment{T: t, DBURL: testenv.Postgres(t), OpenSearch: testenv.OpenSearch(t), Prefix: testenv.IndexPrefix(t), Dir: t.TempDir()}
	db, err := pgxpool.New(context.Background(), d.DBURL)
	if err != nil {
		t.Fatalf("harness: connecting to the deployment's database: %v", err)
	}
	t.Cleanup(db.Close)
	d.DB = db
	d.Exec(ddl)
	return d
}

// Exec runs sql in the deployment's database.
func (d *Deployment) Exec(sql string, args ...any) {
	d.T.Helper()
	if _, err := d.DB.Exec(context.Background(), sql, args...); err != nil {
		d.T.Fatalf("exec %q: %v", sql, err)
	}
}

// Slot is the deployment's replication slot: slot names are cluster-wide.
func (d *Deployment) Slot() string { return "flusso_" + strings.TrimSuffix(d.Prefix, "_") }

// Config is what a test puts in flusso.toml besides what the deployment
// fixes: its database as the source, its OpenSearch node as the sink
// "primary" and its prefix.
type Config struct {
	OnError    string // global on_error; "" keeps the default
	MaxRetries int    // of the primary sink; 0 keeps the default
	// Nodes is the primary sink's url: several nodes' URLs, comma-separated,
	// for a test on an OpenSearch cluster; "" is the deployment's node.
	Nodes string
	// Replicas is the primary sink's number_of_replicas (a cluster keeps a
	// copy of each shard on another node); 0 keeps none.
	Replicas int
	Sinks    string // more [sinks.*] tables, as TOML
	Indexes  []Index
}

// Index is one [[index]] of flusso.toml, its schema written next to it.
type Index struct {
	Name, Schema string
	OnError      string // "" inherits the global one
}

// WriteConfig writes flusso.toml and the schemas into the deployment's
// directory and returns the config loaded from there.
func (d *Deployment) WriteConfig(c Config) *config.Config {
	d.T.Helper()
	var b strings.Builder
	if c.OnError != "" {
		fmt.Fprintf(&b, "on_error = %q\n", c.OnError)
	}
	fmt.Fprintf(&b, "prefix = %q\n\n[source]\ntype = \"postgres\"\nconnection_url = %q\n\n", d.Prefix, d.DBURL)
	nodes := d.OpenSearch
	if c.Nodes != "" {
		nodes = c.Nodes
	}
	fmt.Fprintf(&b, "[sinks.primary]\ntype = \"opensearch\"\nurl = %q\nnumber_of_replicas = %d\nrefresh_interval = \"1s\"\n", nodes, c.Replicas)
	if c.MaxRetries > 0 {
		fmt.Fprintf(&b, "max_retries = %d\n", c.MaxRetries)
	}
	fmt.Fprintf(&b, "\n%s", c.Sinks)
	for _, ix := range c.Indexes {
		file := ix.Name + ".schema.yml"
		if err := os.WriteFile(filepath.Join(d.Dir, file), []byte(ix.Schema), 0o644); err != nil {
			d.T.Fatal(err)
		}
		fmt.Fprintf(&b, "\n[[index]]\nname = %q\nschema = %q\nenabled = true\n", ix.Name, file)
		if ix.OnError != "" {
			fmt.Fprintf(&b, "on_error = %q\n", ix.OnError)
		}
	}
	path := filepath.Join(d.Dir, "flusso.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		d.T.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		d.T.Fatalf("loading the config: %v\n%s", err, b.String())
	}
	return cfg
}

// Converge waits until the index name, read through its convenience alias,
// equals a fresh build from Postgres with schemaBody. It fails the test when
// one of procs exits first, or after within, showing their logs.
func (d *Deployment) Converge(name, schemaBody string, within time.Duration, procs ...*Proc) Result {
	d.T.Helper()
	ix, err := schema.Parse(name+".schema.yml", []byte(schemaBody))
	if err != nil {
		d.T.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for {
		// One comparison may end past the deadline: a large index takes a while.
		ctx, cancel := context.WithTimeout(context.Background(), within)
		res, err := Compare(ctx, d.DBURL, d.OpenSearch, d.Prefix+name, name, ix)
		cancel()
		if err == nil && res.OK() {
			return res
		}
		if time.Now().After(deadline) {
			for _, p := range procs {
				d.T.Logf("%s log tail:\n%s", p.Name, p.Tail())
			}
			d.T.Logf("where the differing documents came from:\n%s", d.provenance(d.Prefix+name, append(first(res.Extra), first(res.Mismatches)...)))
			d.T.Fatalf("index %s did not converge within %v: %v %v", name, within, res, err)
		}
		for _, p := range procs {
			if done, perr := p.Exited(); done {
				d.T.Fatalf("%s exited (%v) before index %s converged:\n%s", p.Name, perr, name, p.Tail())
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// SlotState is the deployment's replication slot as Postgres has it.
func (d *Deployment) SlotState() (active bool, confirmed pglogrepl.LSN) {
	d.T.Helper()
	return SlotState(d.T, d.DB, d.Slot())
}

// WALPosition is the database server's current WAL position.
func (d *Deployment) WALPosition() pglogrepl.LSN {
	d.T.Helper()
	var lsn pglogrepl.LSN
	if err := d.DB.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		d.T.Fatalf("reading the WAL position: %v", err)
	}
	return lsn
}

// RowQuerier is a connection or a pool.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SlotState reads replication slot slot: whether a client streams from it
// and how far it is confirmed. A slot that does not exist (yet) is neither.
func SlotState(t testing.TB, db RowQuerier, slot string) (active bool, confirmed pglogrepl.LSN) {
	t.Helper()
	err := db.QueryRow(context.Background(), `SELECT coalesce(bool_or(active), false), coalesce(max(confirmed_flush_lsn), '0/0')::text
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active, &confirmed)
	if err != nil {
		t.Fatalf("reading slot %s: %v", slot, err)
	}
	return active, confirmed
}

// provenance reads, per id, the version, sequence number and primary term
// OpenSearch holds: the primary term tells a write before a node restart from
// one after it, the version (a commit LSN) which build wrote it.
func (d *Deployment) provenance(alias string, ids []string) string {
	var b strings.Builder
	for _, id := range ids {
		resp, err := http.Get(d.OpenSearch + "/" + alias + "/_doc/" + url.PathEscape(id))
		if err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", id, err)
			continue
		}
		var doc struct {
			Index   string `json:"_index"`
			Version int64  `json:"_version"`
			SeqNo   int64  `json:"_seq_no"`
			Term    int64  `json:"_primary_term"`
		}
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		fmt.Fprintf(&b, "  %s: index %s version %d (LSN %s) seq_no %d primary_term %d %v\n", id, doc.Index, doc.Version, pglogrepl.LSN(doc.Version), doc.SeqNo, doc.Term, err)
	}
	return b.String()
}
