package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/flusso/flusso/proto/flussopb"
)

// Delivery is one message taken from a consumer, decoded once: a batch
// of values, or one.
type Delivery[T any] struct {
	msg jetstream.Msg
	// Values are what the message holds, in order; Err says why it could
	// not be decoded (Values are then of no use). The message is acked,
	// and redelivered, as a whole.
	Values []T
	Err    error
}

// ChangeMsg is changes of one transaction (or a backfill key batch)
// delivered to the assemblers.
type ChangeMsg = Delivery[*flussopb.Change]

// DocumentMsg is documents of one index, or a marker alone, delivered to a
// sink's writers.
type DocumentMsg = Delivery[*flussopb.Document]

// Ack tells the stream the message is done with.
func (d *Delivery[T]) Ack() error { return d.msg.Ack() }

// Nak hands the message back for immediate redelivery.
func (d *Delivery[T]) Nak() error { return d.msg.Nak() }

// NakWithDelay hands the message back for redelivery after delay.
func (d *Delivery[T]) NakWithDelay(delay time.Duration) error { return d.msg.NakWithDelay(delay) }

// InProgress tells the stream the message is still being worked on.
func (d *Delivery[T]) InProgress() error { return d.msg.InProgress() }

// Len is the message's length, headers left out.
func (d *Delivery[T]) Len() int { return len(d.msg.Data()) }

// Seq is the message's sequence on its stream; 0 when not known.
func (d *Delivery[T]) Seq() uint64 {
	meta, err := d.msg.Metadata()
	if err != nil {
		return 0
	}
	return meta.Sequence.Stream
}

// Last reports whether nothing waited behind the message on its consumer
// when it was delivered.
func (d *Delivery[T]) Last() bool {
	meta, err := d.msg.Metadata()
	return err == nil && meta.NumPending == 0
}

// Consumer takes decoded messages from a durable consumer.
type Consumer[T any] struct {
	conn   *Conn
	cons   jetstream.Consumer
	decode func(nats.Header, []byte) ([]T, error)
}

// ChangeConsumer is the assemblers' consumer of changes.
type ChangeConsumer = Consumer[*flussopb.Change]

// DocumentConsumer is a sink's writers' consumer of documents.
type DocumentConsumer = Consumer[*flussopb.Document]

// Changes opens the assemblers' consumer of the changes stream.
func (c *Conn) Changes(ctx context.Context) (*ChangeConsumer, error) {
	return consumer(ctx, c, ChangesStream, AssemblerConsumer, decodeChanges)
}

// Documents opens the consumer of sink's writers on the documents stream.
func (c *Conn) Documents(ctx context.Context, sink string) (*DocumentConsumer, error) {
	return consumer(ctx, c, DocsStream, WriterConsumer(sink), decodeDocuments)
}

func consumer[T any](ctx context.Context, c *Conn, stream, name string, decode func(nats.Header, []byte) ([]T, error)) (*Consumer[T], error) {
	cons, err := c.JS.Consumer(ctx, stream, name)
	if err != nil {
		return nil, fmt.Errorf("opening consumer %s: %w", name, err)
	}
	return &Consumer[T]{conn: c, cons: cons, decode: decode}, nil
}

// Next takes the next batch of up to max changes or documents as Next
// does, decoded.
func (c *Consumer[T]) Next(ctx context.Context, max int, wait, linger time.Duration) ([]*Delivery[T], error) {
	return c.NextBytes(ctx, max, 0, wait, linger)
}

// NextBytes takes the next batch as NextBytes does, decoded.
func (c *Consumer[T]) NextBytes(ctx context.Context, max, maxBytes int, wait, linger time.Duration) ([]*Delivery[T], error) {
	msgs, err := NextBytes(ctx, c.cons, max, maxBytes, wait, linger)
	if err != nil {
		return nil, err
	}
	out := make([]*Delivery[T], len(msgs))
	for i, m := range msgs {
		out[i] = c.deliver(m)
	}
	return out, nil
}

func (c *Consumer[T]) deliver(m jetstream.Msg) *Delivery[T] {
	v, err := c.decode(m.Headers(), m.Data())
	return &Delivery[T]{msg: m, Values: v, Err: err}
}

