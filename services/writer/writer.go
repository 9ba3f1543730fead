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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
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
	// Batch is how many documents one fetch takes (default 1000).
	Batch int
	Log   *slog.Logger
	// OnFlush observes each bulk write's duration (metrics); may be nil.
	OnFlush func(sink string, d time.Duration)
}

// Writer is the writer stage of one sink.
type Writer struct {
	cfg     Config
	log     *slog.Logger
	indexes map[string]Index

	written     sync.Map // index → *atomic.Uint64
	quarantined sync.Map
	batches     atomic.Uint64
	lastFlush   atomic.Int64 // nanoseconds
}

// New prepares a writer.
func New(cfg Config) *Writer {
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	w := &Writer{cfg: cfg, log: cfg.Log.With("stage", "writer", "sink", cfg.Sink.Name()), indexes: map[string]Index{}}
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

// Run writes until ctx is done. A flush-wide failure of the sink, or an
// item rejection under on_error = stop, ends it with an error; the
// unacknowledged documents are redelivered to the next run.
func (w *Writer) Run(ctx context.Context) error {
	for _, ix := range w.cfg.Indexes {
		if _, err := w.cfg.Sink.Ensure(ctx, ix.Index); err != nil {
			return fmt.Errorf("sink %s: preparing index %s: %w", w.cfg.Sink.Name(), ix.Name, err)
		}
	}
	name := broker.WriterConsumer(w.cfg.Sink.Name())
	cons, err := w.cfg.Broker.JS.Consumer(ctx, broker.DocsStream, name)
	if err != nil {
		return fmt.Errorf("opening consumer %s: %w", name, err)
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(w.cfg.Batch, jetstream.FetchMaxWait(250*time.Millisecond))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.log.Warn("fetching documents", "err", err)
			time.Sleep(500 * time.Millisecond)
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if len(msgs) == 0 {
			continue
		}
		stop := broker.KeepAlive(msgs)
		err = w.process(ctx, cons, msgs)
		stop()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if meta, err := msgs[len(msgs)-1].Metadata(); err == nil && meta.NumPending == 0 {
			// Caught up: make what was written searchable now.
			if err := w.cfg.Sink.Refresh(ctx); err != nil {
				w.log.Warn("refreshing after catching up", "err", err)
			}
		}
	}
	return nil
}

// process writes a fetched batch: runs of documents go in bulk, markers
// (seeded, purge) are applied in stream order between them.
func (w *Writer) process(ctx context.Context, cons jetstream.Consumer, msgs []jetstream.Msg) error {
	var run []jetstream.Msg
	var docs []decoded
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		err := w.write(ctx, docs)
		if err != nil {
			nakAll(run)
			return err
		}
		ackAll(run)
		run, docs = run[:0], docs[:0]
		return nil
	}
	for i, m := range msgs {
		var d flussopb.Document
		if err := proto.Unmarshal(m.Data(), &d); err != nil {
			w.log.Error("dropping undecodable document message", "err", err)
			_ = m.Ack()
			continue
		}
		if len(d.Sinks) > 0 && !slices.Contains(d.Sinks, w.cfg.Sink.Name()) {
			run = append(run, m) // not for this sink: acked with its run
			continue
		}
		if d.Op == flussopb.DocOp_UPSERT || d.Op == flussopb.DocOp_DELETE_DOC {
			run = append(run, m)
			docs = append(docs, decoded{msg: m, doc: &d})
			continue
		}
		if err := flush(); err != nil {
			nakAll(msgs[i:])
			return err
		}
		if err := w.marker(ctx, cons, m, &d); err != nil {
			nakAll(msgs[i:])
			return err
		}
	}
	return flush()
}

type decoded struct {
	msg jetstream.Msg
	doc *flussopb.Document
}

