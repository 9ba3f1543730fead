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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/meter"
	"github.com/flusso/flusso/pkg/retry"
	"github.com/flusso/flusso/pkg/sqlbuild"
	"github.com/flusso/flusso/proto/flussopb"
)

// Config configures an assembler.
type Config struct {
	Pool    *pgxpool.Pool
	Broker  *broker.Conn
	Indexes []flow.Index // their SQL is the assembler's own to prepare
	// Batch is how many changes a worker takes at once (default 500);
	// BuildChunk how many documents one build statement makes at most
	// (default 250; fewer when the documents are large, see buildBytes).
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
	// Built and Quarantined count documents by index as they are published
	// or set aside; may be nil.
	Built, Quarantined *meter.Counter
}

// Assembler is the assembler stage.
type Assembler struct {
	cfg     Config
	log     *slog.Logger
	indexes []*index
	// limit is the largest document message, headers included, that the
	// broker takes; set by Run.
	limit int

	// room is how many documents the workers may still publish before they
	// look at the writers' backlog again; see awaitWriters.
	room atomic.Int64
	// sentDocs and sentMsgs count the documents published and the
	// messages they took, to read the stream's backlog in documents.
	sentDocs, sentMsgs atomic.Int64
}

// index is an enabled index with its prepared statements, replaced by
// statements prepared again when its tables change shape (see refresh).
type index struct {
	name    string
	onError flow.OnError
	sql     atomic.Pointer[sqlbuild.Index]
	// chunk is how many documents its next build statement makes; 0
	// before the first.
	chunk atomic.Int64
}

// buildBytes is about how many bytes of documents one build statement
// makes: a build holds all of them at once, so with large documents it
// makes fewer (a transaction of 200 rows of 1 MiB would otherwise be
// 200 MiB in memory).
const buildBytes = 16 << 20

// firstChunk is how many documents the first build of an index makes,
// before the size of its documents is known.
const firstChunk = 16

// chunkSize is how many documents the next build of ix makes. probe says
// it is a batch's first build of ix: its documents may be far larger than
// the last ones (a transaction of large rows after a backfill of small
// ones, which arrives at once when its changes share a few messages), so
// it makes at most firstChunk to measure them.
func (a *Assembler) chunkSize(ix *index, probe bool) int {
	n := int(ix.chunk.Load())
	if n == 0 || probe && n > firstChunk {
		n = firstChunk
	}
	return min(n, a.cfg.BuildChunk)
}

// built adapts the chunk of ix to a build of n documents of size bytes in
// all: towards buildBytes, growing at most twofold at a time, or after a
// probe back to the chunk before it.
func (ix *index) built(n, size int, probe bool) {
	next := 2 * n
	if probe {
		next = max(next, int(ix.chunk.Load()))
	}
	if size > 0 {
		next = max(1, min(next, n*buildBytes/size))
	}
	ix.chunk.Store(int64(next))
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
	a := &Assembler{cfg: cfg, log: cfg.Log.With("stage", "assembler")}
	for _, ix := range cfg.Indexes {
		x := &index{name: ix.Name, onError: ix.OnError}
		x.sql.Store(ix.SQL)
		a.indexes = append(a.indexes, x)
	}
	return a
}

