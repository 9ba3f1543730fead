// Package broker is the JetStream layout the stages share: the streams
// between them, their consumers, the state bucket, and the embedded server
// used when no external NATS is configured. It owns the wire: the stages
// publish and take changes, documents, markers and quarantine entries
// through typed operations and never see subjects, headers or encodings.
//
// Layout (what `nats stream info` / `nats consumer info` show):
//
//	stream FLUSSO_CHANGES    subject flusso.changes            work queue; consumer "assembler"
//	stream FLUSSO_DOCS       subjects flusso.docs.<index>      interest;   consumer "writer_<sink>" per sink
//	stream FLUSSO_QUARANTINE subjects flusso.quarantine.<sink>.<index>  limits (kept for inspection and replay)
//	KV     flusso_state      backfill checkpoints, seeding state of stateless sinks
//	KV     flusso_lease      the active capture's lease (entries expire after LeaseTTL)
//
// Both pipeline streams drop a message only once every consumer has acked
// it, so the first sequence still stored tells how far a stage has durably
// got: the capture's end-to-end watermark is built on that.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/pkg/redact"
	"github.com/flusso/flusso/pkg/retry"
)

// Names of streams, subjects, consumers and buckets.
const (
	ChangesStream     = "FLUSSO_CHANGES"
	ChangesSubject    = "flusso.changes"
	DocsStream        = "FLUSSO_DOCS"
	DocsSubjectPrefix = "flusso.docs."
	QuarantineStream  = "FLUSSO_QUARANTINE"
	QuarantinePrefix  = "flusso.quarantine."
	AssemblerConsumer = "assembler"
	StateBucket       = "flusso_state"
	LeaseBucket       = "flusso_lease"
)

// LeaseTTL is how long a capture's lease outlives its last renewal.
const LeaseTTL = 10 * time.Second

// MaxPayload bounds one message; a built document larger than this cannot
// travel and is reported as a rejection.
const MaxPayload = 8 << 20

// Headers of a quarantined document's message: who refused it, what it is
// and why, and the version its rebuild on replay carries.
const (
	HeaderSink    = "Flusso-Sink"
	HeaderIndex   = "Flusso-Index"
	HeaderID      = "Flusso-Id"
	HeaderReason  = "Flusso-Reason"
	HeaderVersion = "Flusso-Version"
)

// AssemblerSink stands in the quarantine subject and HeaderSink for
// documents the assemblers could not build; their replay goes to every sink.
const AssemblerSink = "assembler"

// DocsSubject is the subject of documents of one index.
func DocsSubject(index string) string { return DocsSubjectPrefix + index }

// QuarantineSubject is the subject of quarantined documents of one sink and index.
func QuarantineSubject(sink, index string) string {
	return QuarantinePrefix + sink + "." + index
}

const writerPrefix = "writer_"

// WriterConsumer is the durable consumer of one sink's writers.
func WriterConsumer(sink string) string { return writerPrefix + sink }

// Conn is a connection to NATS with JetStream. The stages publish and
// take the pipeline's messages through its typed operations (wire.go,
// deliver.go, quarantine.go) only; NC and JS are for this package and for
// tests that set up or break a broker.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream
}

// Connect dials url, retrying every second until ctx ends; each failed
// attempt is logged with the address and the attempt count. url may list
// the servers of a cluster, comma-separated: the client connects to any
// one that answers and moves to another when it goes. Reconnects are
// unlimited: a broker restart is an outage to wait out, not a reason to
// stop.
func Connect(ctx context.Context, url, name string, opts ...nats.Option) (*Conn, error) {
	opts = append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.Timeout(5 * time.Second),
	}, opts...)
	addr := redact.String(url)
	var nc *nats.Conn
	var err error
	for attempt := 1; ; attempt++ {
		nc, err = nats.Connect(url, opts...)
		if err == nil {
			break
		}
		slog.Warn("connecting to NATS failed, retrying", "url", addr, "attempt", attempt, "in", time.Second, "err", redact.Error(err))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to NATS at %s (%d attempts): %s", addr, attempt, redact.Error(err))
		case <-time.After(time.Second):
		}
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(PublishTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("opening JetStream on %s: %s", addr, redact.Error(err))
	}
	return &Conn{NC: nc, JS: js}, nil
}

