// Package writer is the writer stage: one writer per sink (several
// processes may share a sink's durable consumer) takes built documents from
// the documents stream, writes them in bulk and acks them only once the
// sink has them, which is what lets the capture confirm the slot.
package writer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/meter"
	"github.com/flusso/flusso/pkg/retry"
	"github.com/flusso/flusso/pkg/sink"
	"github.com/flusso/flusso/proto/flussopb"
)

// Config configures a writer.
type Config struct {
	// Sink must have every index of Indexes prepared (Sink.Ensure) before Run.
	Sink    sink.Sink
	Broker  *broker.Conn
	Indexes []flow.Index
	// Batch is how many documents one fetch takes (default 1000); a fetch
	// also stops at fetchBytes of documents.
	Batch int
	Log   *slog.Logger
	// Health records the stage's failures and recoveries for /status; may be nil.
	Health *health.Stage
	// Quarantined counts the documents set aside, by index; may be nil.
	// (Flushes are counted by the sink, see sink.Instrumented.)
	Quarantined *meter.Counter
}

// Writer is the writer stage of one sink.
type Writer struct {
	cfg     Config
	log     *slog.Logger
	indexes map[string]flow.Index
	retries *retry.Runner
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
	w := &Writer{cfg: cfg, log: log, indexes: map[string]flow.Index{}, retries: &retry.Runner{Health: cfg.Health, Log: log}}
	for _, ix := range cfg.Indexes {
		w.indexes[ix.Name] = ix
	}
	return w
}

// Run writes until ctx is done. A sink or broker that fails is retried
// without end (the stage shows degraded meanwhile): a slow or refusing
// sink is a wait, not a reason to stop the process. Only an item rejection
// under on_error = stop ends it with an error; the unacknowledged
// documents are redelivered to the next run.
func (w *Writer) Run(ctx context.Context) error {
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
		if err := pipe.ready(ctx); err != nil {
			return nil // ctx ended
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
		if d := markerOf(m); d != nil && w.wants(d) {
			ready, err := w.atMarker(ctx, cons, pipe, flush, m, msgs[i:])
			if err != nil {
				nakAll(msgs[i:])
				return nil, err
			}
			if !ready {
				return msgs[i:], nil
			}
			continue
		}
		// A message is acked with its run, whatever of it is for this sink:
		// once every document of it is written.
		run = append(run, m)
		for _, d := range m.Values {
			if w.wants(d) && !broker.IsMarker(d) {
				docs = append(docs, d)
			}
		}
	}
	return nil, flush()
}

// wants reports whether d is for this writer: for its sink, and of an
// index enabled here.
func (w *Writer) wants(d *flussopb.Document) bool {
	if len(d.Sinks) > 0 && !slices.Contains(d.Sinks, w.cfg.Sink.Name()) {
		return false
	}
	if _, ok := w.indexes[d.Index]; !ok {
		// Left on the stream by a deployment that had the index
		// enabled: nobody here owns it, and keeping it would block
		// every document behind it.
		w.log.Warn("dropping a document of an index not enabled here", "index", d.Index, "id", d.Id, "op", d.Op.String())
		return false
	}
	return true
}

// markerOf returns the marker m is, or nil when it holds documents.
func markerOf(m *broker.DocumentMsg) *flussopb.Document {
	if len(m.Values) == 1 && broker.IsMarker(m.Values[0]) {
		return m.Values[0]
	}
	return nil
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
		if w.indexes[r.Doc.Index].OnError == flow.Skip {
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
	var rejected []sink.Rejection
	err := w.retry(ctx, "writing documents", func() error {
		var err error
		if rejected, err = w.cfg.Sink.Write(ctx, out); err != nil {
			return fmt.Errorf("sink %s: writing %d documents: %w", w.cfg.Sink.Name(), len(out), err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rejected, nil
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
	w.cfg.Quarantined.Add(r.Doc.Index, 1)
	// The reason may quote the document's values: WARN says where to read it.
	w.log.Warn("document quarantined; flusso quarantine list shows the reason", "index", r.Doc.Index, "id", r.Doc.ID)
	w.log.Debug("quarantine reason", "index", r.Doc.Index, "id", r.Doc.ID, "reason", r.Reason)
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

// Forced refreshes are what make a write searchable (an index refreshes by
// itself only every refresh_interval, 10 s by default), so the wait for the
// next one is most of a change's latency at low rates: with a refresh at
// most once a second, p50 stood at 500-650 ms from 100 to 1,000 changes/s.
// Each refresh makes a segment OpenSearch must merge later, and at 200 ms
// the benchmark measured 2.2-2.5x OpenSearch CPU per change (run 2), so
// the gap follows what a refresh costs: at least refreshShare times the
// last one's duration, between refreshMin and refreshEvery, so refreshing
// takes at most a tenth of the time. A refresh of a few documents takes
// milliseconds and the next may follow soon; under load one takes a
// hundred milliseconds or more, and the gap is the full second it always
// was. (At 5x, with a mix at 500 changes/s, the node refreshed 5.7 times
// a second against 2.0 before, and OpenSearch spent 0.48 of a core
// against 0.29.)
const (
	refreshMin   = 100 * time.Millisecond
	refreshEvery = time.Second
	refreshShare = 10
)

// refreshGap is how long after the start of a refresh that took took the
// next may start.
func refreshGap(took time.Duration) time.Duration {
	return min(max(refreshShare*took, refreshMin), refreshEvery)
}

// refresher refreshes the sink when asked, off the write path, at most
// once per refreshGap; asks that come meanwhile are served by the next.
func (w *Writer) refresher(ctx context.Context, asked <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-asked:
		}
		start := time.Now()
		if err := w.cfg.Sink.Refresh(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("refreshing after catching up", "err", err)
		}
		took := time.Since(start)
		select {
		case <-ctx.Done():
			return
		case <-time.After(refreshGap(took) - took):
		}
	}
}
