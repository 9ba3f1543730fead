package capture_test

import (
	"context"
	"maps"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/proto/flussopb"
)

const itemsSchema = `version: 1
table: items
primary_key: id
fields:
  - integer: id
  - text: pad
`

// notesSchema reads items (not their pad) and their notes, found by the
// text column item_ref: the only column of notes a change carries besides
// the key.
const notesSchema = `version: 1
table: items
primary_key: id
fields:
  - integer: id
  - has_many: notes
    table: notes
    foreign_key: item_ref
    primary_key: id
    fields:
      - integer: id
`

const notesDDL = `CREATE TABLE items (id int PRIMARY KEY, pad text);
	CREATE TABLE notes (id int PRIMARY KEY, item_ref text)`

// heapGrowth samples the heap from now until the returned function is
// called, which reports the largest growth seen and where the heap stood.
func heapGrowth() func() (growth int64, base uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return func() (int64, uint64) {
		close(stop)
		sampling.Wait()
		return int64(peak.Load()) - int64(base), base
	}
}

// TestLargeTransactionStreamsInBoundedMemory commits 100k rows in one
// transaction: they must arrive whole and in order while the capture's heap
// stays bounded. The rows carry 100 MB in a column the changes leave out.
// The broker runs as its own process, so the heap measured is the
// capture's (and this reader's).
func TestLargeTransactionStreamsInBoundedMemory(t *testing.T) {
	const rows, pad = 100_000, 1000
	const bound = 150 << 20
	r := newRig(t, `CREATE TABLE items (id int PRIMARY KEY, pad text NOT NULL)`, testenv.StartNATSProcess(t).URL)
	r.start(r.config(map[string]string{"items": itemsSchema}))
	r.waitStreaming()

	stop := heapGrowth()
	r.exec(`INSERT INTO items SELECT g, repeat('x', $1) FROM generate_series(1, $2) g`, pad, rows)

	// Read as the capture publishes, keeping nothing but the position.
	var commit, first, last uint64 // first, last: stream sequences
	got := 0
	r.each(rows, func(c change) {
		if got == 0 {
			commit = c.CommitLsn
			first = c.seq
		} else if c.seq != last && c.seq != last+1 {
			t.Fatalf("stream sequence %d follows %d", c.seq, last)
		}
		last = c.seq
		if c.CommitLsn != commit || c.Seq != uint32(got) || c.Op != flussopb.ChangeOp_INSERT {
			t.Fatalf("change %d: commit %X number %d %s, want commit %X number %d INSERT", got, c.CommitLsn, c.Seq, c.Op, commit, got)
		}
		if id := c.New.Columns["id"].GetText(); id != strconv.Itoa(got+1) {
			t.Fatalf("change %d carries id %s, want %d", got, id, got+1)
		}
		if _, ok := c.New.Columns["pad"]; ok {
			t.Fatalf("change %d carries pad, which no index reads from changes", got)
		}
		got++
	})
	// Many changes of the transaction to a message.
	if msgs := last - first + 1; msgs > rows/100 {
		t.Errorf("%d messages carried the transaction's %d changes, want them batched (at most %d)", msgs, rows, rows/100)
	}
	growth, base := stop()
	t.Logf("%d changes in one transaction; heap grew by at most %.1f MB (from %.1f MB)", rows, float64(growth)/(1<<20), float64(base)/(1<<20))
	if growth > bound {
		t.Fatalf("heap grew by %d MB while streaming one transaction, want < %d MB", growth>>20, bound>>20)
	}
}

// TestLargeValuesStreamInBoundedBytes commits 200 rows of 1 MB each in one
// transaction, in a column the changes carry (the foreign key finding their
// document): each publish holds its message until the broker acknowledges
// it, so the capture must wait for acks by bytes, not by count, to keep the
// heap far below the 200 MB the transaction weighs.
func TestLargeValuesStreamInBoundedBytes(t *testing.T) {
	const rows, size = 200, 1_000_000 // a message fits the broker's default 1 MiB
	const bound = 64 << 20
	r := newRig(t, notesDDL, testenv.StartNATSProcess(t).URL)
	r.start(r.config(map[string]string{"items": notesSchema}))
	r.waitStreaming()

	stop := heapGrowth()
	r.exec(`INSERT INTO notes SELECT g, repeat('r', $1) FROM generate_series(1, $2) g`, size, rows)
	got := 0
	r.each(rows, func(c change) {
		if n := len(c.New.Columns["item_ref"].GetText()); c.Table != "notes" || n != size {
			t.Fatalf("change %d is of %s and carries %d bytes of item_ref, want notes with %d", got, c.Table, n, size)
		}
		got++
	})
	growth, base := stop()
	t.Logf("%d changes of %d bytes in one transaction; heap grew by at most %.1f MB (from %.1f MB)", rows, size, float64(growth)/(1<<20), float64(base)/(1<<20))
	if growth > bound {
		t.Fatalf("heap grew by %d MB while streaming one transaction, want < %d MB", growth>>20, bound>>20)
	}
}

