// Package audit proves that what a sink holds equals what Postgres says it
// should hold, and finds what drifted: it builds documents with the
// pipeline's own builder (pkg/sqlbuild) inside one repeatable-read
// snapshot, reads the sink's documents for the same ids and compares their
// content. A difference counts only once it outlives the pipeline: it is
// checked again after the replication slot was confirmed past a fresh
// snapshot, so changes still on their way are not taken for drift.
// Repair asks the pipeline itself to rebuild what drifted.
package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/sink/opensearch"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// Kinds of drift.
const (
	Missing = "missing" // Postgres has the document, the sink does not
	Extra   = "extra"   // the sink has a document Postgres does not (no row, filtered out, soft deleted)
	Stale   = "stale"   // both have it, with different content
)

// Reader reads back what a sink holds; the OpenSearch sink does. Sinks
// that cannot (stdout) are skipped.
type Reader interface {
	Name() string
	Served(ix flow.Index) string
	Serves(ctx context.Context, ix flow.Index) (seeded bool, err error)
	Get(ctx context.Context, ix flow.Index, ids []string) (map[string]opensearch.Stored, error)
	EachID(ctx context.Context, ix flow.Index, fn func(ids []string) error) error
	SampleIDs(ctx context.Context, ix flow.Index, n int) ([]string, error)
}

// Target is one index in one sink.
type Target struct {
	Index flow.Index
	Sink  Reader // nil: the sink cannot be read back
	// SinkName names the sink when Sink is nil.
	SinkName string
}

// Selection is which documents an audit compares; the zero value is all.
type Selection struct {
	// Sample, when positive, compares that many root keys picked at
	// random, and as many ids picked at random from the sink.
	Sample int
	// Keys, when set, compares these ids only.
	Keys []string
}

// Config shapes an audit.
type Config struct {
	DatabaseURL string
	// Slot is the pipeline's replication slot: how far it confirmed tells
	// when a difference is no longer a change on its way.
	Slot    string
	Targets []Target
	Select  Selection
	// MaxReport is how many drifted documents per index the report shows,
	// with their differing fields; the counts and IDs cover them all.
	MaxReport int
	// Settle bounds the wait for the pipeline to confirm past a snapshot
	// (default 2 minutes); a running pipeline that does not get there in
	// time fails the audit rather than report changes on their way.
	Settle time.Duration
	// Rounds bounds the rechecks of documents that a change keeps
	// rewriting (default 3); those still moving are reported as unsettled,
	// not as drift.
	Rounds int
	// Progress receives progress updates (nil: none).
	Progress func(Progress)
	Log      *slog.Logger
}

// batch is how many documents are built and read at once.
const batch = 500

// Report is the outcome of an audit.
type Report struct {
	SnapshotLSN string        `json:"snapshot_lsn"`
	Indexes     []IndexReport `json:"indexes"`
	Elapsed     time.Duration `json:"-"`
}

// Drifted reports whether any index drifted.
func (r *Report) Drifted() bool {
	return slices.ContainsFunc(r.Indexes, func(ix IndexReport) bool { return ix.Drifted() })
}

// IndexReport is the outcome for one index in one sink.
type IndexReport struct {
	Index  string `json:"index"`
	Sink   string `json:"sink"`
	Served string `json:"served,omitempty"` // the name the sink serves it under
	// Skipped says why the index was not audited in this sink; Seeding
	// that it is because a backfill is still filling it.
	Skipped   string `json:"skipped,omitempty"`
	Seeding   bool   `json:"seeding,omitempty"`
	Compared  int    `json:"compared"`
	Equal     int    `json:"equal"`
	Missing   int    `json:"missing"`
	Extra     int    `json:"extra"`
	Stale     int    `json:"stale"`
	Rechecked int    `json:"rechecked"` // differences checked again once the pipeline confirmed past them
	// Unsettled are documents still being rewritten by changes after every
	// recheck: not drift, not proven equal.
	Unsettled int `json:"unsettled"`
	// Unbuildable are documents the pipeline cannot build either (a value
	// that does not fit its type): it quarantines them or stops on them.
	Unbuildable int     `json:"unbuildable"`
	Drift       []Drift `json:"drift,omitempty"` // the first MaxReport
	// IDs of every drifted document by kind, for repair.
	IDs map[string][]string `json:"-"`
}

// Drifted reports whether the index drifted in this sink.
func (r IndexReport) Drifted() bool { return r.Missing+r.Extra+r.Stale > 0 }

// Drift is one drifted document.
type Drift struct {
	ID      string      `json:"id"`
	Kind    string      `json:"kind"`
	Version uint64      `json:"version,omitempty"` // the stored document's version
	Diff    []FieldDiff `json:"diff,omitempty"`    // for stale documents
}

// Progress is how far an audit got in one index.
type Progress struct {
	Index, Sink string
	Done        int64
	Total       int64 // an estimate; 0 when unknown
	Elapsed     time.Duration
	Final       bool
}

// Rate is documents compared per second so far.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

