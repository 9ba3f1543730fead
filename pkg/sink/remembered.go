package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Remembered gives a sink that keeps no state of its own (stdout) a seeding
// state in the pipeline's state bucket, so it is backfilled once per schema
// rather than on every start, and never drags other sinks into a backfill.
func Remembered(s Sink, kv jetstream.KeyValue) Sink {
	return &remembered{Sink: s, kv: kv, hashes: map[string]string{}}
}

type remembered struct {
	Sink
	kv     jetstream.KeyValue
	mu     sync.Mutex
	hashes map[string]string // index → hash seen by Ensure
}

func (r *remembered) key(index string) string { return "seeded." + r.Name() + "." + index }

func (r *remembered) Ensure(ctx context.Context, ix Index) (State, error) {
	st, err := r.Sink.Ensure(ctx, ix)
	if err != nil {
		return st, err
	}
	r.mu.Lock()
	r.hashes[ix.Name] = ix.Hash
	r.mu.Unlock()
	e, err := r.kv.Get(ctx, r.key(ix.Name))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return st, fmt.Errorf("reading seeding state of %s for sink %s: %w", ix.Name, r.Name(), err)
	default:
		st.Seeded = st.Seeded || string(e.Value()) == ix.Hash
	}
	return st, nil
}

func (r *remembered) MarkSeeded(ctx context.Context, index string, gen uint32) error {
	if err := r.Sink.MarkSeeded(ctx, index, gen); err != nil {
		return err
	}
	r.mu.Lock()
	hash, ok := r.hashes[index]
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("marking %s seeded for sink %s: index not prepared", index, r.Name())
	}
	if _, err := r.kv.Put(ctx, r.key(index), []byte(hash)); err != nil {
		return fmt.Errorf("saving seeding state of %s for sink %s: %w", index, r.Name(), err)
	}
	return nil
}
