package assembler

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
	"github.com/flusso/flusso/proto/flussopb"
)

// TestBacklogBound checks that an assembler stops building while the
// writers' backlog is over MaxBacklog, overrunning it by at most one group,
// and goes on once the writers take documents.
func TestBacklogBound(t *testing.T) {
	const (
		rows       = 600
		batchKeys  = 50
		maxBacklog = 100
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, fmt.Sprintf(
		"CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, %d) i", rows)); err != nil {
		t.Fatal(err)
	}
	def, err := schema.Parse("items.schema.yml", []byte("version: 1\ntable: items\nprimary_key: id\nfields:\n  - integer: id\n  - keyword: name\n"))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := sqlbuild.Compile("items", def)
	if err != nil {
		t.Fatal(err)
	}
	conn := testenv.Broker(t, "out")
	for first := 1; first <= rows; first += batchKeys {
		ch := &flussopb.Change{Op: flussopb.ChangeOp_BACKFILL, Index: "items", CommitLsn: 1}
		for k := first; k < first+batchKeys; k++ {
			ch.Keys = append(ch.Keys, fmt.Sprint(k))
		}
		if _, err := conn.PublishChange(ctx, ch, ""); err != nil {
			t.Fatal(err)
		}
	}

	a := New(Config{Pool: pool, Broker: conn, Indexes: []flow.Index{{Name: "items", SQL: ix}},
		GroupKeys: batchKeys, MaxBacklog: maxBacklog})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// The documents waiting, those inside batches too (the stream counts
	// messages).
	pending := func() uint64 {
		t.Helper()
		w, err := conn.WatchDocuments(ctx, []string{"items"}, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close(ctx) //nolint:errcheck // expires on its own
		var n uint64
		for {
			docs, err := w.Fetch(500, 200*time.Millisecond)
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatal(err)
			}
			if len(docs) == 0 {
				return n
			}
			n += uint64(len(docs))
		}
	}
	// Built up to the bound, then paused: a second later the backlog is
	// still within one group of it, short of every document.
	for pending() < maxBacklog {
		if ctx.Err() != nil {
			t.Fatalf("the backlog never reached %d documents", maxBacklog)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if n := pending(); n > maxBacklog+batchKeys {
		t.Fatalf("%d documents waiting, want the assembler paused at %d to %d", n, maxBacklog, maxBacklog+batchKeys)
	}

	// The writers take everything: the assembler goes on to the end.
	cons, err := conn.Documents(ctx, "out")
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for taken < rows {
		batch, err := cons.Next(ctx, 100, time.Second, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			if m.Err != nil {
				t.Fatal(m.Err)
			}
			for _, d := range m.Values {
				if d.Op == flussopb.DocOp_UPSERT {
					taken++
				}
			}
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the writers took %d of %d documents: %v", taken, rows, ctx.Err())
		}
	}
}
