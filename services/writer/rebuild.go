package writer

import (
	"context"
	"fmt"
	"slices"
	"time"

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