// Close drains the connection.
func (c *Conn) Close() {
	if c != nil && c.NC != nil {
		_ = c.NC.Drain()
	}
}

// QuarantineLimits bound the quarantine stream: past either, its oldest
// entries go. A zero field takes the default.
type QuarantineLimits struct {
	MaxBytes int64
	MaxAge   time.Duration
}

// Defaults of QuarantineLimits.
const (
	DefaultQuarantineMaxBytes = 1 << 30
	DefaultQuarantineMaxAge   = 30 * 24 * time.Hour
)

func (l QuarantineLimits) withDefaults() QuarantineLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultQuarantineMaxBytes
	}
	if l.MaxAge <= 0 {
		l.MaxAge = DefaultQuarantineMaxAge
	}
	return l
}

// SetupOption changes what Setup creates.
type SetupOption func(*setup)

type setup struct {
	quarantine QuarantineLimits
	placement  Placement
}

// WithQuarantineLimits sets the quarantine stream's limits.
func WithQuarantineLimits(l QuarantineLimits) SetupOption {
	return func(s *setup) { s.quarantine = l }
}

// WithPlacement sets how many copies of every stream and bucket the
// cluster keeps, and on which servers.
func WithPlacement(p Placement) SetupOption {
	return func(s *setup) { s.placement = p }
}

// Setup creates or updates the streams, consumers and the state bucket for
// the given sinks. Every role calls it; it is idempotent. It never removes
// the consumer of a sink it does not know: during a rolling upgrade that
// adds a sink, the old processes would delete the new sink's consumer and
// its documents with it. A sink removed for good leaves its consumer
// holding documents until `flusso consumers delete` removes it.
//
// A NATS cluster that is starting or electing its leaders cannot answer
// for a while: Setup waits that out, up to setupWait.
func (c *Conn) Setup(ctx context.Context, sinks []string, opts ...SetupOption) error {
	var set setup
	for _, o := range opts {
		o(&set)
	}
	pause := retry.Delay{Limit: 5 * time.Second}
	deadline := time.Now().Add(setupWait)
	for attempt := 1; ; attempt++ {
		// Each attempt on its own clock: a request no leader takes up is
		// never answered, and would otherwise wait as long as ctx.
		actx, cancel := context.WithTimeout(ctx, setupAttempt)
		err := c.setup(actx, sinks, set)
		cancel()
		if err == nil || !leaderless(ctx, err) || time.Now().After(deadline) {
			return err
		}
		d := pause.Next()
		slog.Warn("NATS cannot lay out the streams yet (a cluster electing its leaders?); retrying", "attempt", attempt, "in", d.Round(time.Millisecond), "err", redact.Error(err))
		if err := retry.Sleep(ctx, d); err != nil {
			return fmt.Errorf("laying out the streams: %w", err)
		}
	}
}

// setupWait bounds how long Setup waits for a NATS cluster to answer, and
// setupAttempt one attempt.
const (
	setupWait    = 2 * time.Minute
	setupAttempt = 5 * time.Second
)

