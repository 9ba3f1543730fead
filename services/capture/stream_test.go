package capture_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/backfill"
	"github.com/flusso/flusso/proto/flussopb"
)

// null stands for SQL NULL in expected row images.
const null = "<null>"

// wantChange is what one message of the changes stream must say.
type wantChange struct {
	table string // schema.table
	op    flussopb.ChangeOp
	new   map[string]string // the whole new image; nil: none
	old   map[string]string // the whole old image; nil: none
}

// TestChangesArriveWithKeysAndOldRows checks what each change carries:
// only the columns the assemblers read to find the documents it touches
// (users.email and orders.status are left out, their values come from
// the database when a document is built), with the old images they need.
func TestChangesArriveWithKeysAndOldRows(t *testing.T) {
	r := newRig(t, `
		CREATE TABLE users (id int PRIMARY KEY, email text);
		CREATE TABLE orders (id int PRIMARY KEY, user_id int, status text);
		CREATE TABLE audit (id int PRIMARY KEY, note text);
		CREATE SCHEMA other;
		CREATE TABLE other.users (id int PRIMARY KEY, email text);
		-- Publishes more than the index reads: the capture must filter.
		CREATE PUBLICATION flusso FOR ALL TABLES;`, "")
	r.start(r.config(map[string]string{"users": usersSchema}))
	r.waitStreaming()

	// The capture gave the related table the identity its deletes need.
	var ident string
	if err := r.db.QueryRow(context.Background(), `SELECT relreplident::text FROM pg_class WHERE oid = 'public.orders'::regclass`).Scan(&ident); err != nil || ident != "f" {
		t.Fatalf("orders has replica identity %q (%v), want f (FULL)", ident, err)
	}

	sql := func(s string) func(*rig) { return func(r *rig) { r.exec(s) } }
	tests := []struct {
		name string
		run  func(*rig)
		want []wantChange
	}{{
		name: "root insert",
		run:  sql(`INSERT INTO users VALUES (1, 'ada@x.io')`),
		want: []wantChange{{table: "public.users", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "1"}}},
	}, {
		name: "root update keeping the key has no old image",
		run:  sql(`UPDATE users SET email = 'ada@y.io' WHERE id = 1`),
		want: []wantChange{{table: "public.users", op: flussopb.ChangeOp_UPDATE, new: map[string]string{"id": "1"}}},
	}, {
		name: "root update of the key sends the old key only",
		run:  sql(`UPDATE users SET id = 2 WHERE id = 1`),
		want: []wantChange{{table: "public.users", op: flussopb.ChangeOp_UPDATE,
			new: map[string]string{"id": "2"}, old: map[string]string{"id": "1"}}},
	}, {
		name: "null values",
		run:  sql(`INSERT INTO orders VALUES (12, NULL, 'new')`),
		want: []wantChange{{table: "public.orders", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "12", "user_id": null}}},
	}, {
		name: "related insert",
		run:  sql(`INSERT INTO orders VALUES (10, 2, 'new')`),
		want: []wantChange{{table: "public.orders", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "10", "user_id": "2"}}},
	}, {
		name: "related update carries the full old row",
		run:  sql(`UPDATE orders SET user_id = 3, status = 'paid' WHERE id = 10`),
		want: []wantChange{{table: "public.orders", op: flussopb.ChangeOp_UPDATE,
			new: map[string]string{"id": "10", "user_id": "3"},
			old: map[string]string{"id": "10", "user_id": "2"}}},
	}, {
		name: "related delete carries the full old row",
		run:  sql(`DELETE FROM orders WHERE id = 10`),
		want: []wantChange{{table: "public.orders", op: flussopb.ChangeOp_DELETE, old: map[string]string{"id": "10", "user_id": "3"}}},
	}, {
		name: "root delete carries the key only",
		run:  sql(`DELETE FROM users WHERE id = 2`),
		want: []wantChange{{table: "public.users", op: flussopb.ChangeOp_DELETE, old: map[string]string{"id": "2"}}},
	}, {
		name: "a transaction over both tables, in statement order",
		run: sql(`BEGIN;
			INSERT INTO users VALUES (4, 'dee@x.io');
			INSERT INTO orders VALUES (11, 4, 'new');
			UPDATE orders SET status = 'paid' WHERE id = 11;
			DELETE FROM orders WHERE id = 11;
			COMMIT`),
		want: []wantChange{
			{table: "public.users", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "4"}},
			{table: "public.orders", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "11", "user_id": "4"}},
			{table: "public.orders", op: flussopb.ChangeOp_UPDATE, new: map[string]string{"id": "11", "user_id": "4"},
				old: map[string]string{"id": "11", "user_id": "4"}},
			{table: "public.orders", op: flussopb.ChangeOp_DELETE, old: map[string]string{"id": "11", "user_id": "4"}},
		},
	}, {
		// Nothing arrives; the next case reads exactly its own change.
		name: "a transaction on tables no index reads publishes nothing",
		run:  sql(`INSERT INTO audit VALUES (1, 'x'); INSERT INTO other.users VALUES (1, 'decoy')`),
	}, {
		name: "same-named table of another schema is left out",
		run: sql(`BEGIN;
			INSERT INTO other.users VALUES (5, 'decoy');
			INSERT INTO audit VALUES (2, 'y');
			INSERT INTO users VALUES (5, 'eve@x.io');
			COMMIT`),
		want: []wantChange{{table: "public.users", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "5"}}},
	}, {
		name: "interleaved transactions arrive whole, in commit order",
		run: func(r *rig) {
			ctx := context.Background()
			other := testenv.Conn(t, r.dbURL)
			a, err := r.db.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			b, err := other.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, step := range []struct {
				tx  pgx.Tx
				sql string
			}{
				{a, `INSERT INTO users VALUES (30, 'a1')`},
				{b, `INSERT INTO users VALUES (40, 'b1')`},
				{a, `INSERT INTO users VALUES (31, 'a2')`},
				{b, `INSERT INTO users VALUES (41, 'b2')`},
			} {
				if _, err := step.tx.Exec(ctx, step.sql); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		},
		want: []wantChange{
			{table: "public.users", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "40"}},
			{table: "public.users", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "41"}},
			{table: "public.users", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "30"}},
			{table: "public.users", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "31"}},
		},
	}, {
		name: "related truncate",
		run:  sql(`TRUNCATE orders`),
		want: []wantChange{{table: "public.orders", op: flussopb.ChangeOp_TRUNCATE}},
	}, {
		name: "root truncate",
		run:  sql(`TRUNCATE users`),
		want: []wantChange{{table: "public.users", op: flussopb.ChangeOp_TRUNCATE}},
	}, {
		name: "truncate of several tables, unread ones left out",
		run:  sql(`TRUNCATE audit, users, orders`),
		want: []wantChange{
			{table: "public.users", op: flussopb.ChangeOp_TRUNCATE},
			{table: "public.orders", op: flussopb.ChangeOp_TRUNCATE},
		},
	}, {
		name: "sentinel: nothing else was published",
		run:  sql(`INSERT INTO users VALUES (99, 'last')`),
		want: []wantChange{{table: "public.users", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "99"}}},
	}}

	var all []change
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(r)
			got := r.read(len(tt.want), true)
			for i, w := range tt.want {
				g := got[i]
				if name := g.Schema + "." + g.Table; name != w.table || g.Op != w.op {
					t.Errorf("change %d is %s on %s, want %s on %s", i, g.Op, name, w.op, w.table)
				}
				if img := image(g.New); !maps.Equal(img, w.new) {
					t.Errorf("change %d new image %v, want %v", i, img, w.new)
				}
				if img := image(g.Old); !maps.Equal(img, w.old) {
					t.Errorf("change %d old image %v, want %v", i, img, w.old)
				}
			}
			all = append(all, got...)
		})
	}
	checkTransactions(t, all)
}

