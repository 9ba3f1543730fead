package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/proto/flussopb"
)

// Batches on the wire. Storing, delivering, acking and removing a message
// costs the broker about the same whatever it carries, and it was half of
// flusso's own CPU in a backfill when every document was a message. So
// documents of one index, and changes of one transaction, travel many to
// a message: a DocumentBatch or ChangeBatch, marked by HeaderBatch. A
// message without the header holds one Change or Document: markers,
// backfill key batches, a batch of one, and whatever a version before
// batching left on a stream, which is read as before.

// HeaderBatch marks a batch message; its value is how many changes or
// documents it holds, so a fetch is bounded by them without decoding.
const HeaderBatch = "Flusso-Batch"

// Bounds of one batch message. Past a few hundred items the broker's work
// per item is negligible, while a larger message makes fetches and bulk
// requests coarser (a writer's fetch counts documents, but takes at least
// one message) and a redelivery dearer.
const (
	batchBytes = 256 << 10
	batchItems = 128
)

// batchHeaders is room left in a batch message for its headers (the batch
// count, the deduplication id and the trace context).
const batchHeaders = 1 << 10

// items is how many changes or documents a delivered message holds.
func items(m jetstream.Msg) int {
	if n, err := strconv.Atoi(m.Headers().Get(HeaderBatch)); err == nil && n > 0 {
		return n
	}
	return 1
}

func countItems(msgs []jetstream.Msg) int {
	n := 0
	for _, m := range msgs {
		n += items(m)
	}
	return n
}

// itemSize is the bytes an item of size n adds to a batch: its field tag
// and length prefix, then itself.
func itemSize(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// DocumentsSent is one message of documents awaiting the broker's
// acknowledgement, with the documents it carries.
type DocumentsSent struct {
	Sent
	Docs []*flussopb.Document
}

// Refused is a document not sent: it does not fit a message on its own.
type Refused struct {
	Doc *flussopb.Document
	Err *TooLargeError
}

// PublishDocumentsAsync publishes documents with the trace context of ctx,
// many of one index to a message, in their order, without waiting for the
// stream to store them; a marker (SEEDED, PURGE) goes in a message of its
// own. Each message is at most limit bytes, headers included, and holds
// one document when one is all that fits. Each message is handed to sent
// as soon as it is published, so the caller can bound what is in flight;
// an error from sent stops the publishing. A document that does not fit a
// message of its own is returned in refused and not sent.
func (c *Conn) PublishDocumentsAsync(ctx context.Context, docs []*flussopb.Document, limit int, sent func(DocumentsSent) error) (refused []Refused, err error) {
	bound := min(limit, batchBytes) - batchHeaders
	var run []*flussopb.Document
	size := 0
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		r, err := c.publishDocuments(ctx, run, limit, sent)
		refused = append(refused, r...)
		run, size = nil, 0
		return err
	}
	for _, d := range docs {
		n := itemSize(proto.Size(d))
		alone := IsMarker(d)
		if len(run) > 0 && (alone || d.Index != run[0].Index || size+n > bound || len(run) == batchItems) {
			if err := flush(); err != nil {
				return refused, err
			}
		}
		run = append(run, d)
		size += n
		if alone {
			if err := flush(); err != nil {
				return refused, err
			}
		}
	}
	return refused, flush()
}

// publishDocuments publishes docs in one message: a Document when it is
// one, else a DocumentBatch. A batch the server refuses for its size (its
// limit dropped after a reconnect) is sent a document at a time.
func (c *Conn) publishDocuments(ctx context.Context, docs []*flussopb.Document, limit int, sent func(DocumentsSent) error) ([]Refused, error) {
	if len(docs) == 1 {
		s, err := c.PublishDocumentAsync(ctx, docs[0], limit)
		var big *TooLargeError
		if errors.As(err, &big) {
			return []Refused{{Doc: docs[0], Err: big}}, nil
		}
		if err != nil {
			return nil, err
		}
		return nil, sent(DocumentsSent{Sent: s, Docs: docs})
	}
	msg := &nats.Msg{Subject: DocsSubject(docs[0].Index), Header: nats.Header{}}
	inject(ctx, msg.Header)
	msg.Header.Set(HeaderBatch, strconv.Itoa(len(docs)))
	data, err := proto.Marshal(&flussopb.DocumentBatch{Documents: docs})
	if err != nil {
		return nil, fmt.Errorf("encoding %d documents: %w", len(docs), err)
	}
	msg.Data = data
	f, err := c.JS.PublishMsgAsync(msg)
	if errors.Is(err, nats.ErrMaxPayload) {
		var refused []Refused
		for _, d := range docs {
			r, err := c.publishDocuments(ctx, []*flussopb.Document{d}, limit, sent)
			refused = append(refused, r...)
			if err != nil {
				return refused, err
			}
		}
		return refused, nil
	}
	if err != nil {
		return nil, err
	}
	return nil, sent(DocumentsSent{Sent: Sent{Ack: f, Size: messageSize(msg)}, Docs: docs})
}

