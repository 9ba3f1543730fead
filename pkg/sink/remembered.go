package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/pkg/flow"
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

func (r *remembered) Ensure(ctx context.Context, ix flow.Index) (State, error) {
	st, err := r.Sink.Ensure(ctx, ix)
	if err != nil {
		return st, err
	}
	r.mu.Lock()
	r.hashes[ix.Name] = ix.Hash
	r.mu.Unlock()
	seeded, err := r.seeded(ctx, ix.Name, ix.Hash)
	st.Seeded = st.Seeded || seeded
	return st, err
}

func (r *remembered) State(ctx context.Context, index string) (State, error) {
	st, err := r.Sink.State(ctx, index)
	if err != nil {
		return st, err
	}
	r.mu.Lock()
	hash, ok := r.hashes[index]
	r.mu.Unlock()
	if !ok {
		return st, fmt.Errorf("reading state of %s for sink %s: index not prepared", index, r.Name())
	}
	seeded, err := r.seeded(ctx, index, hash)
	st.Seeded = st.Seeded || seeded
	return st, err
}

// seeded reads whether the index's schema hash was seeded into this sink.
func (r *remembered) seeded(ctx context.Context, index, hash string) (bool, error) {
	e, err := r.kv.Get(ctx, r.key(index))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading seeding state of %s for sink %s: %w", index, r.Name(), err)
	}
	return string(e.Value()) == hash, nil
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
