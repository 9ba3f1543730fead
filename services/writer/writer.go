// Package writer is the writer stage: one writer per sink (several
// processes may share a sink's durable consumer) takes built documents from
// the documents stream, writes them in bulk and acks them only once the
// sink has them, which is what lets the capture confirm the slot.
package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/retry"
	"github.com/flusso/flusso/pkg/sink"
	"github.com/flusso/flusso/proto/flussopb"
)

// Index is one enabled index as a writer sees it.
type Index struct {
	sink.Index
	OnError config.OnError
}

// Config configures a writer.
type Config struct {
	Sink    sink.Sink
	Broker  *broker.Conn
	Indexes []Index
	// Batch is how many documents one fetch takes (default 1000); a fetch
	// also stops at fetchBytes of documents.
	Batch int
	Log   *slog.Logger
	// OnFlush observes each bulk write's duration (metrics); may be nil.
	OnFlush func(sink string, d time.Duration)
	// Health records the stage's failures and recoveries for /status; may be nil.
	Health *health.Stage
}

// Writer is the writer stage of one sink.
type Writer struct {
	cfg     Config
	log     *slog.Logger
	indexes map[string]Index
	retries *retry.Runner

	written     sync.Map // index → *atomic.Uint64
	quarantined sync.Map
	batches     atomic.Uint64
	lastFlush   atomic.Int64 // nanoseconds
}

// fetchBytes bounds the documents of one fetch: with two runs in flight, a
// writer holds about twice this (large documents would otherwise make a
// fetch of Batch hold gigabytes). A bulk request is at most max_bytes
// (10 MiB by default) anyway.
const fetchBytes = 16 << 20

// New prepares a writer.
func New(cfg Config) *Writer {
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	log := cfg.Log.With("stage", "writer", "sink", cfg.Sink.Name())
	w := &Writer{cfg: cfg, log: log, indexes: map[string]Index{}, retries: &retry.Runner{Health: cfg.Health, Log: log}}
	for _, ix := range cfg.Indexes {
		w.indexes[ix.Name] = ix
	}
	return w
}

// Stats is a snapshot of a writer's counters.
type Stats struct {
	Sink        string
	Written     map[string]uint64
	Quarantined map[string]uint64
	Batches     uint64
	LastFlush   time.Duration
}

// Stats reads the counters.
func (w *Writer) Stats() Stats {
	s := Stats{Sink: w.cfg.Sink.Name(), Written: map[string]uint64{}, Quarantined: map[string]uint64{},
		Batches: w.batches.Load(), LastFlush: time.Duration(w.lastFlush.Load())}
	w.written.Range(func(k, v any) bool { s.Written[k.(string)] = v.(*atomic.Uint64).Load(); return true })
	w.quarantined.Range(func(k, v any) bool { s.Quarantined[k.(string)] = v.(*atomic.Uint64).Load(); return true })
	return s
}