// decodeDocuments decodes a message of the documents stream: a batch, or
// one document or marker. A batch holding a marker is refused: a marker
// must be a message of its own, for a writer applies it once every message
// before it is acked.
func decodeDocuments(h nats.Header, data []byte) ([]*flussopb.Document, error) {
	if h.Get(HeaderBatch) == "" {
		d := &flussopb.Document{}
		return []*flussopb.Document{d}, proto.Unmarshal(data, d)
	}
	b := &flussopb.DocumentBatch{}
	if err := proto.Unmarshal(data, b); err != nil {
		return nil, err
	}
	for _, d := range b.Documents {
		if IsMarker(d) {
			return nil, fmt.Errorf("a batch of %d documents holds a %s marker", len(b.Documents), d.Op)
		}
	}
	return b.Documents, nil
}

// IsMarker reports whether d is a marker (SEEDED, PURGE) rather than a
// document to write.
func IsMarker(d *flussopb.Document) bool {
	return d.Op != flussopb.DocOp_UPSERT && d.Op != flussopb.DocOp_DELETE_DOC
}

// decodeChanges decodes a message of the changes stream: a batch, or one
// change.
func decodeChanges(h nats.Header, data []byte) ([]*flussopb.Change, error) {
	if h.Get(HeaderBatch) == "" {
		ch := &flussopb.Change{}
		return []*flussopb.Change{ch}, proto.Unmarshal(data, ch)
	}
	b := &flussopb.ChangeBatch{}
	return b.Changes, proto.Unmarshal(data, b)
}

// ChangeBatcher gathers the changes of one transaction into messages of
// the changes stream, as they come: a transaction of any size streams
// through it in bounded memory.
type ChangeBatcher struct {
	conn *Conn
	// ctx is the trace context of the first change queued: the message
	// continues its trace.
	ctx     context.Context
	changes []*flussopb.Change
	size    int
}

// ChangesSent is one message of changes awaiting the broker's
// acknowledgement.
type ChangesSent struct {
	Ack jetstream.PubAckFuture
	// Size is the message's data size.
	Size    int
	Changes int
}

// ChangeBatcher returns an empty batcher of changes.
func (c *Conn) ChangeBatcher() *ChangeBatcher { return &ChangeBatcher{conn: c} }

// Add queues ch, a change of the transaction of the changes queued, with
// the trace context of ctx. When it does not fit in one message with
// them, they are published first, and their publish returned (nil when
// nothing was). A change larger than MaxChange on its own is a
// *TooLargeError and is not queued.
func (b *ChangeBatcher) Add(ctx context.Context, ch *flussopb.Change) (*ChangesSent, error) {
	size := proto.Size(ch)
	limit := b.conn.MaxChange()
	if size > limit {
		return nil, &TooLargeError{Size: size, Limit: limit}
	}
	n := itemSize(size)
	var sent *ChangesSent
	bound := min(batchBytes-batchHeaders, limit)
	if len(b.changes) > 0 && (b.size+n > bound || len(b.changes) == batchItems) {
		var err error
		if sent, err = b.Flush(); err != nil {
			return nil, err
		}
	}
	if len(b.changes) == 0 {
		b.ctx = ctx
	}
	b.changes = append(b.changes, ch)
	b.size += n
	return sent, nil
}

// Flush publishes the changes queued, if any, in one message without
// waiting for the stream to store it. Its deduplication id comes from
// where the changes are in the WAL (commit LSN and the sequence numbers of
// the first and last), so a transaction published again after a crash is
// deduplicated wherever it is split alike.
func (b *ChangeBatcher) Flush() (*ChangesSent, error) {
	if len(b.changes) == 0 {
		return nil, nil
	}
	first, last := b.changes[0], b.changes[len(b.changes)-1]
	var msg *nats.Msg
	var err error
	if len(b.changes) == 1 {
		// As a version before batching sent it, id included.
		msg, err = encode(ChangesSubject, first)
		if err == nil {
			withID(msg, fmt.Sprintf("%X-%d", first.CommitLsn, first.Seq))
		}
	} else {
		msg, err = encode(ChangesSubject, &flussopb.ChangeBatch{Changes: b.changes})
		if err == nil {
			msg.Header.Set(HeaderBatch, strconv.Itoa(len(b.changes)))
			withID(msg, fmt.Sprintf("%X-%d-%d", first.CommitLsn, first.Seq, last.Seq))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("encoding %d changes: %w", len(b.changes), err)
	}
	inject(b.ctx, msg.Header)
	f, err := b.conn.JS.PublishMsgAsync(msg)
	if err != nil {
		return nil, err
	}
	sent := &ChangesSent{Ack: f, Size: len(msg.Data), Changes: len(b.changes)}
	b.changes, b.size, b.ctx = nil, 0, nil
	return sent, nil
}
