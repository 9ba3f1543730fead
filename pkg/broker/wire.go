package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/proto/flussopb"
)

// The typed operations of the pipeline's messages: the stages publish and
// take changes, documents, markers and quarantine entries through these,
// and only this package knows their subjects, headers and encoding.

// Sent is a publish awaiting the broker's acknowledgement.
type Sent struct {
	Ack jetstream.PubAckFuture
	// Size is the message's size as the server counts it against its
	// limits, headers included.
	Size int
}

// TooLargeError is a message larger than the broker takes in one.
type TooLargeError struct {
	Size  int
	Limit int // 0 when not known (the stream refused it)
}

func (e *TooLargeError) Error() string {
	if e.Limit <= 0 {
		return fmt.Sprintf("%d bytes, more than the broker takes in one message", e.Size)
	}
	return fmt.Sprintf("%d bytes, more than the %d bytes the broker takes in one message", e.Size, e.Limit)
}

// IsTooLarge reports whether err, from a publish acknowledgement, says the
// stream refused the message for its size.
func IsTooLarge(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
}

// changeHeaders is room left in a change's message for its headers (the
// deduplication id and the trace context).
const changeHeaders = 1 << 10

// MaxChange is the largest encoded change the broker takes:
// the server's limit (another server than the embedded one may have a
// lower one) and the changes stream's, less room for the headers.
func (c *Conn) MaxChange() int {
	limit := MaxPayload
	if server := int(c.NC.MaxPayload()); server > 0 {
		limit = min(limit, server)
	}
	return limit - changeHeaders
}

// Reconnects counts the connection's reconnects to NATS.
func (c *Conn) Reconnects() uint64 { return c.NC.Stats().Reconnects }

// inject writes the trace context of ctx into a message's headers, so the
// stage taking it continues the trace.
func inject(ctx context.Context, h nats.Header) {
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(h))
}

// withID sets the message id the stream deduplicates by; "" sets none.
func withID(msg *nats.Msg, id string) *nats.Msg {
	if id != "" {
		msg.Header.Set(jetstream.MsgIDHeader, id)
	}
	return msg
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

// encode makes a message of m for subject.
func encode(subject string, m proto.Message) (*nats.Msg, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}, nil
}

// PublishChange publishes a change with message id id ("" for none) and
// waits until the stream stored it.
func (c *Conn) PublishChange(ctx context.Context, ch *flussopb.Change, id string) (*jetstream.PubAck, error) {
	msg, err := encode(ChangesSubject, ch)
	if err != nil {
		return nil, fmt.Errorf("encoding change: %w", err)
	}
	return c.publishMsg(ctx, withID(msg, id))
}

// PublishDocumentAsync publishes a document (or a PURGE marker) with the
// trace context of ctx, without waiting for the stream to store it. A
// document larger than limit, or than the server takes, is a
// *TooLargeError and is not sent.
func (c *Conn) PublishDocumentAsync(ctx context.Context, doc *flussopb.Document, limit int) (Sent, error) {
	msg := &nats.Msg{Subject: DocsSubject(doc.Index), Header: nats.Header{}}
	inject(ctx, msg.Header)
	// Measured before encoding: a document far too large costs no copy.
	size := messageSize(msg) + proto.Size(doc)
	if size > limit {
		return Sent{}, &TooLargeError{Size: size, Limit: limit}
	}
	data, err := proto.Marshal(doc)
	if err != nil {
		return Sent{}, fmt.Errorf("encoding document: %w", err)
	}
	msg.Data = data
	f, err := c.JS.PublishMsgAsync(msg)
	if errors.Is(err, nats.ErrMaxPayload) {
		// The server's limit dropped after a reconnect.
		return Sent{}, &TooLargeError{Size: size, Limit: int(c.NC.MaxPayload())}
	}
	if err != nil {
		return Sent{}, err
	}
	return Sent{Ack: f, Size: size}, nil
}

// PublishDocument publishes a document or a marker (SEEDED) with message
// id id ("" for none) and waits until the stream stored it.
func (c *Conn) PublishDocument(ctx context.Context, doc *flussopb.Document, id string) error {
	msg, err := encode(DocsSubject(doc.Index), doc)
	if err != nil {
		return fmt.Errorf("encoding document: %w", err)
	}
	_, err = c.publishMsg(ctx, withID(msg, id))
	return err
}
