package run_test

import (
	"testing"
	"time"

	"github.com/flusso/flusso/internal/harness"
)

// TestHotParentIsBuiltAFewTimes: 10,000 child rows of one parent, in one
// transaction, rebuild the parent a few times (once per batch of
// changes), not 10,000 times.
func TestHotParentIsBuiltAFewTimes(t *testing.T) {
	e := newE2E(t, `
		CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, deleted boolean NOT NULL DEFAULT false);
		CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users, total numeric NOT NULL, status text NOT NULL);
		CREATE INDEX ON orders (user_id);
		INSERT INTO users (email) VALUES ('hot@x.io'), ('cold@x.io');`)
	cfg := e.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "users", Schema: usersSchema}}})
	pipeline := harness.Launch(t, e.Options(cfg, t.TempDir()))
	p := pipeline.Stages()
	e.awaitDocs("the backfill", "users", func(d map[string]map[string]any) bool { return len(d) == 2 })
	before := p.Meters.Built.Snapshot()["users"]

	e.Exec(`INSERT INTO orders (user_id, total, status) SELECT 1, g, 'new' FROM generate_series(1, 10000) g`)
	e.awaitDocs("the hot parent", "users", func(d map[string]map[string]any) bool { return d["1"]["orderCount"] == float64(10000) })
	time.Sleep(time.Second) // let the last batches settle
	builds := p.Meters.Built.Snapshot()["users"] - before
	t.Logf("10,000 child changes rebuilt the parent %d times", builds)
	if builds > 100 {
		t.Errorf("the hot parent was built %d times for 10,000 child changes; want a few (one per batch)", builds)
	}
	pipeline.StopClean()
}
