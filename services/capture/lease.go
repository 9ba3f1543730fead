package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/pkg/broker"
)

// leaseKey is the one key of the lease bucket: one active capture per
// deployment (the replication slot admits one reader anyway; the lease also
// keeps a standby from running backfills or publishing).
const leaseKey = "capture"

// lease holds the capture lease. The bucket's max age expires an entry
// that is not renewed, so a dead holder's lease lapses on the server's
// clock, not ours.
type lease struct {
	kv  jetstream.KeyValue
	id  string
	rev uint64
}

// acquire blocks until this process holds the lease or ctx is done.
func (c *Capture) acquire(ctx context.Context) (*lease, error) {
	kv, err := c.cfg.Broker.Lease(ctx)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	l := &lease{kv: kv, id: fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano())}
	waiting := false
	for {
		rev, err := kv.Create(ctx, leaseKey, []byte(l.id))
		if err == nil {
			l.rev = rev
			c.log.Info("capture lease acquired", "holder", l.id)
			return l, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			c.log.Warn("acquiring capture lease", "err", err)
		} else if !waiting {
			waiting = true
			holder := "?"
			if e, err := kv.Get(ctx, leaseKey); err == nil {
				holder = string(e.Value())
			}
			c.log.Info("another capture is active; standing by", "holder", holder)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// hold renews the lease until ctx is done, and returns an error once it
// is lost or cannot be renewed before it would lapse.
func (l *lease) hold(ctx context.Context) error {
	tick := time.NewTicker(broker.LeaseTTL / 4)
	defer tick.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		rev, err := l.kv.Update(ctx, leaseKey, []byte(l.id), l.rev)
		switch {
		case err == nil:
			l.rev, renewed = rev, time.Now()
		case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound):
			return errors.New("capture lease lost to another process")
		case time.Since(renewed) > broker.LeaseTTL*3/4:
			return fmt.Errorf("capture lease could not be renewed: %w", err)
		}
	}
}

// release gives the lease up so a standby takes over at once.
func (l *lease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.kv.Delete(ctx, leaseKey, jetstream.LastRevision(l.rev))
}
