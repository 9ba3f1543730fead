package audit

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/flusso/flusso/pkg/sink/opensearch"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// checker reads built documents' ids from the sink and compares them in
// goroutines of its own: the sink's reads and the comparisons overlap the
// next builds. Its workers alone update the target's report (under mu)
// until wait returns.
type checker struct {
	in     chan []sqlbuild.Doc
	failed chan struct{} // closed at the first failure, kept in err
	once   sync.Once
	err    error
	done   sync.WaitGroup
}

// checkers is how many reads of the sink are in flight at once.
const checkers = 2

func newChecker(ctx context.Context, t *target) *checker {
	c := &checker{in: make(chan []sqlbuild.Doc, checkers), failed: make(chan struct{})}
	for range checkers {
		c.done.Add(1)
		go func() {
			defer c.done.Done()
			for built := range c.in {
				if err := t.check(ctx, built); err != nil {
					c.once.Do(func() { c.err = err; close(c.failed) })
					for range c.in { // until wait closes it
					}
				}
			}
		}()
	}
	return c
}

// send queues built documents; it fails once a check failed.
func (c *checker) send(ctx context.Context, built []sqlbuild.Doc) error {
	select {
	case c.in <- built:
		return nil
	case <-c.failed:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait ends the checker once it checked what was sent.
func (c *checker) wait() error {
	close(c.in)
	c.done.Wait()
	return c.err
}

// check reads built documents' ids from the sink and compares.
func (t *target) check(ctx context.Context, built []sqlbuild.Doc) error {
	ids := make([]string, len(built))
	for i, d := range built {
		ids[i] = d.ID
	}
	var stored map[string]opensearch.Stored
	var err error
	if t.view != nil {
		stored, err = t.view.Get(ctx, ids)
	} else {
		stored, err = t.Sink.Get(ctx, t.Index, ids)
	}
	if err != nil {
		return err
	}
	t.found.Add(int64(len(stored)))
	kinds := make([]string, len(built))
	for i, d := range built {
		if kinds[i], err = t.classify(d, stored); err != nil {
			return err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, d := range built {
		t.report.Compared++
		switch kind := kinds[i]; {
		case kind == "":
			t.report.Equal++
		case kind == unbuildable:
			t.report.Unbuildable++
		default:
			t.cands = append(t.cands, candidate{id: d.ID, kind: kind})
		}
	}
	return nil
}

// classify compares one built document with what the sink holds: "" when
// equal, else the kind of difference.
func (t *target) classify(d sqlbuild.Doc, stored map[string]opensearch.Stored) (string, error) {
	if d.Err != nil {
		return unbuildable, nil
	}
	s, ok := stored[d.ID]
	switch {
	case d.Body == nil && !ok:
		return "", nil
	case d.Body == nil:
		return Extra, nil
	case !ok:
		return Missing, nil
	}
	if bytes.Equal(d.Body, s.Body) {
		// The sink keeps the bytes the pipeline wrote: no need to parse.
		return "", nil
	}
	same, err := equal(d.Body, s.Body)
	if err != nil {
		return "", fmt.Errorf("index %s: document %s: %w", t.Index.Name, d.ID, err)
	}
	if same {
		return "", nil
	}
	return Stale, nil
}
