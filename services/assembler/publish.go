package assembler

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/internal/telemetry"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/proto/flussopb"
)

// maxInFlight bounds the bytes of the messages a worker has published and
// the broker has not yet acknowledged: each pending publish holds its
// message, so past this the worker waits for the acks before going on.
const maxInFlight = 4 << 20

// undecodable stands for the index in the quarantine subject of change
// messages that could not be decoded (no index name starts with "_").
const undecodable = "_undecodable"

// inflight is what a worker published for one batch and the broker has
// not yet acknowledged.
type inflight struct {
	sent  []sent
	bytes int
}

// sent is one message awaiting its publish acknowledgement.
type sent struct {
	ack     jetstream.PubAckFuture
	size    int
	ix      *index // nil for a quarantine entry
	id      string
	version uint64
}

// publish publishes a document; one too large for the broker is rejected.
func (a *Assembler) publish(ctx context.Context, out *inflight, ix *index, doc *flussopb.Document) error {
	msg := &nats.Msg{Subject: broker.DocsSubject(doc.Index), Header: nats.Header{}}
	telemetry.Inject(ctx, msg.Header)
	// Measured before encoding: a document far too large costs no copy.
	size := messageSize(msg) + proto.Size(doc)
	if size > a.limit {
		return a.reject(ctx, out, ix, doc.Id, doc.Version, tooLarge(ix.name, doc.Id, size, a.limit))
	}
	data, err := proto.Marshal(doc)
	if err != nil {
		return fmt.Errorf("encoding document %s of %s: %w", doc.Id, ix.name, err)
	}
	msg.Data = data
	f, err := a.cfg.Broker.JS.PublishMsgAsync(msg)
	if errors.Is(err, nats.ErrMaxPayload) {
		// The server's limit dropped after a reconnect.
		return a.reject(ctx, out, ix, doc.Id, doc.Version, tooLarge(ix.name, doc.Id, size, int(a.cfg.Broker.NC.MaxPayload())))
	}
	if err != nil {
		return fmt.Errorf("publishing document %s of %s: %w", doc.Id, ix.name, err)
	}
	return out.add(ctx, a, sent{ack: f, size: size, ix: ix, id: doc.Id, version: doc.Version})
}

// tooLarge is the reason a document is refused by the broker.
func tooLarge(index, id string, size, limit int) error {
	if limit <= 0 {
		return fmt.Errorf("index %s: document %s is %d bytes, more than the broker takes in one message", index, id, size)
	}
	return fmt.Errorf("index %s: document %s is %d bytes, more than the %d bytes the broker takes in one message", index, id, size, limit)
}

// reject applies on_error to a document that could not be built or sent:
// under skip it is quarantined, under stop the run ends.
func (a *Assembler) reject(ctx context.Context, out *inflight, ix *index, id string, version uint64, cause error) error {
	if ix.onError != flow.Skip {
		return &badDataError{fmt.Errorf("index %s, document %s: %w (on_error = stop: fix the data or set on_error = \"skip\")", ix.name, id, cause)}
	}
	count(&a.quarantined, ix.name, 1)
	// The cause may quote the row's values: WARN says where to read it.
	a.log.Warn("document quarantined; flusso quarantine list shows the reason", "index", ix.name, "id", id)
	a.log.Debug("quarantine reason", "index", ix.name, "id", id, "reason", cause)
	msg := quarantineMsg(ix.name, ix.name, id, cause.Error())
	msg.Header.Set(broker.HeaderVersion, strconv.FormatUint(version, 10))
	msg.Data = []byte(cause.Error())
	return a.quarantine(ctx, out, msg)
}

// quarantineChange quarantines a change message that cannot be decoded,
// with its bytes when they fit.
func (a *Assembler) quarantineChange(ctx context.Context, out *inflight, m jetstream.Msg, cause error) error {
	id := "?"
	if meta, err := m.Metadata(); err == nil {
		id = strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	reason := fmt.Sprintf("change message %s of %s (%d bytes) cannot be decoded: %v", id, broker.ChangesStream, len(m.Data()), cause)
	a.log.Error("quarantining an undecodable change message", "seq", id, "bytes", len(m.Data()), "err", cause)
	msg := quarantineMsg(undecodable, "", id, reason)
	if messageSize(msg)+len(m.Data()) <= a.limit {
		msg.Data = m.Data()
	}
	return a.quarantine(ctx, out, msg)
}

func quarantineMsg(subjectIndex, index, id, reason string) *nats.Msg {
	msg := &nats.Msg{Subject: broker.QuarantineSubject(broker.AssemblerSink, subjectIndex), Header: nats.Header{}}
	msg.Header.Set(broker.HeaderSink, broker.AssemblerSink)
	msg.Header.Set(broker.HeaderIndex, index)
	msg.Header.Set(broker.HeaderID, id)
	msg.Header.Set(broker.HeaderReason, reason)
	return msg
}

// quarantine publishes a quarantine entry; like a document, it is stored
// before the changes it comes from are acked.
func (a *Assembler) quarantine(ctx context.Context, out *inflight, msg *nats.Msg) error {
	f, err := a.cfg.Broker.JS.PublishMsgAsync(msg)
	if err != nil {
		return fmt.Errorf("quarantining document %s of %s: %w", msg.Header.Get(broker.HeaderID), msg.Header.Get(broker.HeaderIndex), err)
	}
	return out.add(ctx, a, sent{ack: f, size: messageSize(msg), id: msg.Header.Get(broker.HeaderID)})
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
				var apiErr *jetstream.APIError
				switch {
				case s.ix == nil:
					return fmt.Errorf("storing the quarantine entry of %s: %w", s.id, err)
				case !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum:
					return fmt.Errorf("storing document %s of %s: %w", s.id, s.ix.name, err)
				}
				if err := a.reject(ctx, f, s.ix, s.id, s.version, tooLarge(s.ix.name, s.id, s.size, 0)); err != nil {
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// messageSize is the size of msg as the server counts it against its
// limits: the data and the encoded headers.
func messageSize(msg *nats.Msg) int {
	n := len(msg.Data)
	if len(msg.Header) == 0 {
		return n
	}
	n += len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range msg.Header {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}