// ETA is the time left at the rate so far; 0 when unknown.
func (p Progress) ETA() time.Duration {
	r := p.Rate()
	if r <= 0 || p.Total <= p.Done {
		return 0
	}
	return time.Duration(float64(p.Total-p.Done) / r * float64(time.Second))
}

// BadKeyError is a key given to compare that is not a key of the index's
// root table (of another type).
type BadKeyError struct {
	Index, Key string
	Err        error
}

func (e *BadKeyError) Error() string {
	return fmt.Sprintf("index %s: %q is not a key of its root table: %v", e.Index, e.Key, e.Err)
}

func (e *BadKeyError) Unwrap() error { return e.Err }

// candidate is a document that differed and is checked again.
type candidate struct {
	id   string
	kind string // the difference seen last
}

// target is one Target under audit.
type target struct {
	Target
	mu     sync.Mutex // the report and cands, while checkers run
	x      *sqlbuild.Index
	rows   *rootRows
	report *IndexReport
	cands  []candidate
}

// Run audits every target and returns the report. An error means the
// audit could not be done, never that something drifted.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	start := time.Now()
	conn, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rep := &Report{}
	var targets []*target
	for _, t := range cfg.Targets {
		ir := IndexReport{Index: t.Index.Name, Sink: t.SinkName, IDs: map[string][]string{}}
		if t.Sink == nil {
			ir.Skipped = "this sink cannot be read back"
		} else {
			ir.Sink, ir.Served = t.Sink.Name(), t.Sink.Served(t.Index)
		}
		rep.Indexes = append(rep.Indexes, ir)
	}
	for i, t := range cfg.Targets {
		if t.Sink == nil {
			continue
		}
		x, err := sqlbuild.Compile(t.Index.Name, t.Index.Schema)
		if err != nil {
			return nil, err
		}
		targets = append(targets, &target{Target: t, x: x, report: &rep.Indexes[i]})
	}
	ready := targets[:0]
	for _, t := range targets {
		seeded, err := reachable(ctx, t)
		if err != nil {
			return nil, err
		}
		if !seeded {
			// Documents still on their way from a backfill are no drift.
			t.report.Skipped, t.report.Seeding = "not seeded yet: a backfill is filling it; audit it once that is done", true
			continue
		}
		ready = append(ready, t)
	}
	targets = ready
	if len(targets) == 0 {
		rep.Elapsed = time.Since(start)
		return rep, nil
	}
	snap, err := inSnapshot(ctx, conn, func(tx pgx.Tx) error {
		for _, t := range targets {
			if err := t.x.Prepare(ctx, tx); err != nil {
				return err
			}
			rows, err := newRootRows(ctx, tx, t.Index.Schema)
			if err != nil {
				return err
			}
			t.rows = rows
			if err := cfg.walk(ctx, tx, t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.SnapshotLSN = formatLSN(snap)
	for _, t := range targets {
		if err := cfg.recheck(ctx, conn, t); err != nil {
			return nil, err
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// reachTimeout bounds the first request to each sink: a sink retries an
// unreachable cluster without end, which suits the pipeline, not an audit.
const reachTimeout = 30 * time.Second

// reachable checks that the sink answers and serves the index, and
// reports whether the index is seeded there.
func reachable(ctx context.Context, t *target) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	seeded, err := t.Sink.Serves(ctx, t.Index)
	if err != nil {
		return false, fmt.Errorf("sink %s, index %s: %w", t.Sink.Name(), t.Index.Name, err)
	}
	return seeded, nil
}

func (cfg *Config) defaults() {
	if cfg.Settle <= 0 {
		cfg.Settle = 2 * time.Minute
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Progress == nil {
		cfg.Progress = func(Progress) {}
	}
}

// inSnapshot runs fn in a read-only repeatable-read transaction with the
// WAL position its snapshot was taken at (read by its first statement, so
// every commit before it is in the snapshot), and returns that position.
func inSnapshot(ctx context.Context, conn *pgx.Conn, fn func(tx pgx.Tx) error) (uint64, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, fmt.Errorf("opening a snapshot: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	lsn, err := currentLSN(ctx, tx)
	if err != nil {
		return 0, err
	}
	return lsn, fn(tx)
}

// walk compares the selected documents of one target at the snapshot,
// counting the equal ones and keeping the others as candidates for the
// recheck.
func (cfg *Config) walk(ctx context.Context, tx pgx.Tx, t *target) error {
	started := time.Now()
	p := Progress{Index: t.Index.Name, Sink: t.Sink.Name()}
	logged := time.Now()
	step := func(n int) {
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
	compare := func(keys []string, fromIndex bool) error {
		if err := t.compare(ctx, tx, chk, keys, fromIndex); err != nil {
			return err
		}
		step(len(keys))
		return nil
	}
	err := cfg.walkKeys(ctx, tx, t, &p, compare)
	if werr := chk.wait(); err == nil {
		err = werr
	}
	return err
}

// walkKeys hands compare the selected keys, a batch at a time, then the
// ids of the sink that were not among them.
func (cfg *Config) walkKeys(ctx context.Context, tx pgx.Tx, t *target, p *Progress, compare func(keys []string, fromIndex bool) error) error {
	switch sel := cfg.Select; {
	case len(sel.Keys) > 0:
		p.Total = int64(len(sel.Keys))
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
		p.Total = int64(len(keys) + len(others))
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
		p.Total = n
	}
	// Every key of the snapshot, then whatever else the sink holds.
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
		return err
	}
	clear(seen)
	for chunk := range slices.Chunk(others, batch) {
		if err := compare(chunk, true); err != nil {
			return err
		}
	}
	return nil
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

// compare builds keys in tx and hands them to the checker, which reads
// them from the sink and sorts them into equal and candidates while the
// next keys are built. fromIndex says the ids came from the sink: one that
// is no key of the root table at all is extra.
func (t *target) compare(ctx context.Context, tx pgx.Tx, chk *checker, keys []string, fromIndex bool) error {
	built, err := t.build(ctx, tx, keys, fromIndex)
	if err != nil {
		return err
	}
	return chk.send(ctx, built)
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
	stored, err := t.Sink.Get(ctx, t.Index, ids)
	if err != nil {
		return err
	}
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

// recheck checks the candidates again, each round in a fresh snapshot and
// once the pipeline confirmed past it, and reports those that still differ
// while the sink holds no newer build than the snapshot: the pipeline had
// every change up to the snapshot, and nothing after it touched them.
func (cfg *Config) recheck(ctx context.Context, conn *pgx.Conn, t *target) error {
	r := t.report
	r.Rechecked = len(t.cands)
	cands := t.cands
	t.cands = nil
	for round := 0; round < cfg.Rounds && len(cands) > 0; round++ {
		ids := make([]string, len(cands))
		for i, c := range cands {
			ids[i] = c.id
		}
		built := map[string]sqlbuild.Doc{}
		var present []string       // keys whose document exists at the snapshot
		var seen map[string]string // their root rows' versions then
		lsn, err := inSnapshot(ctx, conn, func(tx pgx.Tx) error {
			for chunk := range slices.Chunk(ids, batch) {
				docs, err := t.x.Build(ctx, tx, chunk)
				if err != nil {
					return err
				}
				for _, d := range docs {
					built[d.ID] = d
					if d.Body != nil {
						present = append(present, d.ID)
					}
				}
			}
			var err error
			seen, err = t.rows.versions(ctx, tx, present)
			return err
		})
		if err != nil {
			return err
		}
		if err := cfg.settle(ctx, conn, lsn); err != nil {
			return err
		}
		var next []candidate
		var missing []string
		for chunk := range slices.Chunk(ids, batch) {
			stored, err := t.Sink.Get(ctx, t.Index, chunk)
			if err != nil {
				return err
			}
			for _, id := range chunk {
				d := built[id]
				var derr *sqlbuild.DocError
				if errors.As(d.Err, &derr) && derr.Field == "" {
					d = sqlbuild.Doc{ID: id} // no key of the root table (see fetch)
				}
				kind, err := t.classify(d, stored)
				if err != nil {
					return err
				}
				s, found := stored[id]
				switch {
				case kind == "":
					r.Equal++
				case kind == unbuildable:
					r.Unbuildable++
				case found && s.Version > lsn:
					// Rewritten by a change after the snapshot: look again.
					next = append(next, candidate{id: id, kind: kind})
				case kind == Missing:
					missing = append(missing, id)
				default:
					cfg.drift(t, d, s, kind)
				}
			}
		}
		// Read after the sink was: a root row changed since the snapshot
		// may have deleted its document, a delete the sink holds.
		now, err := t.rows.versions(ctx, conn, missing)
		if err != nil {
			return err
		}
		for _, id := range missing {
			if x, ok := now[id]; !ok || x != seen[id] {
				next = append(next, candidate{id: id, kind: Missing})
				continue
			}
			cfg.drift(t, built[id], opensearch.Stored{}, Missing)
		}
		cands = next
	}
	r.Unsettled = len(cands)
	for _, c := range cands {
		cfg.Log.Warn("document kept changing during the audit: not compared", "index", t.Index.Name, "sink", r.Sink, "id", c.id)
	}
	return nil
}

// drift records a drifted document.
func (cfg *Config) drift(t *target, d sqlbuild.Doc, s opensearch.Stored, kind string) {
	r := t.report
	switch kind {
	case Missing:
		r.Missing++
	case Extra:
		r.Extra++
	case Stale:
		r.Stale++
	}
	r.IDs[kind] = append(r.IDs[kind], d.ID)
	if len(r.Drift) >= cfg.MaxReport {
		return
	}
	dr := Drift{ID: d.ID, Kind: kind, Version: s.Version}
	if kind == Stale {
		dr.Diff, _ = diff(d.Body, s.Body, -1) // both decoded once already
	}
	r.Drift = append(r.Drift, dr)
}

// Marshal renders the report as indented JSON.
func (r *Report) Marshal() ([]byte, error) {
	return json.MarshalIndent(r, "", "  ")
}
