package main

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/internal/testenv"
)

// TestCleanupRemovesWhatARunMade leaves behind what a failed run would: a
// process still running, a publication, an inactive replication slot and
// one a process still streams from (as PGSync's), and an index; cleanup
// must remove them all.
func TestCleanupRemovesWhatARunMade(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.Postgres(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	admin, err := pgxpool.New(ctx, testenv.PostgresAdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	slots := []string{"bench_cleanup_idle_" + db[len(db)-8:], "bench_cleanup_busy_" + db[len(db)-8:]}
	for _, sql := range []string{
		"CREATE TABLE users (id int PRIMARY KEY)",
		"CREATE PUBLICATION bench FOR TABLE users",
		"SELECT pg_create_logical_replication_slot('" + slots[0] + "', 'pgoutput')",
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// A slot in use, the way a peer left running holds one.
	repl, err := pgconn.Connect(ctx, dbURL+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(ctx)
	if _, err := pglogrepl.CreateReplicationSlot(ctx, repl, slots[1], "pgoutput", pglogrepl.CreateReplicationSlotOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pglogrepl.StartReplication(ctx, repl, slots[1], 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'bench'"}}); err != nil {
		t.Fatal(err)
	}
	s := newSearch(testenv.OpenSearch(t))
	prefix := testenv.IndexPrefix(t)
	if b, code, err := s.do(ctx, "PUT", "/"+prefix+"users", nil); err != nil || code != 200 {
		t.Fatalf("creating index: %d %s %v", code, b, err)
	}
	p, err := startProc("sleeper", "test", filepath.Join(t.TempDir(), "sleeper.log"), nil, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}

	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	l := leftovers{admin: admin, search: s, databases: []string{db}, prefixes: []string{prefix}}
	if err := l.cleanup(cctx); err != nil {
		t.Fatalf("cleanup: %v", err)
	}

	if ok, _ := p.exited(); !ok {
		t.Error("the process still runs")
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = ANY($1)", slots).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d of the replication slots left (%v)", n, err)
	}
	// The publication went with its database.
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", db).Scan(&n); err != nil || n != 0 {
		t.Errorf("database %s left (%v)", db, err)
	}
	if c, err := s.count(ctx, prefix+"users"); err != nil || c != -1 {
		t.Errorf("index %susers left: count %d (%v)", prefix, c, err)
	}
}
