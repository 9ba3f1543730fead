package capture

import (
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/pkg/broker"
)

// reuseWatch notices the changes stream handing out a sequence number
// again: a nats-server killed before writing what it had acknowledged
// numbers new messages from where its files end, and a stream created anew
// starts over at 1. The messages from there on are gone, yet the
// assemblers' progress runs past their sequences, so neither the watermark
// nor a backfill may count them done. Only messages of this process are
// watched: after a start, rerunLostBackfills' check against the stream's
// end covers what came before.
type reuseWatch struct {
	mu sync.Mutex
	// highest is the highest sequence acknowledged to this process for a
	// newly stored message, since the last loss acted on.
	highest uint64
	// lostFrom is the lowest sequence seen handed out again that
	// rerunLostBackfills has not acted on yet; 0 while there is none.
	lostFrom uint64
}

// floor is the sequence every message published from now on must exceed.
func (w *reuseWatch) floor() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.highest
}

// stored checks the ack of a message published when floor was the highest
// sequence seen stored, and records a sequence handed out again.
func (w *reuseWatch) stored(ack *jetstream.PubAck, floor uint64) error {
	if ack.Duplicate {
		// The sequence of the message stored before with the same id.
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ack.Sequence > floor {
		w.highest = max(w.highest, ack.Sequence)
		return nil
	}
	if w.lostFrom == 0 || ack.Sequence < w.lostFrom {
		w.lostFrom = ack.Sequence
	}
	return fmt.Errorf("%s handed out sequence %d again (it had acknowledged %d before): it lost the messages from there on", broker.ChangesStream, ack.Sequence, floor)
}

// reused is the lowest sequence seen handed out again and not yet acted
// on, or 0.
func (w *reuseWatch) reused() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lostFrom
}

// handled clears a loss once the backfills it hit run again, and brings
// highest down to the stream's last sequence: the stream hands out the ones
// after it anew, which tells of no further loss. Called between sessions,
// when this process publishes nothing.
func (w *reuseWatch) handled(last uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lostFrom = 0
	w.highest = min(w.highest, last)
}
