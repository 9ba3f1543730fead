package assembler

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/testenv"
)

func TestSnapshotVisible(t *testing.T) {
	tests := []struct {
		name string
		snap string
		xid  uint32
		want bool
	}{
		{"below xmin", "100:105:", 99, true},
		{"between, not running", "100:105:101,103", 102, true},
		{"between, running", "100:105:101,103", 103, false},
		{"at xmax: not started when the snapshot was taken", "100:105:", 105, false},
		{"past xmax", "100:105:", 110, false},
		{"second epoch, below xmin", "4294967396:4294967401:", 99, true},
		{"xmax wrapped, xid before the wrap", "4294967290:4294967306:", 4294967295, true},
		{"xmax wrapped, xid before the wrap still running", "4294967290:4294967306:4294967295", 4294967295, false},
		{"xmax wrapped, xid after the wrap", "4294967290:4294967306:", 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseSnapshot(tt.snap)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.visible(tt.xid); got != tt.want {
				t.Errorf("visible(%d) in %s = %v, want %v", tt.xid, tt.snap, got, tt.want)
			}
		})
	}
}

func TestParseSnapshotRejectsGarbage(t *testing.T) {
	for _, text := range []string{"", "1:2", "a:2:", "1:b:", "1:2:x"} {
		if _, err := parseSnapshot(text); err == nil {
			t.Errorf("parseSnapshot(%q) accepted it", text)
		}
	}
}

// TestAwaitVisibleWaitsForARunningTransaction holds a transaction open on
// a real Postgres: the wait must last until it commits.
func TestAwaitVisibleWaitsForARunningTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: needs Postgres")
	}
	ctx := context.Background()
	url := testenv.Postgres(t)
	db := testenv.Conn(t, url)
	if _, err := db.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	tx, err := testenv.Conn(t, url).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var xid uint32
	if err := tx.QueryRow(ctx, `INSERT INTO t VALUES (1) RETURNING (pg_current_xact_id()::text::bigint % 4294967296)::bigint`).Scan(&xid); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- awaitVisible(ctx, db, map[uint32]bool{xid: true}, slog.Default()) }()
	select {
	case err := <-done:
		t.Fatalf("returned (%v) while transaction %d was still running", err, xid)
	case <-time.After(300 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still waiting 10 s after transaction %d committed", xid)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after the wait a new query sees %d rows (%v), want 1", n, err)
	}
}
