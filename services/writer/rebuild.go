package writer

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/sink"
	"github.com/flusso/flusso/proto/flussopb"
)

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
		batch, err := watch.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("watching %s for rebuilt documents: %w", broker.DocsStream, err)
		}
		var next []sink.Doc
		for m := range batch.Messages() {
			var d flussopb.Document
			if proto.Unmarshal(m.Data(), &d) != nil || (d.Op != flussopb.DocOp_UPSERT && d.Op != flussopb.DocOp_DELETE_DOC) ||
				(len(d.Sinks) > 0 && !slices.Contains(d.Sinks, w.cfg.Sink.Name())) {
				continue
			}
			if version, ok := waiting[[2]string{d.Index, d.Id}]; ok && d.Version >= version {
				next = append(next, toSinkDoc(&d))
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("watching %s for rebuilt documents: %w", broker.DocsStream, err)
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
// sink and returns a consumer of the documents published from then on,
// with done to remove it.
func (w *Writer) requestRebuild(ctx context.Context, docs map[[2]string]uint64) (jetstream.Consumer, func(), error) {
	keys := map[string][]string{}
	versions := map[string]uint64{}
	for k, version := range docs {
		keys[k[0]] = append(keys[k[0]], k[1])
		versions[k[0]] = max(versions[k[0]], version)
	}
	// The watch starts at the stream's end as it is before the requests,
	// so no build they cause is missed.
	stream, err := w.cfg.Broker.JS.Stream(ctx, broker.DocsStream)
	if err != nil {
		return nil, nil, fmt.Errorf("opening stream %s: %w", broker.DocsStream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("reading stream %s: %w", broker.DocsStream, err)
	}
	var subjects []string
	for index, ids := range keys {
		subjects = append(subjects, broker.DocsSubject(index))
		ch := &flussopb.Change{Op: flussopb.ChangeOp_BACKFILL, Index: index, Keys: ids,
			Sinks: []string{w.cfg.Sink.Name()}, CommitLsn: versions[index]}
		data, err := proto.Marshal(ch)
		if err != nil {
			return nil, nil, fmt.Errorf("encoding a rebuild request: %w", err)
		}
		if _, err := w.cfg.Broker.JS.Publish(ctx, broker.ChangesSubject, data); err != nil {
			return nil, nil, fmt.Errorf("requesting a rebuild of %d documents of %s: %w", len(ids), index, err)
		}
	}
	slices.Sort(subjects)
	// An explicit consumer, removed when done: on an interest stream any
	// consumer holds what it has not been delivered yet, and so the slot.
	watch, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubjects:    subjects,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       info.State.LastSeq + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("watching %s for rebuilt documents: %w", broker.DocsStream, err)
	}
	done := func() {
		if err := stream.DeleteConsumer(context.WithoutCancel(ctx), watch.CachedInfo().Name); err != nil {
			w.log.Warn("removing the rebuild watch; it expires on its own", "err", err)
		}
	}
	return watch, done, nil
}
