// Package assembler is the assembler stage: workers take batches of changes
// from the changes stream, find every root document they affect in every
// index, build those documents from Postgres and publish them for the
// writers. Any number of workers, in any number of processes, share the
// stream's one durable consumer.
//
// Ordering: every document built from a batch carries the batch's highest
// commit LSN as its version. The build runs after those commits, so its
// snapshot holds everything up to that version; sinks refuse a lower
// version over a higher one, so an older build never replaces a newer one
// however the workers interleave.
package assembler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/internal/telemetry"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/sqlbuild"
	"github.com/flusso/flusso/proto/flussopb"
)

// Index is one enabled index as the assembler sees it.
type Index struct {
	Name    string
	SQL     *sqlbuild.Index
	OnError config.OnError
}

// Config configures an assembler.
type Config struct {
	Pool    *pgxpool.Pool
	Broker  *broker.Conn
	Indexes []Index
	// Batch is how many changes a worker takes at once (default 500);
	// BuildChunk how many documents one build statement makes (default 250).
	Batch      int
	BuildChunk int
	// GroupKeys bounds the documents one group of a fetch may imply
	// (default 2000).
	GroupKeys int
	// MaxBacklog is how many documents may wait for the writers before the
	// assemblers pause (default 8,000, a few writer fetches): building far ahead of the sinks
	// only grows the broker's memory, never the throughput.
	MaxBacklog uint64
	Workers    int // goroutines in this process (default 1)
	Log        *slog.Logger
	// Health records the stage's failures and recoveries for /status; may be nil.
	Health *health.Stage
}

// Assembler is the assembler stage.
type Assembler struct {
	cfg Config
	log *slog.Logger

	changes     atomic.Uint64
	built       sync.Map // index → *atomic.Uint64
	quarantined sync.Map // index → *atomic.Uint64
	batches     atomic.Uint64
	// room is how many documents the workers may still publish before they
	// look at the writers' backlog again; see awaitWriters.
	room atomic.Int64
}