// write sends one run of documents to the sink and applies on_error to
// what it rejects.
func (w *Writer) write(ctx context.Context, run []decoded) error {
	if len(run) == 0 {
		return nil
	}
	// Coalesce: of several builds of one document keep the newest.
	latest := map[[2]string]int{}
	var out []sink.Doc
	for _, r := range run {
		d := r.doc
		sd := sink.Doc{Index: d.Index, ID: d.Id, Version: d.Version, Generation: d.Generation, Body: d.Body, Op: sink.Upsert}
		if d.Op == flussopb.DocOp_DELETE_DOC {
			sd.Op, sd.Body = sink.Delete, nil
		}
		k := [2]string{d.Index, d.Id}
		if i, ok := latest[k]; ok {
			if out[i].Version <= sd.Version {
				out[i] = sd
			}
			continue
		}
		latest[k] = len(out)
		out = append(out, sd)
	}
	start := time.Now()
	rejected, err := w.cfg.Sink.Write(ctx, out)
	if err != nil {
		return fmt.Errorf("sink %s: writing %d documents: %w", w.cfg.Sink.Name(), len(out), err)
	}
	took := time.Since(start)
	w.lastFlush.Store(int64(took))
	if w.cfg.OnFlush != nil {
		w.cfg.OnFlush(w.cfg.Sink.Name(), took)
	}
	w.batches.Add(1)
	bad := map[[2]string]bool{}
	for _, r := range rejected {
		bad[[2]string{r.Doc.Index, r.Doc.ID}] = true
		ix := w.indexes[r.Doc.Index]
		if ix.OnError != config.Skip {
			return fmt.Errorf("sink %s rejected document %s of index %s: %s (on_error = stop: fix the data or set on_error = \"skip\"; it is redelivered on restart)",
				w.cfg.Sink.Name(), r.Doc.ID, r.Doc.Index, r.Reason)
		}
		if err := w.quarantine(ctx, r); err != nil {
			return err
		}
	}
	for _, d := range out {
		if !bad[[2]string{d.Index, d.ID}] {
			count(&w.written, d.Index, 1)
		}
	}
	return nil
}

// quarantine keeps a rejected document on the quarantine stream, with the
// reason, so an operator can inspect and replay it.
func (w *Writer) quarantine(ctx context.Context, r sink.Rejection) error {
	doc := &flussopb.Document{Index: r.Doc.Index, Id: r.Doc.ID, Body: r.Doc.Body, Version: r.Doc.Version, Op: flussopb.DocOp_UPSERT}
	if r.Doc.Op == sink.Delete {
		doc.Op = flussopb.DocOp_DELETE_DOC
	}
	data, err := proto.Marshal(doc)
	if err != nil {
		return fmt.Errorf("encoding quarantined document: %w", err)
	}
	msg := &nats.Msg{Subject: broker.QuarantineSubject(w.cfg.Sink.Name(), r.Doc.Index), Data: data, Header: nats.Header{}}
	msg.Header.Set("Flusso-Index", r.Doc.Index)
	msg.Header.Set("Flusso-Id", r.Doc.ID)
	msg.Header.Set("Flusso-Reason", r.Reason)
	msg.Header.Set("Flusso-Version", strconv.FormatUint(r.Doc.Version, 10))
	if _, err := w.cfg.Broker.JS.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("quarantining document %s of %s: %w", r.Doc.ID, r.Doc.Index, err)
	}
	count(&w.quarantined, r.Doc.Index, 1)
	w.log.Warn("document quarantined", "index", r.Doc.Index, "id", r.Doc.ID, "reason", r.Reason)
	return nil
}

// marker applies a SEEDED or PURGE marker once everything before it on the
// stream is written by every writer of this sink.
func (w *Writer) marker(ctx context.Context, cons jetstream.Consumer, m jetstream.Msg, d *flussopb.Document) error {
	meta, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("reading marker metadata: %w", err)
	}
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("reading consumer state: %w", err)
		}
		if info.AckFloor.Stream+1 >= meta.Sequence.Stream {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		_ = m.InProgress()
	}
	switch d.Op {
	case flussopb.DocOp_SEEDED:
		if err := w.cfg.Sink.MarkSeeded(ctx, d.Index, d.Generation); err != nil {
			return fmt.Errorf("sink %s: marking index %s seeded: %w", w.cfg.Sink.Name(), d.Index, err)
		}
		w.log.Info("index seeded", "index", d.Index, "generation", d.Generation)
	case flussopb.DocOp_PURGE:
		if err := w.cfg.Sink.Purge(ctx, d.Index); err != nil {
			return fmt.Errorf("sink %s: purging index %s: %w", w.cfg.Sink.Name(), d.Index, err)
		}
		w.log.Info("index purged (root table truncated)", "index", d.Index)
	}
	if err := m.Ack(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("acking marker: %w", err)
	}
	return nil
}

func ackAll(msgs []jetstream.Msg) {
	for _, m := range msgs {
		_ = m.Ack()
	}
}

// nakAll hands messages back for immediate redelivery, so a restarted
// writer does not wait out the ack timeout.
func nakAll(msgs []jetstream.Msg) {
	for _, m := range msgs {
		_ = m.Nak()
	}
}
