package assembler

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/proto/flussopb"
)

// maxInFlight bounds the bytes of the messages a worker has published and
// the broker has not yet acknowledged: each pending publish holds its
// message, so past this the worker waits for the acks before going on.
const maxInFlight = 4 << 20

// inflight is what a worker published for one batch and the broker has
// not yet acknowledged.
type inflight struct {
	sent  []sent
	bytes int
	// measured holds the indexes the batch built documents of: its first
	// build of an index measures their size (see chunkSize).
	measured map[*index]bool
}

func (f *inflight) measure(ix *index) {
	if f.measured == nil {
		f.measured = map[*index]bool{}
	}
	f.measured[ix] = true
}

// sent is one message awaiting its publish acknowledgement.
type sent struct {
	ack  jetstream.PubAckFuture
	size int
	ix   *index               // nil for a quarantine entry
	docs []*flussopb.Document // what a message of documents carries
	id   string               // the document of a quarantine entry
}

// publish publishes documents of ix, many to a message; one too large for
// a message of its own is rejected.
func (a *Assembler) publish(ctx context.Context, out *inflight, ix *index, docs []*flussopb.Document) error {
	// Each message is tracked as it goes, so what is in flight stays
	// within maxInFlight however many documents a build made.
	refused, err := a.cfg.Broker.PublishDocumentsAsync(ctx, docs, a.limit, func(m broker.DocumentsSent) error {
		a.sentMsgs.Add(1)
		a.sentDocs.Add(int64(len(m.Docs)))
		return out.add(ctx, a, sent{ack: m.Ack, size: m.Size, ix: ix, docs: m.Docs})
	})
	for _, r := range refused {
		if err := a.reject(ctx, out, ix, r.Doc.Id, r.Doc.Version, tooLarge(ix.name, r.Doc.Id, r.Err)); err != nil {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("publishing %d documents of %s: %w", len(docs), ix.name, err)
	}
	return nil
}

// tooLarge is the reason a document is refused by the broker.
func tooLarge(index, id string, big *broker.TooLargeError) error {
	return fmt.Errorf("index %s: document %s is %w", index, id, big)
}

// reject applies on_error to a document that could not be built or sent:
// under skip it is quarantined, under stop the run ends.
func (a *Assembler) reject(ctx context.Context, out *inflight, ix *index, id string, version uint64, cause error) error {
	if ix.onError != flow.Skip {
		return &badDataError{fmt.Errorf("index %s, document %s: %w (on_error = stop: fix the data or set on_error = \"skip\")", ix.name, id, cause)}
	}
	a.cfg.Quarantined.Add(ix.name, 1)
	// The cause may quote the row's values: WARN says where to read it.
	a.log.Warn("document quarantined; flusso quarantine list shows the reason", "index", ix.name, "id", id)
	a.log.Debug("quarantine reason", "index", ix.name, "id", id, "reason", cause)
	s, err := a.cfg.Broker.PublishQuarantineAsync(broker.Rejected{
		Sink: broker.AssemblerSink, Index: ix.name, ID: id, Version: version, Reason: cause.Error()})
	if err != nil {
		return fmt.Errorf("quarantining document %s of %s: %w", id, ix.name, err)
	}
	return out.add(ctx, a, sent{ack: s.Ack, size: s.Size, id: id})
}

// quarantineChange quarantines a change message that cannot be decoded,
// with its bytes when they fit; like a document, it is stored before the
// changes it comes from are acked.
func (a *Assembler) quarantineChange(ctx context.Context, out *inflight, m *broker.ChangeMsg) error {
	a.log.Error("quarantining an undecodable change message", "seq", m.Seq(), "bytes", m.Len(), "err", m.Err)
	s, err := a.cfg.Broker.QuarantineUndecodable(m, a.limit)
	if err != nil {
		return fmt.Errorf("quarantining change message %d: %w", m.Seq(), err)
	}
	return out.add(ctx, a, sent{ack: s.Ack, size: s.Size, id: fmt.Sprint(m.Seq())})
}

// add records a publish, and waits for the acks of everything in flight
// once it holds more than maxInFlight bytes.
func (f *inflight) add(ctx context.Context, a *Assembler, s sent) error {
	f.sent = append(f.sent, s)
	f.bytes += s.size
	if f.bytes > maxInFlight {
		return a.settle(ctx, f)
	}
	return nil
}

// settle waits until the broker has stored every message in flight. A
// document the stream refuses as too large is rejected; any other failure
// fails the batch, which is then redelivered.
func (a *Assembler) settle(ctx context.Context, f *inflight) error {
	// Rejections add quarantine entries, awaited in the next round.
	for len(f.sent) > 0 {
		batch := f.sent
		f.sent, f.bytes = nil, 0
		for _, s := range batch {
			select {
			case <-s.ack.Ok():
			case err := <-s.ack.Err():
				switch {
				case s.ix == nil:
					return fmt.Errorf("storing the quarantine entry of %s: %w", s.id, err)
				case !broker.IsTooLarge(err):
					return fmt.Errorf("storing %d documents of %s: %w", len(s.docs), s.ix.name, err)
				}
				if err := a.refused(ctx, f, s); err != nil {
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// refused handles a message of documents the stream refused for its size
// (its limit is lower than the broker said when the run began): a batch is
// sent again a document at a time, and a document alone is rejected.
func (a *Assembler) refused(ctx context.Context, f *inflight, s sent) error {
	if len(s.docs) > 1 {
		for _, d := range s.docs {
			if err := a.publish(ctx, f, s.ix, []*flussopb.Document{d}); err != nil {
				return err
			}
		}
		return nil
	}
	d := s.docs[0]
	return a.reject(ctx, f, s.ix, d.Id, d.Version, tooLarge(s.ix.name, d.Id, &broker.TooLargeError{Size: s.size}))
}
