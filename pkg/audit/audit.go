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
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
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
	PointInTime(ctx context.Context, ix flow.Index) (*opensearch.PointInTime, error)
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
	// view is the sink's index as of the start of the walk (nil: read in
	// real time), found how many of its documents the walk read.
	view  *opensearch.PointInTime
	found atomic.Int64
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
		c, err := joinSnapshot(ctx, cfg.DatabaseURL, tx, builders)
		if err != nil {
			return err
		}
		defer c.close(ctx)
		// Right after the snapshot: a sink holds a document of a row
		// inserted after it only once the pipeline wrote it, which takes
		// longer than opening these.
		for _, t := range targets {
			t.view, err = t.Sink.PointInTime(ctx, t.Index)
			if err != nil {
				cfg.Log.Warn("reading in real time and listing every id: no point in time of the index", "index", t.Index.Name, "sink", t.Sink.Name(), "err", err)
				continue
			}
			defer t.view.Close(ctx) //nolint:errcheck // it expires by itself
		}
		for _, t := range targets {
			if err := t.x.Prepare(ctx, tx); err != nil {
				return err
			}
			rows, err := newRootRows(ctx, tx, t.Index.Schema)
			if err != nil {
				return err
			}
			t.rows = rows
			if err := cfg.walk(ctx, tx, c, t); err != nil {
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

// Marshal renders the report as indented JSON.
func (r *Report) Marshal() ([]byte, error) {
	return json.MarshalIndent(r, "", "  ")
}