// AckedBefore reports whether every message before d is acked on the
// consumer, so that d comes next in stream order.
func (c *Consumer[T]) AckedBefore(ctx context.Context, d *Delivery[T]) (bool, error) {
	meta, err := d.msg.Metadata()
	if err != nil {
		return false, fmt.Errorf("reading message metadata: %w", err)
	}
	// The acks just sent must reach the server before it is asked.
	fctx, cancel := context.WithTimeout(ctx, AckWait)
	defer cancel()
	if err := c.conn.NC.FlushWithContext(fctx); err != nil {
		return false, fmt.Errorf("flushing acks: %w", err)
	}
	info, err := c.cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("reading consumer state: %w", err)
	}
	return info.AckFloor.Stream+1 >= meta.Sequence.Stream, nil
}

// KeepAlive tells the server that ds are still being worked on, every
// AckWait/3, until the returned stop is called.
func KeepAlive[T any](ds []*Delivery[T]) (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(AckWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, d := range ds {
					_ = d.InProgress()
				}
			}
		}
	}()
	return func() { close(done) }
}

// tracerName is the instrumentation scope of flusso's spans (the one
// internal/telemetry names).
const tracerName = "github.com/flusso/flusso"

// maxLinks bounds the links of one batch span to the spans of its messages.
const maxLinks = 128

// StartBatch starts a span for work on a batch of deliveries: a child of
// the first one's trace, linked to the others', so the trace of one change
// continues through every stage that handles it. The others' trace
// contexts are read only when the span is recorded: without tracing a
// batch costs one look at its first message's headers.
func StartBatch[T any](ctx context.Context, name string, ds []*Delivery[T], attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	prop := otel.GetTextMapPropagator()
	parent := ctx
	if len(ds) > 0 {
		parent = prop.Extract(ctx, propagation.HeaderCarrier(ds[0].msg.Headers()))
	}
	attrs = append(attrs, attribute.Int("messaging.batch.message_count", len(ds)))
	ctx, span := otel.Tracer(tracerName).Start(parent, name, trace.WithAttributes(attrs...))
	if !span.IsRecording() {
		return ctx, span
	}
	links := 0
	for _, d := range ds[min(1, len(ds)):] {
		if links == maxLinks {
			break
		}
		mctx := prop.Extract(ctx, propagation.HeaderCarrier(d.msg.Headers()))
		if sc := trace.SpanContextFromContext(mctx); sc.IsValid() {
			span.AddLink(trace.Link{SpanContext: sc})
			links++
		}
	}
	return ctx, span
}

// Watch follows the documents of some indexes from a sequence on, for a
// while: an ephemeral consumer, removed by Close.
type Watch struct {
	stream jetstream.Stream
	cons   jetstream.Consumer
}

// WatchDocuments follows the documents of indexes published from sequence
// from on.
func (c *Conn) WatchDocuments(ctx context.Context, indexes []string, from uint64) (*Watch, error) {
	stream, err := c.JS.Stream(ctx, DocsStream)
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", DocsStream, err)
	}
	subjects := make([]string, len(indexes))
	for i, index := range indexes {
		subjects[i] = DocsSubject(index)
	}
	// An explicit consumer, removed when done: on an interest stream any
	// consumer holds what it has not been delivered yet, and so the slot.
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubjects:    subjects,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", DocsStream, err)
	}
	return &Watch{stream: stream, cons: cons}, nil
}

// Fetch takes the documents of up to max messages, those inside batches
// too, waiting up to wait for them; messages that do not decode are left
// out.
func (w *Watch) Fetch(max int, wait time.Duration) ([]*flussopb.Document, error) {
	batch, err := w.cons.Fetch(max, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, err
	}
	var out []*flussopb.Document
	for m := range batch.Messages() {
		if docs, err := decodeDocuments(m.Headers(), m.Data()); err == nil {
			out = append(out, docs...)
		}
	}
	return out, batch.Error()
}

// Close removes the watch's consumer.
func (w *Watch) Close(ctx context.Context) error {
	return w.stream.DeleteConsumer(ctx, w.cons.CachedInfo().Name)
}