func (c *Conn) setup(ctx context.Context, sinks []string, set setup) error {
	limits := set.quarantine.withDefaults()
	place := set.placement.withDefaults()
	streams := []jetstream.StreamConfig{{
		Name:        ChangesStream,
		Description: "captured row changes and backfill key batches, consumed by the assemblers",
		Subjects:    []string{ChangesSubject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  10 * time.Minute,
		MaxMsgSize:  MaxPayload,
	}, {
		Name:        DocsStream,
		Description: "built documents per index, consumed by one writer consumer per sink",
		Subjects:    []string{DocsSubjectPrefix + ">"},
		Retention:   jetstream.InterestPolicy,
		Storage:     jetstream.FileStorage,
		MaxMsgSize:  MaxPayload,
	}, {
		Name:        QuarantineStream,
		Description: "documents a sink rejected under on_error = skip, kept for inspection and replay",
		Subjects:    []string{QuarantinePrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxMsgSize:  MaxPayload,
		MaxBytes:    limits.MaxBytes,
		MaxAge:      limits.MaxAge,
		Discard:     jetstream.DiscardOld,
	}}
	for _, cfg := range streams {
		place.apply(&cfg)
		from := c.rescale(ctx, cfg.Name, place)
		_, err := c.JS.CreateOrUpdateStream(ctx, cfg)
		if cfg.MaxBytes > 0 && noRoom(err) {
			// JetStream reserves a stream's byte limit up front; a server
			// on a small disk or an account with a quota cannot. Better a
			// quarantine bounded by age alone than no pipeline.
			slog.Warn("NATS cannot reserve the stream's byte limit; it is bounded by age only (lower --quarantine-max-bytes)",
				"stream", cfg.Name, "max_bytes", cfg.MaxBytes, "err", err)
			cfg.MaxBytes = -1
			_, err = c.JS.CreateOrUpdateStream(ctx, cfg)
		}
		if err != nil {
			return place.explain("stream "+cfg.Name, from, err)
		}
	}
	if _, err := c.JS.CreateOrUpdateConsumer(ctx, ChangesStream, jetstream.ConsumerConfig{
		Durable:       AssemblerConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       AckWait,
		MaxAckPending: 100_000,
		MaxDeliver:    -1,
		Replicas:      place.Replicas,
	}); err != nil {
		return place.explain("consumer "+AssemblerConsumer, 0, err)
	}
	for _, s := range sinks {
		name := WriterConsumer(s)
		if _, err := c.JS.CreateOrUpdateConsumer(ctx, DocsStream, jetstream.ConsumerConfig{
			Durable:       name,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       AckWait,
			MaxAckPending: 100_000,
			MaxDeliver:    -1,
			Replicas:      place.Replicas,
		}); err != nil {
			return place.explain("consumer "+name, 0, err)
		}
	}
	for _, cfg := range []jetstream.KeyValueConfig{{
		Bucket:      StateBucket,
		Description: "flusso pipeline state: backfill checkpoints, seeding state",
		History:     1,
		Storage:     jetstream.FileStorage,
	}, {
		Bucket:      LeaseBucket,
		Description: "the active capture's lease; an entry not renewed within its max age expires",
		History:     1,
		TTL:         LeaseTTL,
		Storage:     jetstream.FileStorage,
	}} {
		cfg.Replicas, cfg.Placement = place.Replicas, place.placement()
		from := c.rescale(ctx, kvStream(cfg.Bucket), place)
		if _, err := c.JS.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return place.explain("key-value bucket "+cfg.Bucket, from, err)
		}
	}
	return nil
}

// kvStream is the stream that holds a key-value bucket.
func kvStream(bucket string) string { return "KV_" + bucket }

// WriterState is what a sink's writer consumer holds.
type WriterState struct {
	Sink     string `json:"sink"`
	Consumer string `json:"consumer"`
	// Pending is the messages of documents not yet delivered, AckPending
	// the ones delivered and not yet acked; a message holds up to 128
	// documents of one index, or one marker.
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
	// Active is when a writer last fetched; nil when none ever did.
	Active *time.Time `json:"active,omitempty"`
}

// Writers lists the writer consumers on the documents stream, by name:
// the configured sinks' and any a removed sink left behind.
func (c *Conn) Writers(ctx context.Context) ([]WriterState, error) {
	docs, err := c.JS.Stream(ctx, DocsStream)
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", DocsStream, err)
	}
	lister := docs.ListConsumers(ctx)
	var out []WriterState
	for info := range lister.Info() {
		sink, ok := strings.CutPrefix(info.Name, writerPrefix)
		if !ok {
			continue
		}
		ws := WriterState{Sink: sink, Consumer: info.Name, Pending: info.NumPending, AckPending: info.NumAckPending}
		if info.Delivered.Last != nil {
			at := info.Delivered.Last.UTC()
			ws.Active = &at
		}
		out = append(out, ws)
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("listing consumers of %s: %w", DocsStream, err)
	}
	slices.SortFunc(out, func(a, b WriterState) int { return strings.Compare(a.Consumer, b.Consumer) })
	return out, nil
}

