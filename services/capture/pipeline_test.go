package capture_test

// End-to-end tests of what the capture starts: the whole pipeline in this
// process (internal/run), against real Postgres, NATS and OpenSearch, with
// what lands in OpenSearch compared to a fresh build from Postgres.

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
)

// ordersSchema reads orders as its root and users as a belongs_to target:
// with usersSchema, each table is a root of one index and related in the
// other.
const ordersSchema = `version: 1
table: orders
primary_key: id
fields:
  - integer: id
  - keyword: status
  - belongs_to: user
    column: user_id
    table: users
    primary_key: id
    fields:
      - keyword: email
`

// pipeline is a deployment whose pipeline runs in this process.
type pipeline struct {
	*harness.Deployment
	schemas map[string]string
	logs    *logBuffer
	p       *harness.Pipeline
}

func newPipeline(t *testing.T, ddl string, schemas map[string]string) *pipeline {
	t.Helper()
	return &pipeline{Deployment: harness.NewDeployment(t, ddl), schemas: schemas, logs: &logBuffer{}}
}

// start runs the pipeline until the test ends; it must stop cleanly.
func (e *pipeline) start() {
	e.T.Helper()
	var c harness.Config
	for name, body := range e.schemas {
		c.Indexes = append(c.Indexes, harness.Index{Name: name, Schema: body})
	}
	cfg := e.WriteConfig(c)
	// The pipeline logs through the default logger. Registered before the
	// pipeline's cleanup, this one runs after the pipeline stopped.
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(e.logs, nil)))
	e.T.Cleanup(func() {
		slog.SetDefault(prev)
		if e.T.Failed() {
			e.T.Logf("pipeline log:\n%s", e.logs)
		}
	})
	e.p = harness.Launch(e.T, e.Options(cfg, filepath.Join(e.Dir, "data")))
	e.p.Stages()
}

// converge waits until every index equals a fresh build from Postgres and
// returns how many documents each holds.
func (e *pipeline) converge(what string) map[string]int {
	e.T.Helper()
	start := time.Now()
	counts := map[string]int{}
	for name, body := range e.schemas {
		counts[name] = e.Converge(name, body, 2*time.Minute).Compared
	}
	e.T.Logf("%s: converged in %v", what, time.Since(start).Round(time.Millisecond))
	return counts
}

// TestTruncate truncates tables read by two indexes, each table the root of
// one and related in the other: a root truncate empties its index, a
// related truncate rebuilds the documents that read it.
func TestTruncate(t *testing.T) {
	e := newPipeline(t, `
		CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
		CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users, status text NOT NULL);
		INSERT INTO users SELECT g, 'u' || g || '@x.io' FROM generate_series(1, 50) g;
		INSERT INTO orders SELECT g, g % 50 + 1, 'new' FROM generate_series(1, 120) g;`,
		map[string]string{"users": usersSchema, "orders": ordersSchema})
	e.start()
	if got := e.converge("the backfill"); got["users"] != 50 || got["orders"] != 120 {
		t.Fatalf("backfill holds %v, want 50 users and 120 orders", got)
	}

	// orders: the root of "orders" (emptied), related in "users" (every
	// orderCount back to 0).
	e.Exec(`TRUNCATE orders`)
	if got := e.converge("TRUNCATE orders"); got["users"] != 50 || got["orders"] != 0 {
		t.Fatalf("after TRUNCATE orders: %v, want 50 users and no orders", got)
	}

	e.Exec(`INSERT INTO orders SELECT g, g % 10 + 1, 'paid' FROM generate_series(1, 30) g`)
	if got := e.converge("orders again"); got["orders"] != 30 {
		t.Fatalf("after new orders: %v, want 30 orders", got)
	}

	// users and orders together (CASCADE): both indexes emptied.
	e.Exec(`TRUNCATE users CASCADE`)
	if got := e.converge("TRUNCATE users CASCADE"); got["users"] != 0 || got["orders"] != 0 {
		t.Fatalf("after TRUNCATE users CASCADE: %v, want both empty", got)
	}

	// The pipeline goes on after a purge.
	e.Exec(`INSERT INTO users VALUES (7, 'new@x.io'); INSERT INTO orders VALUES (1, 7, 'new')`)
	if got := e.converge("rows after the purge"); got["users"] != 1 || got["orders"] != 1 {
		t.Fatalf("after new rows: %v, want one of each", got)
	}
}

// TestReconnectAfterPostgresRestart restarts Postgres while the pipeline
// streams under a steady write load: the capture reconnects and nothing is
// lost.
func TestReconnectAfterPostgresRestart(t *testing.T) {
	e := newPipeline(t, `
		CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
		CREATE TABLE orders (id serial PRIMARY KEY, user_id int NOT NULL, status text NOT NULL);
		INSERT INTO users SELECT g, 'u' || g || '@x.io' FROM generate_series(1, 200) g;
		INSERT INTO orders (user_id, status) SELECT g % 200 + 1, 'new' FROM generate_series(1, 400) g;`,
		map[string]string{"users": usersSchema})
	e.start()
	e.converge("the backfill")

	w := startLoad(t, e.DBURL, 200)
	w.waitWrites(t, 50)
	testenv.RestartService(t, "postgres", false)
	after := w.writes()
	w.waitWrites(t, after+50) // the load goes on past the restart
	w.stop()

	got := e.converge("the writes around the restart")
	t.Logf("converged (%v documents) after %d writes, %d failed around the restart", got, w.writes(), w.failed())
	lines := e.logs.lines("replication interrupted; reconnecting")
	if len(lines) == 0 {
		t.Fatalf("the capture did not report the lost replication connection")
	}
	t.Logf("the capture reported: %s", lines[0])
	if !e.p.Stages().Capture.Stats().Streaming {
		t.Errorf("the capture is not streaming after the restart")
	}
}

// load writes to users and orders until stopped, reconnecting whenever
// Postgres goes away.
type load struct {
	mu     sync.Mutex
	n, bad int
	cancel context.CancelFunc
	done   chan struct{}
}

func startLoad(t *testing.T, dbURL string, users int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	w := &load{cancel: cancel, done: make(chan struct{})}
	rng := rand.New(rand.NewPCG(1, 2))
	go func() {
		defer close(w.done)
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		for ctx.Err() == nil {
			if conn == nil || conn.IsClosed() {
				var err error
				if conn, err = pgx.Connect(ctx, dbURL); err != nil {
					conn = nil
					w.count(err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
			}
			id := rng.IntN(users) + 1
			var err error
			switch rng.IntN(4) {
			case 0:
				_, err = conn.Exec(ctx, `INSERT INTO orders (user_id, status) VALUES ($1, 'new')`, id)
			case 1:
				_, err = conn.Exec(ctx, `DELETE FROM orders WHERE id = (SELECT min(id) FROM orders WHERE user_id = $1)`, id)
			case 2:
				_, err = conn.Exec(ctx, `UPDATE orders SET user_id = $1 WHERE id = (SELECT max(id) FROM orders WHERE user_id <> $1)`, id)
			case 3:
				_, err = conn.Exec(ctx, `UPDATE users SET email = $2 WHERE id = $1`, id, fmt.Sprintf("v%d@x.io", rng.Int()))
			}
			if ctx.Err() == nil {
				w.count(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *load) count(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.bad++
	} else {
		w.n++
	}
}

func (w *load) writes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func (w *load) failed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bad
}

func (w *load) waitWrites(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for w.writes() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the load made %d writes, want %d", w.writes(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *load) stop() {
	w.cancel()
	<-w.done
}
