package writer

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

// atMarker applies marker m (d decoded) once everything before it is
// written and reports whether it did; rest is m and what follows it, kept
// from redelivery while the writes before it end, however long a failing
// sink makes that.
func (w *Writer) atMarker(ctx context.Context, cons jetstream.Consumer, pipe *pipeline, flush func() error,
	m jetstream.Msg, d *flussopb.Document, rest []jetstream.Msg) (bool, error) {
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
		ready, err = w.markerReady(ctx, cons, m)
		return err
	})
	if err != nil || !ready {
		return false, err
	}
	return true, w.marker(ctx, m, d)
}

// markerReady reports whether every message before marker m is acked by
// the writers of this sink, so its marker can be applied in stream order.
func (w *Writer) markerReady(ctx context.Context, cons jetstream.Consumer, m jetstream.Msg) (bool, error) {
	meta, err := m.Metadata()
	if err != nil {
		return false, fmt.Errorf("reading marker metadata: %w", err)
	}
	// The acks just sent must reach the server before it is asked.
	fctx, cancel := context.WithTimeout(ctx, broker.AckWait)
	defer cancel()
	if err := w.cfg.Broker.NC.FlushWithContext(fctx); err != nil {
		return false, fmt.Errorf("flushing acks: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("reading consumer state: %w", err)
	}
	return info.AckFloor.Stream+1 >= meta.Sequence.Stream, nil
}

// marker applies a SEEDED or PURGE marker and acks it.
func (w *Writer) marker(ctx context.Context, m jetstream.Msg, d *flussopb.Document) error {
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
