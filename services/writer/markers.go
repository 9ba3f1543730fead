package writer

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

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

// marker applies a SEEDED or PURGE marker and acks it.
func (w *Writer) marker(ctx context.Context, m *broker.DocumentMsg) error {
	d := m.Values[0]
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