// checkTransactions checks that each transaction's changes are contiguous
// on the stream, numbered from 0, in commit order, and that each message
// carries the deduplication id derived from the commit LSN and the
// numbers of its first and last change (the number alone for a message of
// one change).
func checkTransactions(t *testing.T, changes []change) {
	t.Helper()
	var lsn uint64
	var next uint32
	for i, c := range changes {
		if i > 0 && c.seq != changes[i-1].seq && c.seq != changes[i-1].seq+1 {
			t.Errorf("stream sequence %d follows %d: a gap", c.seq, changes[i-1].seq)
		}
		switch {
		case c.CommitLsn == lsn:
			next++
		case c.CommitLsn > lsn:
			lsn, next = c.CommitLsn, 0
		default:
			t.Errorf("change at stream sequence %d has commit LSN %X after %X: transactions out of commit order or split", c.seq, c.CommitLsn, lsn)
		}
		if c.Seq != next {
			t.Errorf("change at stream sequence %d is number %d of its transaction, want %d", c.seq, c.Seq, next)
		}
	}
	for i := 0; i < len(changes); {
		j := i
		for j+1 < len(changes) && changes[j+1].seq == changes[i].seq {
			j++
		}
		first, last := changes[i], changes[j]
		want := fmt.Sprintf("%X-%d", first.CommitLsn, first.Seq)
		if j > i {
			want = fmt.Sprintf("%X-%d-%d", first.CommitLsn, first.Seq, last.Seq)
		}
		if first.msgID != want {
			t.Errorf("message at stream sequence %d has message id %q, want %q", first.seq, first.msgID, want)
		}
		i = j + 1
	}
}