// DeleteWriter removes the writer consumer of sink, releasing the
// documents it held for it; a missing one is an error that IsNotFound
// recognises. A process still running that sink's writer gets no more
// documents until it restarts (Setup creates the consumer again).
func (c *Conn) DeleteWriter(ctx context.Context, sink string) error {
	name := WriterConsumer(sink)
	if err := c.JS.DeleteConsumer(ctx, DocsStream, name); err != nil {
		return fmt.Errorf("removing consumer %s of %s: %w", name, DocsStream, err)
	}
	return nil
}

// QuarantineUsage is how full the quarantine stream is.
type QuarantineUsage struct {
	Bytes    uint64 // stored
	MaxBytes int64  // past it the oldest entries go; -1: no limit
	Entries  uint64
	MaxAge   time.Duration // 0: no limit
}

// Quarantine reads the quarantine stream's usage and limits, for a metric
// that warns before entries are dropped for room.
func (c *Conn) Quarantine(ctx context.Context) (QuarantineUsage, error) {
	info, err := c.streamInfo(ctx, QuarantineStream)
	if err != nil {
		return QuarantineUsage{}, err
	}
	return QuarantineUsage{Bytes: info.State.Bytes, MaxBytes: info.Config.MaxBytes, Entries: info.State.Msgs, MaxAge: info.Config.MaxAge}, nil
}

// noRoom reports whether err says the server cannot reserve the storage a
// stream asks for.
func noRoom(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeStorageResourcesExceeded
}

// jsErrCodeStorageResourcesExceeded is JetStream's "insufficient storage
// resources available" (the client library names no constant for it).
const jsErrCodeStorageResourcesExceeded jetstream.ErrorCode = 10047

// State opens the state bucket.
func (c *Conn) State(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.JS.KeyValue(ctx, StateBucket)
	if err != nil {
		return nil, fmt.Errorf("opening key-value bucket %s: %w", StateBucket, err)
	}
	return kv, nil
}

// Lease opens the lease bucket.
func (c *Conn) Lease(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.JS.KeyValue(ctx, LeaseBucket)
	if err != nil {
		return nil, fmt.Errorf("opening key-value bucket %s: %w", LeaseBucket, err)
	}
	return kv, nil
}

// Progress is how far consumers have got through a stream.
type Progress struct {
	// Done is the highest sequence S such that every message up to S is
	// acked by every consumer (and so removed).
	Done uint64
	// Last is the last sequence stored.
	Last uint64
	// Pending is the number of messages still stored.
	Pending uint64
}

// Progress reads a pipeline stream's progress.
func (c *Conn) Progress(ctx context.Context, stream string) (Progress, error) {
	info, err := c.streamInfo(ctx, stream)
	if err != nil {
		return Progress{}, err
	}
	st := info.State
	done := st.LastSeq
	if st.Msgs > 0 && st.FirstSeq > 0 {
		done = st.FirstSeq - 1
	}
	return Progress{Done: done, Last: st.LastSeq, Pending: st.Msgs}, nil
}

// IsNotFound reports whether err says a key, stream or consumer is missing.
func IsNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrConsumerNotFound)
}

// AckWait is how long a consumer waits for an ack before redelivering. It
// is short so the work of a crashed worker moves on quickly; live workers
// extend it with KeepAlive while they are busy.
const AckWait = 10 * time.Second

