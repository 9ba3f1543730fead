package run

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/config"
)

const usersSchema = `version: 1
table: users
primary_key: id
soft_delete: { column: deleted }
fields:
  - integer: id
  - keyword: email
    required: true
    transforms: [lowercase, trim]
  - has_many: orders
    table: orders
    foreign_key: user_id
    primary_key: id
    order_by: [{ column: id, direction: asc }]
    fields:
      - integer: id
      - double: total
        required: true
      - keyword: status
        required: true
  - count: orderCount
    table: orders
    foreign_key: user_id
`

// e2e is one pipeline under test against real Postgres, NATS and OpenSearch.
type e2e struct {
	t      *testing.T
	db     *pgx.Conn
	dbURL  string
	os     string
	prefix string
	dir    string
}

func newE2E(t *testing.T, tables string) *e2e {
	t.Helper()
	e := &e2e{t: t, dbURL: testenv.Postgres(t), os: testenv.OpenSearch(t), prefix: testenv.IndexPrefix(t), dir: t.TempDir()}
	e.db = testenv.Conn(t, e.dbURL)
	e.exec(tables)
	return e
}

func (e *e2e) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("exec %q: %v", sql, err)
	}
}

// config writes flusso.toml with the given schemas and loads it.
func (e *e2e) config(schemas map[string]string, extra string) *config.Config {
	e.t.Helper()
	var b strings.Builder
	b.WriteString(extra) // top-level keys must come before the tables
	fmt.Fprintf(&b, "[source]\ntype = \"postgres\"\nconnection_url = %q\n\n", e.dbURL)
	fmt.Fprintf(&b, "[sinks.primary]\ntype = \"opensearch\"\nurl = %q\nnumber_of_replicas = 0\nrefresh_interval = \"1s\"\n\n", e.os)
	for name, body := range schemas {
		file := name + ".schema.yml"
		if err := os.WriteFile(filepath.Join(e.dir, file), []byte(body), 0o644); err != nil {
			e.t.Fatal(err)
		}
		fmt.Fprintf(&b, "[[index]]\nname = %q\nschema = %q\nenabled = true\n\n", name, file)
	}
	path := filepath.Join(e.dir, "flusso.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		e.t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		e.t.Fatalf("loading config: %v", err)
	}
	return cfg
}

// start runs the pipeline in the background; stop cancels it and checks
// it ended cleanly.
func (e *e2e) start(cfg *config.Config, data string) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Config: cfg, Slot: "flusso_" + strings.TrimSuffix(e.prefix, "_"), Publication: "flusso", ManagePublication: true,
			QueueCapacity: 1000, LagPoll: time.Second, IndexPrefix: e.prefix,
			DataDir: data, Version: "test", PublicAddress: "127.0.0.1:0", PrivateAddress: "127.0.0.1:0",
		})
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("pipeline ended with: %v", err)
			}
		case <-time.After(30 * time.Second):
			e.t.Errorf("pipeline did not stop within 30s")
		}
	}
	e.t.Cleanup(stop)
	go func() {
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("pipeline failed: %v", err)
			}
			done <- err
		case <-ctx.Done():
		}
	}()
	return stop
}

// docs returns the documents of an index by id, read through the
// convenience alias.
func (e *e2e) docs(index string) map[string]map[string]any {
	e.t.Helper()
	url := fmt.Sprintf("%s/%s%s/_search?size=10000", e.os, e.prefix, index)
	resp, err := http.Get(url)
	if err != nil {
		e.t.Fatalf("search: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("search %s: %d %s", url, resp.StatusCode, body)
	}
	var out struct {
		Hits struct {
			Hits []struct {
				ID     string         `json:"_id"`
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		e.t.Fatalf("decoding search: %v", err)
	}
	docs := map[string]map[string]any{}
	for _, h := range out.Hits.Hits {
		docs[h.ID] = h.Source
	}
	return docs
}

// eventually polls cond until it holds or 30s pass.
func (e *e2e) eventually(what string, cond func(map[string]map[string]any) bool, index string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last map[string]map[string]any
	for time.Now().Before(deadline) {
		http.Post(fmt.Sprintf("%s/%s%s/_refresh", e.os, e.prefix, index), "application/json", nil) //nolint:errcheck
		last = e.docs(index)
		if cond(last) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", " ")
	e.t.Fatalf("timed out waiting for %s; documents now:\n%s", what, b)
}

func TestEndToEndUsersWithOrders(t *testing.T) {
	e := newE2E(t, `
		CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, deleted boolean NOT NULL DEFAULT false);
		CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users, total numeric NOT NULL, status text NOT NULL);
		INSERT INTO users (email) VALUES (' Ada@X.io '), ('bob@x.io'), ('cy@x.io');
		INSERT INTO orders (user_id, total, status) VALUES (1, 10.5, 'paid'), (1, 3, 'new'), (2, 7, 'paid');`)
	cfg := e.config(map[string]string{"users": usersSchema}, "")
	e.start(cfg, t.TempDir())

	e.eventually("the backfill", func(d map[string]map[string]any) bool {
		return len(d) == 3 && d["1"]["email"] == "ada@x.io" && d["1"]["orderCount"] == float64(2) && d["3"]["orderCount"] == float64(0)
	}, "users")

	e.exec(`UPDATE users SET email = 'ADA@new.io' WHERE id = 1`)
	e.eventually("a root update", func(d map[string]map[string]any) bool { return d["1"]["email"] == "ada@new.io" }, "users")

	e.exec(`INSERT INTO orders (user_id, total, status) VALUES (3, 1, 'new')`)
	e.eventually("a child insert", func(d map[string]map[string]any) bool { return d["3"]["orderCount"] == float64(1) }, "users")

	e.exec(`UPDATE orders SET user_id = 2 WHERE id = 1`)
	e.eventually("a child moved to another parent", func(d map[string]map[string]any) bool {
		return d["1"]["orderCount"] == float64(1) && d["2"]["orderCount"] == float64(2)
	}, "users")

	e.exec(`DELETE FROM orders WHERE id = 3`)
	e.eventually("a child delete", func(d map[string]map[string]any) bool { return d["2"]["orderCount"] == float64(1) }, "users")

	e.exec(`UPDATE users SET deleted = true WHERE id = 3`)
	e.eventually("a soft delete", func(d map[string]map[string]any) bool { _, ok := d["3"]; return !ok && len(d) == 2 }, "users")

	e.exec(`INSERT INTO users (email) VALUES ('dee@x.io')`)
	e.exec(`DELETE FROM orders WHERE user_id = 2`)
	e.exec(`DELETE FROM users WHERE id = 2`)
	e.eventually("an insert and a hard delete", func(d map[string]map[string]any) bool {
		_, two := d["2"]
		return !two && d["4"]["email"] == "dee@x.io"
	}, "users")
}