// image renders a row image as text values, null for SQL NULL.
func image(r *flussopb.Row) map[string]string {
	if r == nil {
		return nil
	}
	out := map[string]string{}
	for k, d := range r.Columns {
		switch {
		case d.Null:
			out[k] = null
		case d.Unchanged:
			out[k] = "<unchanged>"
		default:
			out[k] = d.Text
		}
	}
	return out
}

// TestBackfillNeverSplitsATransaction requests a backfill (as a reindex
// does) and holds it before its second key batch until the capture
// publishes the first change of a large transaction: released then, the
// backfill publishes its other batches while the capture publishes the rest
// of the transaction, and none may land between the transaction's changes.
func TestBackfillNeverSplitsATransaction(t *testing.T) {
	const keys, rows, batchKeys = 100_000, 20_000, 10
	r := newRig(t, `
		CREATE TABLE items (id int PRIMARY KEY, pad text NOT NULL);
		INSERT INTO items SELECT g, 'x' FROM generate_series(1, `+fmt.Sprint(keys)+`) g;`, "")
	cfg := r.config(map[string]string{"items": itemsSchema})
	cfg.BatchKeys = batchKeys // many batches: the backfill outlasts the transaction
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hookKeys(&cfg, func() {
		once.Do(func() {
			close(held)
			<-release
		})
	})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	defer releaseOnce() // a failed test must not leave the capture waiting
	c := r.start(cfg)
	r.waitStreaming()

	ctx := context.Background()
	jobs, err := backfill.Open(ctx, r.bc)
	if err != nil {
		t.Fatal(err)
	}
	ix := cfg.Indexes[0]
	if err := jobs.Request(ctx, &backfill.Job{Index: ix.Name, Hash: ix.Hash, Targets: map[string]uint32{"primary": 1}, Reason: "reindex"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(time.Minute):
		t.Fatal("the backfill never got to its second key batch")
	}
	// The backfill's snapshot predates this transaction: it publishes the
	// first keys only.
	r.exec(`INSERT INTO items SELECT g, 'y' FROM generate_series($1::int + 1, $1::int + $2::int) g`, keys, rows)
	// From its first change to its commit the transaction holds the
	// capture's publishing; polled closely, the release comes well before
	// the last of its changes.
	deadline := time.Now().Add(time.Minute)
	for c.Stats().Captured == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the capture published nothing of the transaction")
		}
		time.Sleep(time.Millisecond)
	}
	releaseOnce()
	atRelease := c.Stats().Captured

	var txn []change
	before, after := 0, 0 // backfill batches before and after the transaction
	for _, ch := range r.read(rows+keys/batchKeys, true) {
		switch {
		case ch.Op != flussopb.ChangeOp_BACKFILL:
			txn = append(txn, ch)
		case len(txn) == 0:
			before++
		default:
			after++
		}
	}
	if len(txn) != rows {
		t.Fatalf("read %d changes of the transaction, want %d", len(txn), rows)
	}
	if before != 1 || after != keys/batchKeys-1 {
		t.Fatalf("%d backfill batches before the transaction, %d after; want the first one before and the rest after", before, after)
	}
	// checkTransactions finds any gap in the transaction's stream sequences.
	checkTransactions(t, txn)
	t.Logf("the backfill went on with %d of the transaction's %d changes published (stream sequences %d..%d)", atRelease, rows, txn[0].seq, txn[len(txn)-1].seq)
}