// New prepares an assembler.
func New(cfg Config) *Assembler {
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.MaxBacklog == 0 {
		cfg.MaxBacklog = 8_000
	}
	if cfg.GroupKeys <= 0 {
		cfg.GroupKeys = 2000
	}
	if cfg.BuildChunk <= 0 {
		cfg.BuildChunk = 250
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Assembler{cfg: cfg, log: cfg.Log.With("stage", "assembler")}
}

// Stats is a snapshot of the assembler's counters.
type Stats struct {
	Changes     uint64
	Batches     uint64
	Built       map[string]uint64
	Quarantined map[string]uint64
}

// Stats reads the counters.
func (a *Assembler) Stats() Stats {
	s := Stats{Changes: a.changes.Load(), Batches: a.batches.Load(), Built: map[string]uint64{}, Quarantined: map[string]uint64{}}
	a.built.Range(func(k, v any) bool { s.Built[k.(string)] = v.(*atomic.Uint64).Load(); return true })
	a.quarantined.Range(func(k, v any) bool { s.Quarantined[k.(string)] = v.(*atomic.Uint64).Load(); return true })
	return s
}

func count(m *sync.Map, key string, n int) {
	v, _ := m.LoadOrStore(key, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(uint64(n))
}

// Run runs the workers until ctx is done or one fails for good.
func (a *Assembler) Run(ctx context.Context) error {
	for _, ix := range a.cfg.Indexes {
		if err := ix.SQL.Prepare(ctx, a.cfg.Pool); err != nil {
			return fmt.Errorf("preparing index %s: %w", ix.Name, err)
		}
	}
	cons, err := a.cfg.Broker.JS.Consumer(ctx, broker.ChangesStream, broker.AssemblerConsumer)
	if err != nil {
		return fmt.Errorf("opening consumer %s: %w", broker.AssemblerConsumer, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range a.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.work(ctx, cons); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// badDataError stops the run under on_error = stop.
type badDataError struct{ err error }

func (e *badDataError) Error() string { return e.err.Error() }

func (a *Assembler) work(ctx context.Context, cons jetstream.Consumer) error {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		msgs, err := broker.Next(ctx, cons, a.cfg.Batch, time.Second, broker.Linger)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.log.Warn("fetching changes", "err", err)
			time.Sleep(backoff)
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		stop := broker.KeepAlive(msgs)
		for len(msgs) > 0 {
			// Checked per group, not per fetch: one fetch of backfill
			// batches can imply hundreds of thousands of documents.
			group, weight := nextGroup(msgs, a.cfg.GroupKeys)
			a.awaitWriters(ctx, weight)
			msgs = msgs[len(group):]
			if err := a.process(ctx, group); err != nil {
				for _, m := range append(group, msgs...) {
					_ = m.NakWithDelay(time.Second)
				}
				var bad *badDataError
				if errors.As(err, &bad) {
					return bad.err
				}
				if ctx.Err() != nil {
					return nil
				}
				a.log.Warn("batch failed; it will be redelivered", "changes", len(group), "err", err)
				time.Sleep(backoff)
				backoff = min(backoff*2, 10*time.Second)
				break
			}
			backoff = 200 * time.Millisecond
			for _, m := range group {
				if err := m.Ack(); err != nil {
					a.log.Warn("acking change", "err", err)
				}
			}
			a.changes.Add(uint64(len(group)))
			a.batches.Add(1)
		}
		stop()
	}
	return nil
}

// awaitWriters pauses, before a group of weight documents, while the
// documents stream holds more than MaxBacklog documents.
//
// A look at the stream is a request to the broker, and live groups are
// small and many (looking before each was 7% of the CPU at 500 changes/s),
// so a look that finds room lets the workers publish half of it before
// the next: the other half is for other assembler processes meanwhile.
func (a *Assembler) awaitWriters(ctx context.Context, weight int) {
	if a.room.Add(-int64(weight)) >= 0 {
		return
	}
	for ctx.Err() == nil {
		p, err := a.cfg.Broker.Progress(ctx, broker.DocsStream)
		if err != nil {
			return
		}
		if p.Pending <= a.cfg.MaxBacklog {
			a.room.Store(int64(a.cfg.MaxBacklog-p.Pending)/2 - int64(weight))
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// nextGroup takes the leading messages of a fetch worth at most limit
// documents (a backfill batch counts its keys, a row change one), at least
// one message, and returns their worth: each group is built, published and
// acked before the next, so progress is steady and no group outlives the
// ack wait.
func nextGroup(msgs []jetstream.Msg, limit int) (group []jetstream.Msg, weight int) {
	for i, m := range msgs {
		w := 1
		var ch flussopb.Change
		if err := proto.Unmarshal(m.Data(), &ch); err == nil && ch.Op == flussopb.ChangeOp_BACKFILL {
			w = len(ch.Keys)
		}
		if i > 0 && weight+w > limit {
			return msgs[:i], weight
		}
		weight += w
	}
	return msgs, weight
}

// work for one index within a batch.
type plan struct {
	live     []string          // keys to rebuild for every sink
	all      bool              // rebuild every document
	purge    bool              // the root table was truncated
	backfill map[seed][]string // keys to seed, by where they go
}

// seed is where backfill keys go: a generation of some sinks.
type seed struct {
	sinks      string // comma-separated sink names, empty for every sink
	generation uint32
}

// process builds and publishes everything a batch of changes implies.
func (a *Assembler) process(ctx context.Context, msgs []jetstream.Msg) error {
	ctx, span := telemetry.StartBatch(ctx, "assembler.build", broker.Headers(msgs))
	defer span.End()
	var version uint64
	var live []sqlbuild.Change
	xids := map[uint32]bool{}
	backfills := map[string]map[seed][]string{} // by index
	for _, m := range msgs {
		var ch flussopb.Change
		if err := proto.Unmarshal(m.Data(), &ch); err != nil {
			// Not ours to interpret: a corrupt message must not block the stream.
			a.log.Error("dropping undecodable change message", "err", err)
			continue
		}
		version = max(version, ch.CommitLsn)
		if ch.Op == flussopb.ChangeOp_BACKFILL {
			if backfills[ch.Index] == nil {
				backfills[ch.Index] = map[seed][]string{}
			}
			k := seed{sinks: strings.Join(ch.Sinks, ","), generation: ch.Generation}
			backfills[ch.Index][k] = append(backfills[ch.Index][k], ch.Keys...)
			continue
		}
		live = append(live, toChange(&ch))
		if ch.Xid != 0 {
			xids[ch.Xid] = true
		}
	}
	if err := awaitVisible(ctx, a.cfg.Pool, xids, a.log); err != nil {
		return fmt.Errorf("waiting for the batch's transactions to become visible: %w", err)
	}

	var pubs []jetstream.PubAckFuture
	for _, ix := range a.cfg.Indexes {
		p := plan{backfill: backfills[ix.Name]}
		var mine []sqlbuild.Change
		for _, ch := range live {
			if ix.SQL.Reads(ch.Schema, ch.Table) {
				mine = append(mine, ch)
			}
		}
		if len(mine) > 0 {
			p.purge = ix.SQL.RootTruncated(mine)
			keys, all, err := ix.SQL.Affected(ctx, a.cfg.Pool, mine)
			if err != nil {
				return fmt.Errorf("resolving documents of index %s: %w", ix.Name, err)
			}
			p.live, p.all = keys, all
		}
		f, err := a.emit(ctx, ix, p, version)
		if err != nil {
			return err
		}
		pubs = append(pubs, f...)
	}
	for _, f := range pubs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publishing a document to %s: %w", broker.DocsStream, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// emit builds and publishes one index's share of a batch.
func (a *Assembler) emit(ctx context.Context, ix Index, p plan, version uint64) ([]jetstream.PubAckFuture, error) {
	var pubs []jetstream.PubAckFuture
	if p.purge {
		f, err := a.publish(ctx, &flussopb.Document{Index: ix.Name, Op: flussopb.DocOp_PURGE, Version: version})
		if err != nil {
			return nil, err
		}
		pubs = append(pubs, f)
	}
	if p.all {
		// A related table was truncated: every document may have changed.
		after, first := "", true
		for {
			keys, err := ix.SQL.Keys(ctx, a.cfg.Pool, after, first, 5000)
			if err != nil {
				return nil, fmt.Errorf("listing documents of index %s: %w", ix.Name, err)
			}
			if len(keys) == 0 {
				break
			}
			f, err := a.build(ctx, ix, keys, nil, 0, version)
			if err != nil {
				return nil, err
			}
			pubs = append(pubs, f...)
			after, first = keys[len(keys)-1], false
		}
	} else if len(p.live) > 0 {
		f, err := a.build(ctx, ix, p.live, nil, 0, version)
		if err != nil {
			return nil, err
		}
		pubs = append(pubs, f...)
	}
	// Backfill keys also rebuilt live already reach every sink.
	done := map[string]bool{}
	for _, k := range p.live {
		done[k] = true
	}
	seeds := make([]seed, 0, len(p.backfill))
	for k := range p.backfill {
		seeds = append(seeds, k)
	}
	slices.SortFunc(seeds, func(a, b seed) int {
		return cmp.Or(strings.Compare(a.sinks, b.sinks), cmp.Compare(a.generation, b.generation))
	})
	for _, sd := range seeds {
		var keys []string
		for _, k := range p.backfill[sd] {
			if !done[k] && !p.all {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			continue
		}
		var sinks []string
		if sd.sinks != "" {
			sinks = strings.Split(sd.sinks, ",")
		}
		f, err := a.build(ctx, ix, keys, sinks, sd.generation, version)
		if err != nil {
			return nil, err
		}
		pubs = append(pubs, f...)
	}
	return pubs, nil
}

// build builds keys in chunks and publishes each document to the sinks
// and generation given (none: every sink, every live generation).
func (a *Assembler) build(ctx context.Context, ix Index, keys []string, sinks []string, gen uint32, version uint64) ([]jetstream.PubAckFuture, error) {
	var pubs []jetstream.PubAckFuture
	for start := 0; start < len(keys); start += a.cfg.BuildChunk {
		chunk := keys[start:min(start+a.cfg.BuildChunk, len(keys))]
		docs, err := ix.SQL.Build(ctx, a.cfg.Pool, chunk)
		if err != nil {
			return nil, fmt.Errorf("building documents of index %s: %w", ix.Name, err)
		}
		for _, d := range docs {
			if d.Err != nil {
				if err := a.reject(ix, d.ID, version, d.Err); err != nil {
					return nil, err
				}
				continue
			}
			doc := &flussopb.Document{Index: ix.Name, Id: d.ID, Version: version, Sinks: sinks, Generation: gen}
			if d.Body == nil {
				doc.Op = flussopb.DocOp_DELETE_DOC
			} else {
				doc.Op, doc.Body = flussopb.DocOp_UPSERT, d.Body
			}
			f, err := a.publish(ctx, doc)
			if err != nil {
				if errors.Is(err, nats.ErrMaxPayload) {
					if err := a.reject(ix, d.ID, version, fmt.Errorf("document is larger than the %d-byte message limit", broker.MaxPayload)); err != nil {
						return nil, err
					}
					continue
				}
				return nil, err
			}
			pubs = append(pubs, f)
		}
		count(&a.built, ix.Name, len(docs))
	}
	return pubs, nil
}

// reject applies on_error to a document that could not be built.
func (a *Assembler) reject(ix Index, id string, version uint64, cause error) error {
	if ix.OnError != config.Skip {
		return &badDataError{fmt.Errorf("index %s, document %s: %w (on_error = stop: fix the data or set on_error = \"skip\")", ix.Name, id, cause)}
	}
	count(&a.quarantined, ix.Name, 1)
	a.log.Warn("document quarantined", "index", ix.Name, "id", id, "reason", cause)
	msg := &nats.Msg{Subject: broker.QuarantineSubject(broker.AssemblerSink, ix.Name), Data: []byte(cause.Error()), Header: nats.Header{}}
	msg.Header.Set(broker.HeaderSink, broker.AssemblerSink)
	msg.Header.Set(broker.HeaderIndex, ix.Name)
	msg.Header.Set(broker.HeaderID, id)
	msg.Header.Set(broker.HeaderReason, cause.Error())
	msg.Header.Set(broker.HeaderVersion, strconv.FormatUint(version, 10))
	if _, err := a.cfg.Broker.JS.PublishMsgAsync(msg); err != nil {
		return fmt.Errorf("quarantining document %s of %s: %w", id, ix.Name, err)
	}
	return nil
}

func (a *Assembler) publish(ctx context.Context, doc *flussopb.Document) (jetstream.PubAckFuture, error) {
	data, err := proto.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding document: %w", err)
	}
	if len(data) > broker.MaxPayload-1024 {
		return nil, nats.ErrMaxPayload
	}
	msg := &nats.Msg{Subject: broker.DocsSubject(doc.Index), Data: data, Header: nats.Header{}}
	telemetry.Inject(ctx, msg.Header)
	f, err := a.cfg.Broker.JS.PublishMsgAsync(msg)
	if err != nil {
		return nil, fmt.Errorf("publishing document %s of %s: %w", doc.Id, doc.Index, err)
	}
	return f, nil
}

func toChange(ch *flussopb.Change) sqlbuild.Change {
	c := sqlbuild.Change{Schema: ch.Schema, Table: ch.Table, New: values(ch.New), Old: values(ch.Old)}
	switch ch.Op {
	case flussopb.ChangeOp_INSERT:
		c.Op = sqlbuild.Insert
	case flussopb.ChangeOp_UPDATE:
		c.Op = sqlbuild.Update
	case flussopb.ChangeOp_DELETE:
		c.Op = sqlbuild.Delete
	case flussopb.ChangeOp_TRUNCATE:
		c.Op = sqlbuild.Truncate
	}
	return c
}

// values turns a row image into the builder's form; unchanged TOAST values
// are left out (not sent).
func values(r *flussopb.Row) map[string]*string {
	if r == nil {
		return nil
	}
	out := make(map[string]*string, len(r.Columns))
	for name, d := range r.Columns {
		switch {
		case d.Unchanged:
		case d.Null:
			out[name] = nil
		default:
			t := d.Text
			out[name] = &t
		}
	}
	return out
}
