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
	compare := func(keys []string, fromIndex bool) error {
		select {
		case jobs <- job{keys, fromIndex}:
			return nil
		case <-gctx.Done():
			return gctx.Err()
		}
	}
	total := func(n int64) {
		mu.Lock()
		defer mu.Unlock()
		p.Total = n
	}
	err := cfg.walkKeys(gctx, tx, t, total, compare)
	close(jobs)
	err = firstError(g.Wait(), err)
	return firstError(err, chk.wait())
}

// job is a batch of keys to build and compare.
type job struct {
	keys      []string
	fromIndex bool
}

// walkKeys hands compare the selected keys, a batch at a time, then the
// ids of the sink that were not among them.
func (cfg *Config) walkKeys(ctx context.Context, tx pgx.Tx, t *target, total func(int64), compare func(keys []string, fromIndex bool) error) error {
	switch sel := cfg.Select; {
	case len(sel.Keys) > 0:
		total(int64(len(sel.Keys)))
		for chunk := range slices.Chunk(sel.Keys, batch) {
			if err := compare(chunk, false); err != nil {
				return err
			}
		}
		return nil
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
		for chunk := range slices.Chunk(keys, batch) {
			if err := compare(chunk, false); err != nil {
				return err
			}
		}
		for chunk := range slices.Chunk(others, batch) {
			if err := compare(chunk, true); err != nil {
				return err
			}
		}
		return nil
	}
	if n, err := t.x.Count(ctx, tx); err == nil {
		total(n)
	}
	// Every key of the snapshot, then whatever else the sink holds. The
	// sink's ids are listed meanwhile (a tenth of an audit's time when it
	// came after); the two lists only meet at the end.
	listCtx, stopListing := context.WithCancel(ctx)
	defer stopListing()
	listed := make(chan sinkIDs, 1)
	scan := time.Now()
	go func() {
		var l sinkIDs
		l.err = t.Sink.EachID(listCtx, t.Index, func(ids []string) error {
			l.ids = append(l.ids, ids...)
			return nil
		})
		l.took = time.Since(scan)
		listed <- l
	}()
	seen := map[string]struct{}{}
	after, first := "", true
	for {
		keys, err := t.x.Keys(ctx, tx, after, first, batch)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			break
		}
		for _, k := range keys {
			seen[k] = struct{}{}
		}
		if err := compare(keys, false); err != nil {
			return err
		}
		after, first = keys[len(keys)-1], false
	}
	l := <-listed
	if l.err != nil {
		return l.err
	}
	var others []string
	for _, id := range l.ids {
		if _, ok := seen[id]; !ok {
			others = append(others, id)
		}
	}
	cfg.Log.Debug("listed the sink's ids", "index", t.Index.Name, "sink", t.Sink.Name(), "ids_not_in_postgres", len(others), "took", l.took)
	clear(seen)
	for chunk := range slices.Chunk(others, batch) {
		if err := compare(chunk, true); err != nil {
			return err
		}
	}
	return nil
}

// sinkIDs is the listing of every id a sink holds for an index.
type sinkIDs struct {
	ids  []string
	err  error
	took time.Duration
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
	after, first := "", true
	for {
		keys, err := x.Keys(ctx, tx, after, first, 5000)
		if err != nil {
			return nil, err
		}
		if len(keys) == 0 {
			break
		}
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
		after, first = keys[len(keys)-1], false
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