// Run runs the workers until ctx is done or one fails for good.
func (a *Assembler) Run(ctx context.Context) error {
	for _, ix := range a.indexes {
		a.prepare(ctx, ix)
	}
	if ctx.Err() != nil {
		return nil
	}
	limit, err := a.cfg.Broker.MaxMessage(ctx, broker.DocsStream)
	if err != nil {
		return err
	}
	a.limit = limit
	cons, err := a.cfg.Broker.Changes(ctx)
	if err != nil {
		return err
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

// prepare prepares the statements of ix, retrying until it works or ctx
// is done: Postgres may be down, or the tables not yet what the schema
// reads (a migration under way), and the stage shows it meanwhile.
func (a *Assembler) prepare(ctx context.Context, ix *index) {
	pause := retry.Delay{Limit: retryCap}
	for ctx.Err() == nil {
		err := ix.sql.Load().Prepare(ctx, a.cfg.Pool)
		if err == nil {
			return
		}
		var missing *sqlbuild.MissingError
		if errors.As(err, &missing) {
			err = mismatch(ix.name, missing)
		}
		err = fmt.Errorf("preparing index %s: %w", ix.name, err)
		a.log.Warn("preparing an index failed; retrying", "index", ix.name, "err", err)
		a.cfg.Health.Fail(err)
		_ = pause.Wait(ctx)
	}
}

// badDataError stops the run under on_error = stop.
type badDataError struct{ err error }

func (e *badDataError) Error() string { return e.err.Error() }

// work takes batches of changes until ctx is done. A batch that fails is
// redelivered and retried after a pause, however often it fails (Postgres
// down, a column the schema reads dropped): the stage shows itself
// degraded meanwhile and recovers by itself once the cause is gone. Only
// bad data under on_error = stop ends it.
func (a *Assembler) work(ctx context.Context, cons *broker.ChangeConsumer) error {
	pause := retry.Delay{Limit: retryCap}
	fetchFailed := false
	for ctx.Err() == nil {
		msgs, err := cons.Next(ctx, a.cfg.Batch, time.Second, broker.Linger)
		fetched := err == nil
		switch {
		case !fetched:
			err = fmt.Errorf("fetching changes: %w", err)
		case len(msgs) == 0 && fetchFailed:
			// The broker answers again, with no batch to fail.
			a.cfg.Health.OK()
		default:
			err = a.handle(ctx, msgs)
		}
		fetchFailed = !fetched
		var bad *badDataError
		switch {
		case err == nil:
			pause.Reset()
			continue
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &bad):
			a.cfg.Health.Fail(bad.err)
			return bad.err
		}
		a.log.Warn("batch failed; it will be redelivered", "err", err)
		a.cfg.Health.Fail(err)
		_ = pause.Wait(ctx)
	}
	return nil
}

// handle processes one fetch of changes a group at a time, acking each
// group once everything it implies is stored; on failure the group and
// the rest of the fetch are handed back for redelivery.
func (a *Assembler) handle(ctx context.Context, msgs []*broker.ChangeMsg) error {
	if len(msgs) == 0 {
		return nil
	}
	stop := broker.KeepAlive(msgs)
	defer stop()
	for len(msgs) > 0 {
		// Checked per group, not per fetch: one fetch of backfill
		// batches can imply hundreds of thousands of documents.
		group, weight := nextGroup(msgs, a.cfg.GroupKeys)
		a.awaitWriters(ctx, weight)
		if err := a.process(ctx, group); err != nil {
			for _, m := range msgs {
				_ = m.NakWithDelay(time.Second)
			}
			return fmt.Errorf("processing %d changes: %w", len(group), err)
		}
		msgs = msgs[len(group):]
		a.cfg.Health.OK()
		for _, m := range group {
			if err := m.Ack(); err != nil {
				a.log.Warn("acking change", "err", err)
			}
		}
	}
	return nil
}

// retryCap bounds the pause before retrying failed work: a Postgres back
// from an outage, or a column re-added, should see the workers again soon.
const retryCap = 10 * time.Second

// awaitWriters pauses, before a group of weight documents, while the
// documents stream holds more than MaxBacklog documents (estimated from
// its messages, see perMessage).
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
		pending := p.Pending * a.perMessage()
		if pending <= a.cfg.MaxBacklog {
			a.room.Store(int64(a.cfg.MaxBacklog-pending)/2 - int64(weight))
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// perMessage is how many documents a message of the documents stream
// holds on average, as this assembler published them: the stream counts
// messages, and a batch holds many documents.
func (a *Assembler) perMessage() uint64 {
	msgs := a.sentMsgs.Load()
	if msgs == 0 {
		return 1
	}
	return uint64(max(1, a.sentDocs.Load()/msgs))
}

// nextGroup takes the leading messages of a fetch worth at most limit
// documents (a backfill batch counts its keys, a row change one), at least
// one message, and returns their worth: each group is built, published and
// acked before the next, so progress is steady and no group outlives the
// ack wait.
func nextGroup(msgs []*broker.ChangeMsg, limit int) (group []*broker.ChangeMsg, weight int) {
	for i, m := range msgs {
		w := 1
		if m.Err == nil {
			w = 0
			for _, ch := range m.Values {
				if ch.Op == flussopb.ChangeOp_BACKFILL {
					w += len(ch.Keys)
				} else {
					w++
				}
			}
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

// process builds and publishes everything a batch of changes implies, and
// returns once the broker has stored all of it.
func (a *Assembler) process(ctx context.Context, msgs []*broker.ChangeMsg) error {
	ctx, span := broker.StartBatch(ctx, "assembler.build", msgs)
	defer span.End()
	var out inflight
	var version uint64
	var live []sqlbuild.Change
	xids := map[uint32]bool{}
	backfills := map[string]map[seed][]string{} // by index
	for _, m := range msgs {
		if m.Err != nil {
			// Not ours to interpret, and it must not block the stream:
			// kept in quarantine for an operator to look at.
			if err := a.quarantineChange(ctx, &out, m); err != nil {
				return err
			}
			continue
		}
		for _, ch := range m.Values {
			version = max(version, ch.CommitLsn)
			if ch.Op == flussopb.ChangeOp_BACKFILL {
				if backfills[ch.Index] == nil {
					backfills[ch.Index] = map[seed][]string{}
				}
				k := seed{sinks: strings.Join(ch.Sinks, ","), generation: ch.Generation}
				backfills[ch.Index][k] = append(backfills[ch.Index][k], ch.Keys...)
				continue
			}
			live = append(live, toChange(ch))
			if ch.Xid != 0 {
				xids[ch.Xid] = true
			}
		}
	}
	if err := awaitVisible(ctx, a.cfg.Pool, xids, a.log); err != nil {
		return fmt.Errorf("waiting for the batch's transactions to become visible: %w", err)
	}
	for _, ix := range a.indexes {
		if err := a.index(ctx, &out, ix, live, backfills[ix.name], version); err != nil {
			return err
		}
	}
	return a.settle(ctx, &out)
}

// index builds and publishes one index's share of a batch: once more when
// the first attempt found that the index's tables changed shape.
func (a *Assembler) index(ctx context.Context, out *inflight, ix *index, live []sqlbuild.Change, backfill map[seed][]string, version uint64) error {
	err := a.assemble(ctx, out, ix, live, backfill, version)
	if errors.Is(err, errReshaped) {
		err = a.assemble(ctx, out, ix, live, backfill, version)
	}
	return err
}

// assemble builds and publishes one index's share of a batch with the
// index's current statements.
func (a *Assembler) assemble(ctx context.Context, out *inflight, ix *index, live []sqlbuild.Change, backfill map[seed][]string, version uint64) error {
	x := ix.sql.Load()
	p := plan{backfill: backfill}
	var mine []sqlbuild.Change
	for _, ch := range live {
		if x.Reads(ch.Schema, ch.Table) {
			mine = append(mine, ch)
		}
	}
	if len(mine) > 0 {
		p.purge = x.RootTruncated(mine)
		keys, all, err := x.Affected(ctx, a.cfg.Pool, mine)
		if err != nil {
			return a.explain(ctx, ix, x, fmt.Errorf("resolving documents of index %s: %w", ix.name, err))
		}
		p.live, p.all = keys, all
	}
	if err := a.emit(ctx, out, ix, x, p, version); err != nil {
		return a.explain(ctx, ix, x, err)
	}
	return nil
}

// emit builds and publishes what p asks of index ix, with statements x.
func (a *Assembler) emit(ctx context.Context, out *inflight, ix *index, x *sqlbuild.Index, p plan, version uint64) error {
	if p.purge {
		if err := a.publish(ctx, out, ix, []*flussopb.Document{{Index: ix.name, Op: flussopb.DocOp_PURGE, Version: version}}); err != nil {
			return err
		}
	}
	if p.all {
		// A related table was truncated: every document may have changed.
		err := x.KeyPages(ctx, a.cfg.Pool, 5000, func(keys []string) error {
			return a.build(ctx, out, ix, x, keys, nil, 0, version)
		})
		if err != nil {
			return err
		}
	} else if len(p.live) > 0 {
		if err := a.build(ctx, out, ix, x, p.live, nil, 0, version); err != nil {
			return err
		}
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
		if err := a.build(ctx, out, ix, x, keys, sinks, sd.generation, version); err != nil {
			return err
		}
	}
	return nil
}

// build builds keys in chunks and publishes each document to the sinks
// and generation given (none: every sink, every live generation).
func (a *Assembler) build(ctx context.Context, out *inflight, ix *index, x *sqlbuild.Index, keys []string, sinks []string, gen uint32, version uint64) error {
	for len(keys) > 0 {
		probe := !out.measured[ix]
		chunk := keys[:min(a.chunkSize(ix, probe), len(keys))]
		keys = keys[len(chunk):]
		docs, err := x.Build(ctx, a.cfg.Pool, chunk)
		if err != nil {
			return fmt.Errorf("building documents of index %s: %w", ix.name, err)
		}
		size := 0
		for _, d := range docs {
			size += len(d.Body)
		}
		ix.built(len(chunk), size, probe)
		out.measure(ix)
		if slices.ContainsFunc(docs, func(d sqlbuild.Doc) bool { return d.Err != nil }) {
			// A value that does not render may only say that the
			// statements are stale (a key widened to bigint, say).
			fresh, err := a.refresh(ctx, ix, x)
			if err != nil {
				return err
			}
			if fresh != x {
				return errReshaped
			}
		}
		built := make([]*flussopb.Document, 0, len(docs))
		for _, d := range docs {
			if d.Err != nil {
				if err := a.reject(ctx, out, ix, d.ID, version, d.Err); err != nil {
					return err
				}
				continue
			}
			doc := &flussopb.Document{Index: ix.name, Id: d.ID, Version: version, Sinks: sinks, Generation: gen}
			if d.Body == nil {
				doc.Op = flussopb.DocOp_DELETE_DOC
			} else {
				doc.Op, doc.Body = flussopb.DocOp_UPSERT, d.Body
			}
			built = append(built, doc)
		}
		if err := a.publish(ctx, out, ix, built); err != nil {
			return err
		}
		a.cfg.Built.Add(ix.name, len(docs))
	}
	return nil
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
