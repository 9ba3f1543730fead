package capture

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/flusso/flusso/pkg/broker"
)

// tracker decides how far the slot may be confirmed.
//
// The end-to-end rule: a transaction whose changes end at changes-stream
// sequence S is durable in every sink once (1) every change up to S is
// acked by the assemblers (they ack only after the documents built from
// them are stored on the documents stream) and (2) every document stored
// at that moment is acked by every writer (they ack only after the sink
// accepted or quarantined it). Both streams drop a message once all its
// consumers acked it, so "acked up to" is the first stored sequence - 1.
// The tracker samples (changes done, documents last) and confirms a sample
// once the documents stream is done past it. Only commit ends are ever
// confirmed, so a transaction is never split.
type tracker struct {
	mu        sync.Mutex
	txns      []mark // committed, settled, not yet confirmed; in commit order
	open      bool   // a transaction is being received
	unsettled int    // committed transactions whose acks are not settled
	idle      pglogrepl.LSN
	confirmed pglogrepl.LSN
	samples   []sample
}

type mark struct {
	end     pglogrepl.LSN
	lastSeq uint64 // 0: the transaction published nothing
}

type sample struct {
	changesDone uint64
	docsLast    uint64
}

// maxSamples bounds the samples kept while the writers lag (12.8 s at full
// rate). Past it they are thinned, never dropped from either end: the
// oldest is the next to become safe, so dropping it would stop the slot for
// as long as the lag lasts.
const maxSamples = 64

// thin halves samples, keeping the oldest and the newest: the slot then
// follows the sinks in coarser steps, as far apart as the lag is long.
func thin(s []sample) []sample {
	last := s[len(s)-1]
	out := s[:0]
	for i := 0; i < len(s); i += 2 {
		out = append(out, s[i])
	}
	if out[len(out)-1] != last {
		out = append(out, last)
	}
	return out
}

func newTracker(confirmed pglogrepl.LSN) *tracker {
	return &tracker{confirmed: confirmed, idle: confirmed}
}

// Open notes a transaction began.
func (t *tracker) Open() {
	t.mu.Lock()
	t.open = true
	t.unsettled++
	t.mu.Unlock()
}

// Commit records a settled transaction.
func (t *tracker) Commit(end pglogrepl.LSN, lastSeq uint64) {
	t.mu.Lock()
	t.open = false
	t.unsettled--
	t.txns = append(t.txns, mark{end: end, lastSeq: lastSeq})
	t.mu.Unlock()
}

// Idle records a server position with every transaction before it sent:
// safe to confirm once nothing is outstanding.
func (t *tracker) Idle(pos pglogrepl.LSN) {
	t.mu.Lock()
	if t.unsettled == 0 && !t.open && len(t.txns) == 0 {
		t.idle = max(t.idle, pos)
	}
	t.mu.Unlock()
}

// Confirmed is the LSN the slot may be confirmed to.
func (t *tracker) Confirmed() pglogrepl.LSN {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.confirmed
}

// Advance takes a new sample and confirms what the sinks have durably got.
// changes and docs must be read in that order.
func (t *tracker) Advance(changes, docs broker.Progress) pglogrepl.LSN {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.samples = append(t.samples, sample{changesDone: changes.Done, docsLast: docs.Last})
	var safe uint64
	keep := 0
	for i, s := range t.samples {
		if s.docsLast <= docs.Done {
			safe, keep = s.changesDone, i+1
		}
	}
	t.samples = t.samples[keep:]
	if len(t.samples) > maxSamples {
		t.samples = thin(t.samples)
	}
	n := 0
	for n < len(t.txns) && t.txns[n].lastSeq <= safe {
		t.confirmed = max(t.confirmed, t.txns[n].end)
		n++
	}
	t.txns = t.txns[n:]
	if len(t.txns) == 0 && t.unsettled == 0 && !t.open {
		t.confirmed = max(t.confirmed, t.idle)
	}
	return t.confirmed
}

// watermark advances the tracker and finishes published backfills.
func (c *Capture) watermark(ctx context.Context, t *tracker) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	// A broker that restarted may have lost messages it had acknowledged
	// but not yet written, and then hands their sequence numbers out
	// again: the tracker's samples would no longer mean what they did. So
	// a reconnect ends the session; the next one replays from the
	// confirmed position (lost messages' ids are gone from the
	// deduplication window, so they are published again).
	reconnects := c.cfg.Broker.Reconnects()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		changes, err := c.cfg.Broker.Progress(ctx, broker.ChangesStream)
		if err != nil {
			c.log.Warn("reading changes stream progress", "err", err)
			continue
		}
		docs, err := c.cfg.Broker.Progress(ctx, broker.DocsStream)
		if err != nil {
			c.log.Warn("reading documents stream progress", "err", err)
			continue
		}
		if c.cfg.Broker.Reconnects() != reconnects {
			return errors.New("reconnected to NATS: replaying from the confirmed position in case the broker lost unwritten messages")
		}
		c.confirmed.Store(uint64(t.Advance(changes, docs)))
		if n%5 != 0 {
			continue
		}
		if err := c.finishJobs(ctx, changes.Done); err != nil {
			c.log.Warn("finishing backfills", "err", err)
		}
	}
}
