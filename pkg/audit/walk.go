package audit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/flusso/flusso/pkg/sqlbuild"
)

// walk compares the selected documents of one target at the snapshot,
// counting the equal ones and keeping the others as candidates for the
// recheck. tx lists the keys; the crew's transactions build them, while
// the checker reads and compares what they built.
func (cfg *Config) walk(ctx context.Context, tx pgx.Tx, c *crew, t *target) error {
	started := time.Now()
	p := Progress{Index: t.Index.Name, Sink: t.Sink.Name()}
	logged := time.Now()
	var mu sync.Mutex // p, from every builder
	step := func(n int) {
		mu.Lock()
		defer mu.Unlock()
		p.Done += int64(n)
		p.Elapsed = time.Since(started)
		cfg.Progress(p)
		if time.Since(logged) >= 10*time.Second {
			logged = time.Now()
			cfg.Log.Info("auditing", "index", p.Index, "sink", p.Sink, "rows_done", p.Done, "rows_total", p.Total,
				"rate", fmt.Sprintf("%.0f/s", p.Rate()), "eta", p.ETA().Round(time.Second).String())
		}
	}
	defer func() {
		p.Final, p.Elapsed = true, time.Since(started)
		cfg.Progress(p)
	}()
	total := func(n int64) {
		mu.Lock()
		defer mu.Unlock()
		p.Total = n
	}
	compare := func(feed func(compare func(keys []string, fromIndex bool) error) error) error {
		return t.compare(ctx, c, step, feed)
	}
	switch sel := cfg.Select; {
	case len(sel.Keys) > 0:
		total(int64(len(sel.Keys)))
		return compare(chunks(sel.Keys, false))
	case sel.Sample > 0:
		keys, err := sample(ctx, tx, t.x, sel.Sample)
		if err != nil {
			return err
		}
		ids, err := t.Sink.SampleIDs(ctx, t.Index, sel.Sample)
		if err != nil {
			return err
		}
		picked := map[string]bool{}
		for _, k := range keys {
			picked[k] = true
		}
		var others []string
		for _, id := range ids {
			if !picked[id] {
				others = append(others, id)
			}
		}
		total(int64(len(keys) + len(others)))
		return compare(func(fn func([]string, bool) error) error {
			if err := chunks(keys, false)(fn); err != nil {
				return err
			}
			return chunks(others, true)(fn)
		})
	}
	if n, err := t.x.Count(ctx, tx); err == nil {
		total(n)
	}
	// Every key of the snapshot, then whatever else the sink holds.
	seen := map[string]struct{}{}
	err := compare(func(fn func([]string, bool) error) error {
		return t.x.KeyPages(ctx, tx, batch, func(keys []string) error {
			for _, k := range keys {
				seen[k] = struct{}{}
			}
			return fn(keys, false)
		})
	})
	if err != nil {
		return err
	}
	others, err := cfg.others(ctx, t, seen)
	if err != nil {
		return err
	}
	clear(seen)
	return compare(chunks(others, true))
}

// others are the ids the sink holds besides the keys seen. Read through a
// point in time, the documents found are every one the sink holds when
// their count says so, and listing the ids (a read of every stored
// document, as costly as the comparison) is left out.
func (cfg *Config) others(ctx context.Context, t *target, seen map[string]struct{}) ([]string, error) {
	if t.view != nil {
		n, err := t.view.Count(ctx)
		if err != nil {
			return nil, err
		}
		if n == t.found.Load() {
			cfg.Log.Debug("the sink holds only the documents compared", "index", t.Index.Name, "sink", t.Sink.Name(), "documents", n)
			return nil, nil
		}
	}
	scan := time.Now()
	var others []string
	err := t.Sink.EachID(ctx, t.Index, func(ids []string) error {
		for _, id := range ids {
			if _, ok := seen[id]; !ok {
				others = append(others, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cfg.Log.Debug("listed the sink's ids", "index", t.Index.Name, "sink", t.Sink.Name(), "ids_not_in_postgres", len(others), "took", time.Since(scan))
	return others, nil
}

// chunks feeds keys to compare a batch at a time.
func chunks(keys []string, fromIndex bool) func(compare func([]string, bool) error) error {
	return func(compare func([]string, bool) error) error {
		for chunk := range slices.Chunk(keys, batch) {
			if err := compare(chunk, fromIndex); err != nil {
				return err
			}
		}
		return nil
	}
}

// compare builds the batches feed hands it on the crew's transactions and
// checks them against the sink, and returns once every one is checked.
// fromIndex says the ids came from the sink: one that is no key of the
// root table at all is extra.
func (t *target) compare(ctx context.Context, c *crew, step func(int), feed func(compare func(keys []string, fromIndex bool) error) error) error {
	chk := newChecker(ctx, t)
	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan job)
	for _, btx := range c.txs {
		g.Go(func() error {
			for j := range jobs {
				built, err := t.build(gctx, btx, j.keys, j.fromIndex)
				if err != nil {
					return err
				}
				if err := chk.send(gctx, built); err != nil {
					return err
				}
				step(len(j.keys))
			}
			return nil
		})
	}
	err := feed(func(keys []string, fromIndex bool) error {
		select {
		case jobs <- job{keys, fromIndex}:
			return nil
		case <-gctx.Done():
			return gctx.Err()
		}
	})
	close(jobs)
	err = firstError(g.Wait(), err)
	return firstError(err, chk.wait())
}

// job is a batch of keys to build and compare.
type job struct {
	keys      []string
	fromIndex bool
}

// sample picks n root keys at random (reservoir sampling over the keys in
// key order), returned in key order.
func sample(ctx context.Context, tx pgx.Tx, x *sqlbuild.Index, n int) ([]string, error) {
	type pick struct {
		pos int
		key string
	}
	var picks []pick
	pos := 0
	err := x.KeyPages(ctx, tx, 5000, func(keys []string) error {
		for _, k := range keys {
			switch {
			case len(picks) < n:
				picks = append(picks, pick{pos, k})
			default:
				if j := rand.IntN(pos + 1); j < n {
					picks[j] = pick{pos, k}
				}
			}
			pos++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(picks, func(a, b pick) int { return a.pos - b.pos })
	out := make([]string, len(picks))
	for i, p := range picks {
		out[i] = p.key
	}
	return out, nil
}

// unbuildable is the kind of a document the builder cannot build.
const unbuildable = "unbuildable"

// build builds keys in tx.
func (t *target) build(ctx context.Context, tx pgx.Tx, keys []string, fromIndex bool) ([]sqlbuild.Doc, error) {
	built, err := t.x.Build(ctx, tx, keys)
	if err != nil {
		return nil, err
	}
	for i, d := range built {
		var derr *sqlbuild.DocError
		if errors.As(d.Err, &derr) && derr.Field == "" && !keyOK(ctx, tx, t.x, d.ID) {
			if !fromIndex {
				return nil, &BadKeyError{Index: t.Index.Name, Key: d.ID, Err: d.Err}
			}
			// An id the pipeline never wrote: Postgres has no such row.
			built[i] = sqlbuild.Doc{ID: d.ID}
		}
	}
	return built, nil
}

// keyOK reports whether key reads as a key of the index's root table: the
// builder's key listing accepts it as a position. It asks under a
// savepoint, so that a refusal leaves tx usable.
func keyOK(ctx context.Context, tx pgx.Tx, x *sqlbuild.Index, key string) bool {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return false
	}
	defer sp.Rollback(ctx) //nolint:errcheck // read-only
	_, err = x.Keys(ctx, sp, key, false, 1)
	return err == nil
}