// Linger is the linger the pipeline's stages give Next. Every batch costs
// fixed work downstream (the assembler's visibility query, the queries
// that find its documents and a build statement; the writer's bulk request
// and OpenSearch's translog sync), so at a few hundred changes a second
// batching a moment's worth leaves more of the CPU to Postgres and
// OpenSearch, for a moment of latency.
const Linger = 50 * time.Millisecond

// Next takes the next batch of up to max items (a batch message counts the
// changes or documents it holds, any other message one) from a pull
// consumer: it waits up to wait for the first one, then takes whatever else is there
// without waiting to fill the batch. With linger, what is there linger
// after the first message is taken too, when the batch is not full by
// then: a trickle flows in batches of linger's worth instead of one
// message at a time (each batch costs its queries and requests downstream),
// and a backlog still goes in full batches at once. No message within wait
// gives an empty batch.
func Next(ctx context.Context, cons jetstream.Consumer, max int, wait, linger time.Duration) ([]jetstream.Msg, error) {
	return NextBytes(ctx, cons, max, 0, wait, linger)
}

// NextBytes is Next with the batch also bounded by maxBytes of message data
// (0: no bound), judged at the size of the largest message taken so far: a
// batch of large documents then holds a few of them, not max. The first
// message is taken whatever its size, so none is ever stuck.
func NextBytes(ctx context.Context, cons jetstream.Consumer, max, maxBytes int, wait, linger time.Duration) ([]jetstream.Msg, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	first, err := cons.Fetch(1, jetstream.FetchContext(wctx))
	if err != nil {
		if wctx.Err() != nil && ctx.Err() == nil {
			return nil, nil
		}
		return nil, err
	}
	start := time.Now()
	var out []jetstream.Msg
	for m := range first.Messages() {
		out = append(out, m)
	}
	if err := first.Error(); err != nil && len(out) == 0 && wctx.Err() == nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, err
	}
	if len(out) == 0 {
		return out, nil
	}
	out = takeReady(cons, out, max, maxBytes)
	if countItems(out) < max && linger > 0 {
		select {
		case <-ctx.Done():
			return out, nil // the messages taken are still worth processing
		case <-time.After(linger - time.Since(start)):
		}
		out = takeReady(cons, out, max, maxBytes)
	}
	return out, nil
}

// takeReady appends to out the messages ready now, up to maxItems in all
// at the item count of the largest batch taken so far; with
// maxBytes, it also takes no more than the room left fits at the size of
// the largest message taken so far. The bound is a count, not a byte bound
// of the pull request: a pull that has to expire on the server can be
// answered after the client stopped listening, and its messages would then
// wait out the ack timeout (10 s) before anyone sees them. A failure leaves
// out as it is, still worth processing.
func takeReady(cons jetstream.Consumer, out []jetstream.Msg, maxItems, maxBytes int) []jetstream.Msg {
	// A batch message counts its items against maxItems, like bytes.
	most := 1
	for _, m := range out {
		most = max(most, items(m))
	}
	n := (maxItems - countItems(out)) / most
	if maxBytes > 0 {
		room, largest := maxBytes, 1
		for _, m := range out {
			room -= len(m.Data())
			if size := len(m.Data()); size > largest {
				largest = size
			}
		}
		n = min(n, room/largest)
	}
	if n <= 0 {
		return out
	}
	rest, err := cons.FetchNoWait(n)
	if err != nil {
		return out
	}
	for m := range rest.Messages() {
		out = append(out, m)
	}
	return out
}

// streamInfo reads a stream's configuration and state in one request:
// looking the stream up already returns its info, so asking again would be a
// second round trip on paths that run every second.
func (c *Conn) streamInfo(ctx context.Context, name string) (*jetstream.StreamInfo, error) {
	s, err := c.JS.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", name, err)
	}
	return s.CachedInfo(), nil
}