// TestOversizedRowsNeverWedgeTheCapture commits rows larger than the
// broker takes, through the embedded broker as flusso runs it: a change
// that cannot be published would end every session at the same
// transaction, and nothing after it would ever arrive.
func TestOversizedRowsNeverWedgeTheCapture(t *testing.T) {
	const huge = 9 << 20 // past broker.MaxPayload
	e, err := broker.StartEmbedded(filepath.Join(t.TempDir(), "nats"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bc, err := e.Connect(ctx, "capture-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bc.Close)
	r := newRigOn(t, notesDDL, bc)
	cfg := r.config(map[string]string{"items": notesSchema})
	cfg.Health = health.NewRegistry().Stage("capture")
	c := r.start(cfg)
	r.waitStreaming()

	tests := []struct {
		name      string
		sql       string
		want      wantChange
		oversized uint64 // changes sent without their images so far
	}{{
		name: "a huge value in a column no index reads from changes",
		sql:  `INSERT INTO items VALUES (1, repeat('b', $1))`,
		want: wantChange{table: "public.items", op: flussopb.ChangeOp_INSERT, new: map[string]string{"id": "1"}},
	}, {
		// Without images the assemblers rebuild every document of the
		// index: slow, but nothing is missed.
		name:      "a huge value in a column changes carry",
		sql:       `INSERT INTO notes VALUES (1, repeat('b', $1))`,
		want:      wantChange{table: "public.notes", op: flussopb.ChangeOp_INSERT},
		oversized: 1,
	}}
	for i, tt := range tests {
		r.exec(tt.sql, huge)
		next := 100 + i
		r.exec(`INSERT INTO items VALUES ($1, 'small')`, next)
		got := r.read(2, true)
		if g := got[0]; g.Schema+"."+g.Table != tt.want.table || g.Op != tt.want.op ||
			!maps.Equal(image(g.New), tt.want.new) || g.Old != nil {
			t.Errorf("%s: the huge row arrived as %s on %s.%s with images %v / %v, want %s on %s with %v",
				tt.name, g.Op, g.Schema, g.Table, image(g.New), image(g.Old), tt.want.op, tt.want.table, tt.want.new)
		}
		later := got[1]
		if id := later.New.Columns["id"].GetText(); later.Table != "items" || id != strconv.Itoa(next) {
			t.Fatalf("%s: the change after the huge row is %s id %s, want items id %d", tt.name, later.Table, id, next)
		}
		if n := c.Stats().Oversized; n != tt.oversized {
			t.Errorf("%s: %d changes counted too large, want %d", tt.name, n, tt.oversized)
		}
		r.eventually(tt.name+": the slot to move past the later change", time.Minute, func() bool {
			return uint64(r.slotConfirmed()) > later.CommitLsn
		})
	}
	if n := len(r.logs.lines("change too large for the broker", "table=public.notes")); n != 1 {
		t.Errorf("%d warnings of a change too large, want 1", n)
	}
	if rep := cfg.Health.Report(); rep.Failures != 0 {
		t.Errorf("the capture failed %d times, last: %s", rep.Failures, rep.LastError)
	}
}

// each hands n changes to fn as they arrive, acking each, and keeps none.
func (r *rig) each(n int, fn func(change)) {
	r.t.Helper()
	cons := r.consumer()
	deadline := time.Now().Add(5 * time.Minute)
	for got := 0; got < n; {
		if time.Now().After(deadline) {
			r.t.Fatalf("read %d of %d changes before giving up", got, n)
		}
		batch, err := cons.Fetch(min(n-got, 100), jetstream.FetchMaxWait(time.Second), jetstream.FetchMaxBytes(4<<20))
		if err != nil {
			r.t.Fatal(err)
		}
		for m := range batch.Messages() {
			for _, c := range decode(r.t, m) {
				fn(c)
				got++
			}
			if err := m.Ack(); err != nil {
				r.t.Fatal(err)
			}
		}
	}
}