func count(m *sync.Map, key string, n int) {
	v, _ := m.LoadOrStore(key, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(uint64(n))
}

// Run writes until ctx is done. A sink or broker that fails is retried
// without end (the stage shows degraded meanwhile): a slow or refusing
// sink is a wait, not a reason to stop the process. Only an item rejection
// under on_error = stop ends it with an error; the unacknowledged
// documents are redelivered to the next run.
func (w *Writer) Run(ctx context.Context) error {
	for _, ix := range w.cfg.Indexes {
		err := w.retry(ctx, "preparing index "+ix.Name, func() error {
			if _, err := w.cfg.Sink.Ensure(ctx, ix.Index); err != nil {
				return fmt.Errorf("sink %s: preparing index %s: %w", w.cfg.Sink.Name(), ix.Name, err)
			}
			return nil
		})
		if err != nil {
			return nil // ctx ended
		}
	}
	cons, err := w.cfg.Broker.Documents(ctx, w.cfg.Sink.Name())
	if err != nil {
		return err
	}
	refresh := make(chan struct{}, 1)
	go w.refresher(ctx, refresh)
	pipe := newPipeline(w, refresh)
	defer pipe.drain() //nolint:errcheck // the error is reported on the loop's own drain
	// held are messages fetched behind a marker that cannot be applied yet,
	// in stream order; fetching goes on meanwhile, since what the marker
	// waits for may be redelivered to this very writer.
	var held []*broker.DocumentMsg
	beat := time.Now()
	for ctx.Err() == nil {
		if err := pipe.failed(); err != nil {
			// The writes still in flight end (acked or handed back) first.
			pipe.drain() //nolint:errcheck // already failing with err
			return err
		}
		var fetched []*broker.DocumentMsg
		err := w.retry(ctx, "fetching documents", func() error {
			var err error
			fetched, err = cons.NextBytes(ctx, w.cfg.Batch, fetchBytes, 250*time.Millisecond, broker.Linger)
			return err
		})
		if err != nil {
			return nil // ctx ended
		}
		if len(fetched) == 0 && len(held) == 0 {
			continue
		}
		if len(held) > 0 && time.Since(beat) > broker.AckWait/3 {
			for _, m := range held {
				_ = m.InProgress()
			}
			beat = time.Now()
		}
		if len(fetched) > 0 {
			// Caught up when nothing waits behind this fetch: the writes
			// in flight then end with a refresh.
			pipe.caughtUp.Store(fetched[len(fetched)-1].Last() && len(held) == 0)
		}
		msgs := inOrder(held, fetched)
		held, err = w.process(ctx, cons, pipe, msgs)
		if err != nil {
			pipe.drain() //nolint:errcheck // already failing with err
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return nil
}

// inOrder merges held and fetched messages by stream sequence. A message
// delivered again replaces its earlier delivery.
func inOrder(held, fetched []*broker.DocumentMsg) []*broker.DocumentMsg {
	if len(held) == 0 {
		return fetched
	}
	bySeq := map[uint64]*broker.DocumentMsg{}
	for _, m := range append(held, fetched...) {
		if seq := m.Seq(); seq != 0 {
			bySeq[seq] = m
		}
	}
	seqs := make([]uint64, 0, len(bySeq))
	for seq := range bySeq {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	out := make([]*broker.DocumentMsg, len(seqs))
	for i, seq := range seqs {
		out[i] = bySeq[seq]
	}
	return out
}

// process writes messages in stream order: runs of documents go to the
// pipeline, markers (seeded, purge) are applied between them once
// everything before them is written. It returns the messages from a marker
// that is not ready yet on, to be processed again with the next fetch.
func (w *Writer) process(ctx context.Context, cons *broker.DocumentConsumer, pipe *pipeline, msgs []*broker.DocumentMsg) ([]*broker.DocumentMsg, error) {
	var run []*broker.DocumentMsg
	var docs []*flussopb.Document
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		err := pipe.submit(ctx, run, docs)
		run, docs = nil, nil
		return err
	}
	for i, m := range msgs {
		if m.Err != nil {
			w.log.Error("dropping undecodable document message", "err", m.Err)
			_ = m.Ack()
			continue
		}
		d := m.Value
		if len(d.Sinks) > 0 && !slices.Contains(d.Sinks, w.cfg.Sink.Name()) {
			run = append(run, m) // not for this sink: acked with its run
			continue
		}
		if _, ok := w.indexes[d.Index]; !ok {
			// Left on the stream by a deployment that had the index
			// enabled: nobody here owns it, and keeping it would block
			// every document behind it.
			w.log.Warn("dropping a document of an index not enabled here", "index", d.Index, "id", d.Id, "op", d.Op.String())
			run = append(run, m)
			continue
		}
		if d.Op == flussopb.DocOp_UPSERT || d.Op == flussopb.DocOp_DELETE_DOC {
			run = append(run, m)
			docs = append(docs, d)
			continue
		}
		ready, err := w.atMarker(ctx, cons, pipe, flush, m, msgs[i:])
		if err != nil {
			nakAll(msgs[i:])
			return nil, err
		}
		if !ready {
			return msgs[i:], nil
		}
	}
	return nil, flush()
}

// atMarker applies marker m once everything before it is written and
// reports whether it did; rest is m and what follows it, kept from
// redelivery while the writes before it end, however long a failing sink
// makes that.
func (w *Writer) atMarker(ctx context.Context, cons *broker.DocumentConsumer, pipe *pipeline, flush func() error,
	m *broker.DocumentMsg, rest []*broker.DocumentMsg) (bool, error) {
	stop := broker.KeepAlive(rest)
	defer stop()
	if err := flush(); err != nil {
		return false, err
	}
	if err := pipe.drain(); err != nil {
		return false, err
	}
	var ready bool
	err := w.retry(ctx, "reading the consumer state", func() error {
		var err error
		ready, err = cons.AckedBefore(ctx, m)
		return err
	})
	if err != nil || !ready {
		return false, err
	}
	return true, w.marker(ctx, m)
}

// docKey identifies one document operation for coalescing: builds of the
// same id aimed at different generations are different writes.
type docKey struct {
	index, id  string
	generation uint32
}

// write sends one run of documents to the sink and applies on_error to
// what it rejects.
func (w *Writer) write(ctx context.Context, run []*flussopb.Document) error {
	if len(run) == 0 {
		return nil
	}
	docs := make([]sink.Doc, len(run))
	for i, d := range run {
		docs[i] = toSinkDoc(d)
	}
	rejected, err := w.send(ctx, docs)
	if err != nil {
		return err
	}
	var stop, skip []sink.Rejection
	for _, r := range rejected {
		if w.indexes[r.Doc.Index].OnError == config.Skip {
			skip = append(skip, r)
		} else {
			stop = append(stop, r)
		}
	}
	if len(stop) > 0 {
		if err := w.rebuild(ctx, stop); err != nil {
			return err
		}
	}
	for _, r := range skip {
		if err := w.quarantine(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func toSinkDoc(d *flussopb.Document) sink.Doc {
	sd := sink.Doc{Index: d.Index, ID: d.Id, Version: d.Version, Generation: d.Generation, Body: d.Body, Op: sink.Upsert}
	if d.Op == flussopb.DocOp_DELETE_DOC {
		sd.Op, sd.Body = sink.Delete, nil
	}
	return sd
}

// send coalesces docs (of several builds of one document only the newest
// is written) and writes them, returning what the sink rejected. A failed
// write is retried until ctx ends, the only error.
func (w *Writer) send(ctx context.Context, docs []sink.Doc) ([]sink.Rejection, error) {
	latest := map[docKey]int{}
	var out []sink.Doc
	for _, d := range docs {
		k := docKey{d.Index, d.ID, d.Generation}
		if i, ok := latest[k]; ok {
			if out[i].Version <= d.Version {
				out[i] = d
			}
			continue
		}
		latest[k] = len(out)
		out = append(out, d)
	}
	var (
		rejected []sink.Rejection
		took     time.Duration
	)
	err := w.retry(ctx, "writing documents", func() error {
		start := time.Now()
		var err error
		if rejected, err = w.cfg.Sink.Write(ctx, out); err != nil {
			return fmt.Errorf("sink %s: writing %d documents: %w", w.cfg.Sink.Name(), len(out), err)
		}
		took = time.Since(start)
		return nil
	})
	if err != nil {
		return nil, err
	}
	w.lastFlush.Store(int64(took))
	if w.cfg.OnFlush != nil {
		w.cfg.OnFlush(w.cfg.Sink.Name(), took)
	}
	w.batches.Add(1)
	bad := map[docKey]bool{}
	for _, r := range rejected {
		bad[docKey{r.Doc.Index, r.Doc.ID, r.Doc.Generation}] = true
	}
	for _, d := range out {
		if !bad[docKey{d.Index, d.ID, d.Generation}] {
			count(&w.written, d.Index, 1)
		}
	}
	return rejected, nil
}

// rebuild handles rejections under on_error = stop. The refused build may
// be stale: after a stop the stream redelivers it as it was built, even
// once the data is fixed. So each rejected document is built again from the
// current data (a BACKFILL change for this sink, versioned like the refused
// build) and its next build written in its place; only if that is refused
// too does the run stop. The refused messages stay unacknowledged until
// then, so nothing past them is confirmed.
func (w *Writer) rebuild(ctx context.Context, rejected []sink.Rejection) error {
	first := rejected[0]
	w.log.Warn("sink rejected documents under on_error = stop; building them again from the current data before stopping",
		"documents", len(rejected), "index", first.Doc.Index, "id", first.Doc.ID)
	w.log.Debug("rejection reason", "index", first.Doc.Index, "id", first.Doc.ID, "reason", first.Reason)
	// waiting maps each document to the version its next build reaches.
	waiting := map[[2]string]uint64{}
	for _, r := range rejected {
		k := [2]string{r.Doc.Index, r.Doc.ID}
		waiting[k] = max(waiting[k], r.Doc.Version)
	}
	watch, done, err := w.requestRebuild(ctx, waiting)
	if err != nil {
		return err
	}
	defer done()
	for len(waiting) > 0 {
		docs, err := watch.Fetch(256, time.Second)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("watching %s for rebuilt documents: %w", broker.DocsStream, err)
		}
		var next []sink.Doc
		for _, d := range docs {
			if (d.Op != flussopb.DocOp_UPSERT && d.Op != flussopb.DocOp_DELETE_DOC) ||
				(len(d.Sinks) > 0 && !slices.Contains(d.Sinks, w.cfg.Sink.Name())) {
				continue
			}
			if version, ok := waiting[[2]string{d.Index, d.Id}]; ok && d.Version >= version {
				next = append(next, toSinkDoc(d))
			}
		}
		if len(next) == 0 {
			continue
		}
		again, err := w.send(ctx, next)
		if err != nil {
			return err
		}
		if len(again) > 0 {
			r := again[0]
			return fmt.Errorf("index %s, document %s: sink %s rejected it: %s (on_error = stop: fix the data and restart, or set on_error = \"skip\"; nothing after it is confirmed until then)",
				r.Doc.Index, r.Doc.ID, w.cfg.Sink.Name(), r.Reason)
		}
		for _, d := range next {
			delete(waiting, [2]string{d.Index, d.ID})
		}
		w.log.Info("rebuilt documents accepted", "documents", len(next))
	}
	return nil
}

// requestRebuild asks the assemblers to build documents again for this
// sink and returns a watch of the documents published from then on, with
// done to remove it.
func (w *Writer) requestRebuild(ctx context.Context, docs map[[2]string]uint64) (*broker.Watch, func(), error) {
	keys := map[string][]string{}
	versions := map[string]uint64{}
	for k, version := range docs {
		keys[k[0]] = append(keys[k[0]], k[1])
		versions[k[0]] = max(versions[k[0]], version)
	}
	// The watch starts at the stream's end as it is before the requests,
	// so no build they cause is missed.
	end, err := w.cfg.Broker.Progress(ctx, broker.DocsStream)
	if err != nil {
		return nil, nil, err
	}
	var indexes []string
	for index, ids := range keys {
		indexes = append(indexes, index)
		ch := &flussopb.Change{Op: flussopb.ChangeOp_BACKFILL, Index: index, Keys: ids,
			Sinks: []string{w.cfg.Sink.Name()}, CommitLsn: versions[index]}
		if _, err := w.cfg.Broker.PublishChange(ctx, ch, ""); err != nil {
			return nil, nil, fmt.Errorf("requesting a rebuild of %d documents of %s: %w", len(ids), index, err)
		}
	}
	slices.Sort(indexes)
	watch, err := w.cfg.Broker.WatchDocuments(ctx, indexes, end.Last+1)
	if err != nil {
		return nil, nil, fmt.Errorf("watching for rebuilt documents: %w", err)
	}
	done := func() {
		if err := watch.Close(context.WithoutCancel(ctx)); err != nil {
			w.log.Warn("removing the rebuild watch; it expires on its own", "err", err)
		}
	}
	return watch, done, nil
}

// quarantine keeps a rejected document on the quarantine stream, with the
// reason, so an operator can inspect and replay it.
func (w *Writer) quarantine(ctx context.Context, r sink.Rejection) error {
	doc := &flussopb.Document{Index: r.Doc.Index, Id: r.Doc.ID, Body: r.Doc.Body, Version: r.Doc.Version, Op: flussopb.DocOp_UPSERT}
	if r.Doc.Op == sink.Delete {
		doc.Op = flussopb.DocOp_DELETE_DOC
	}
	entry := broker.Rejected{Sink: w.cfg.Sink.Name(), Index: r.Doc.Index, ID: r.Doc.ID, Version: r.Doc.Version, Reason: r.Reason, Doc: doc}
	err := w.retry(ctx, "quarantining a document", func() error {
		if err := w.cfg.Broker.PublishQuarantine(ctx, entry); err != nil {
			return fmt.Errorf("quarantining document %s of %s: %w", r.Doc.ID, r.Doc.Index, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	count(&w.quarantined, r.Doc.Index, 1)
	// The reason may quote the document's values: WARN says where to read it.
	w.log.Warn("document quarantined; flusso quarantine list shows the reason", "index", r.Doc.Index, "id", r.Doc.ID)
	w.log.Debug("quarantine reason", "index", r.Doc.Index, "id", r.Doc.ID, "reason", r.Reason)
	return nil
}

// marker applies a SEEDED or PURGE marker and acks it.
func (w *Writer) marker(ctx context.Context, m *broker.DocumentMsg) error {
	d := m.Value
	switch d.Op {
	case flussopb.DocOp_SEEDED:
		err := w.retry(ctx, "marking an index seeded", func() error {
			if err := w.cfg.Sink.MarkSeeded(ctx, d.Index, d.Generation); err != nil {
				return fmt.Errorf("sink %s: marking index %s seeded: %w", w.cfg.Sink.Name(), d.Index, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		w.log.Info("index seeded", "index", d.Index, "generation", d.Generation)
	case flussopb.DocOp_PURGE:
		err := w.retry(ctx, "purging an index", func() error {
			if err := w.cfg.Sink.Purge(ctx, d.Index, d.Version); err != nil {
				return fmt.Errorf("sink %s: purging index %s: %w", w.cfg.Sink.Name(), d.Index, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		w.log.Info("index purged (root table truncated)", "index", d.Index)
	}
	if err := m.Ack(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("acking marker: %w", err)
	}
	return nil
}

// retryCap bounds the writer's waits between attempts. What it retries
// is cheap to try (the sink waits out backpressure itself), and a broker
// or sink back from an outage should see the writer again within seconds.
const retryCap = 5 * time.Second

// retry runs fn until it succeeds or ctx ends (the only error), with
// backoff; each failure marks the stage degraded on /status and the next
// success ok.
func (w *Writer) retry(ctx context.Context, what string, fn func() error) error {
	return w.retries.Do(ctx, what, fn, func(attempt int, _ error) (time.Duration, error) {
		return retry.BackoffUpTo(attempt, retryCap), nil
	})
}

func ackAll(msgs []*broker.DocumentMsg) {
	for _, m := range msgs {
		_ = m.Ack()
	}
}

// nakAll hands messages back for immediate redelivery, so a restarted
// writer does not wait out the ack timeout.
func nakAll(msgs []*broker.DocumentMsg) {
	for _, m := range msgs {
		_ = m.Nak()
	}
}

// refreshEvery bounds forced refreshes: under a steady trickle the writer
// catches up after nearly every batch, and each refresh makes a segment
// OpenSearch must merge later. At 200 ms the benchmark measured 2.2-2.5x
// OpenSearch CPU per change (docs/benchmarks.md, run 2); once a second
// keeps search fresh within the latency target at a fraction of that.
const refreshEvery = time.Second

// refresher refreshes the sink when asked, off the write path, at most
// once per refreshEvery; asks that come meanwhile are served by the next.
func (w *Writer) refresher(ctx context.Context, asked <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-asked:
		}
		if err := w.cfg.Sink.Refresh(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("refreshing after catching up", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(refreshEvery):
		}
	}
}
