package capture_test

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/proto/flussopb"
)

const itemsSchema = `version: 1
table: items
primary_key: id
fields:
  - integer: id
  - text: pad
`

// TestLargeTransactionStreamsInBoundedMemory commits 100k rows in one
// transaction, about 100 MB of changes: they must arrive whole and in order
// while the capture's heap stays far below what holding them would take.
// The broker runs as its own process, so the heap measured is the
// capture's (and this reader's).
func TestLargeTransactionStreamsInBoundedMemory(t *testing.T) {
	const rows, pad = 100_000, 1000
	const bound = 150 << 20 // holding the transaction would take more than its 100 MB
	r := newRig(t, `CREATE TABLE items (id int PRIMARY KEY, pad text NOT NULL)`, testenv.StartNATSProcess(t).URL)
	r.start(r.config(map[string]string{"items": itemsSchema}))
	r.waitStreaming()

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

	r.exec(`INSERT INTO items SELECT g, repeat('x', $1) FROM generate_series(1, $2) g`, pad, rows)

	// Read as the capture publishes, keeping nothing but the position.
	cons := r.consumer()
	var commit uint64
	var last uint64 // stream sequence
	got := 0
	deadline := time.Now().Add(5 * time.Minute)
	for got < rows {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d changes of the transaction before giving up", got, rows)
		}
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			c := decode(t, m)
			if got == 0 {
				commit = c.CommitLsn
			} else if c.seq != last+1 {
				t.Fatalf("stream sequence %d follows %d", c.seq, last)
			}
			last = c.seq
			if c.CommitLsn != commit || c.Seq != uint32(got) || c.Op != flussopb.ChangeOp_INSERT {
				t.Fatalf("change %d: commit %X number %d %s, want commit %X number %d INSERT", got, c.CommitLsn, c.Seq, c.Op, commit, got)
			}
			if id := c.New.Columns["id"].GetText(); id != strconv.Itoa(got+1) {
				t.Fatalf("change %d carries id %s, want %d", got, id, got+1)
			}
			if n := len(c.New.Columns["pad"].GetText()); n != pad {
				t.Fatalf("change %d carries %d bytes of pad, want %d", got, n, pad)
			}
			got++
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	sampling.Wait()
	growth := int64(peak.Load()) - int64(base)
	t.Logf("%d changes (%d MB of pad) in one transaction; heap grew by at most %.1f MB (from %.1f MB)", rows, rows*pad>>20, float64(growth)/(1<<20), float64(base)/(1<<20))
	if growth > bound {
		t.Fatalf("heap grew by %d MB while streaming one transaction, want < %d MB", growth>>20, bound>>20)
	}
}
