package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/flusso/flusso/pkg/health"
)

// Source is what the surfaces read and control; the running pipeline implements it.
type Source interface {
	// Status is the /status document. It is called on every request to
	// /status, /readyz and, through Status.Snapshot, on every metrics scrape,
	// so it should be cheap.
	Status(ctx context.Context) Status
	// Indexes lists the indexes for GET /indexes.
	Indexes(ctx context.Context) ([]IndexInfo, error)
	// Reindex queues a rebuild of one index into a new generation. It
	// returns ErrUnknownIndex or ErrReindexRunning (possibly wrapped) when
	// it refuses; it must not wait for the rebuild.
	Reindex(ctx context.Context, index string) error
}

// Errors Reindex returns to refuse a request.
var (
	ErrUnknownIndex   = errors.New("unknown index")
	ErrReindexRunning = errors.New("a reindex of this index is already running")
	// ErrNothingToRebuild: no sink of this process keeps generations (only
	// stdout sinks, or no sink at all), so there is nothing a reindex could
	// build.
	ErrNothingToRebuild = errors.New("no sink keeps generations to rebuild")
)

// Phase is where the pipeline as a whole is.
type Phase string

// Phases, in the order a run moves through them.
const (
	Starting    Phase = "starting"
	Backfilling Phase = "backfilling"
	Live        Phase = "live"
	Stopping    Phase = "stopping"
	Failed      Phase = "failed"
)

// Ready reports whether the pipeline serves traffic: /readyz answers 200
// only while backfilling or live.
func (p Phase) Ready() bool { return p == Backfilling || p == Live }

// IndexState is where one index is in its lifecycle.
type IndexState string

// Index states.
const (
	Pending          IndexState = "pending"     // not yet known to be seeded
	IndexBackfilling IndexState = "backfilling" // its backfill is running
	Seeded           IndexState = "seeded"      // seeded, following live changes
)

// Status is the /status document: a point-in-time view of the pipeline.
// Field names follow the original flusso where it had the field.
type Status struct {
	Phase  Phase         `json:"phase"`
	Uptime time.Duration `json:"-"` // rendered as uptime_seconds

	Indexes []IndexStatus `json:"indexes"`

	// ChangesCaptured counts row changes read from the replication slot.
	ChangesCaptured uint64 `json:"changes_captured"`
	// ChangesCommitted counts source transactions whose documents are
	// durable in every sink: the slot may be confirmed past them.
	ChangesCommitted uint64 `json:"changes_committed"`
	// ChangesInFlight counts captured changes not yet durable in every sink.
	ChangesInFlight uint64 `json:"changes_in_flight"`
	// ChangesSkipped counts, by table, the updates the capture dropped
	// because they changed no column an index reads.
	ChangesSkipped map[string]uint64 `json:"changes_skipped"`
	// DocumentsBuilt and DocumentsQuarantined are the totals over the indexes.
	DocumentsBuilt       uint64 `json:"documents_built"`
	DocumentsQuarantined uint64 `json:"documents_quarantined"`
	// Batches counts sink flushes.
	Batches   uint64        `json:"batches"`
	LastFlush time.Duration `json:"-"` // rendered as last_flush_micros

	// SlotLagBytes is how far the slot's confirmed position trails the
	// server's WAL; nil until first measured.
	SlotLagBytes *uint64 `json:"slot_lag_bytes"`
	// ConfirmedLSN is the slot's confirmed flush position, e.g. "0/16B3748".
	ConfirmedLSN string `json:"confirmed_lsn"`

	// Backlog is what each stage has yet to consume from the broker.
	Backlog Backlog `json:"backlog"`

	// Errors counts errors that failed a stage; LastError is the latest,
	// without secrets.
	Errors    uint64 `json:"errors"`
	LastError string `json:"-"` // rendered as last_error, null when empty

	// Stages is the health of every stage this process runs, by name.
	Stages []health.Report `json:"stages"`

	// Quarantine is the quarantine stream's use of its limits; nil when
	// unknown.
	Quarantine *Quarantine `json:"quarantine,omitempty"`
	// Unready are the stages degraded for longer than the readiness grace:
	// /readyz answers 503 naming them.
	Unready []health.Report `json:"-"`
	// Audit is the continuous audit's latest outcome; nil when this
	// process does not audit (flusso run --audit-every).
	Audit *Audit `json:"audit,omitempty"`
}

// Audit is the continuous audit in /status.
type Audit struct {
	// LastRun is when the latest audit ended; nil before the first.
	LastRun *time.Time `json:"last_run"`
	// Drift is the drifted documents each index had then, over its sinks.
	Drift     map[string]int64 `json:"drift_documents"`
	LastError string           `json:"last_error,omitempty"`
}

// IndexStatus is one index in /status.
type IndexStatus struct {
	Name       string     `json:"name"`
	State      IndexState `json:"state"`
	Generation uint64     `json:"generation"`
	// Backfill is the progress of a running backfill; nil otherwise.
	Backfill             *Backfill `json:"backfill"`
	DocumentsBuilt       uint64    `json:"documents_built"`
	DocumentsQuarantined uint64    `json:"documents_quarantined"`
}

// Backfill is the progress of one index's backfill.
type Backfill struct {
	RowsDone uint64 `json:"rows_done"`
	// RowsTotal is the planner's estimate of the root table's rows.
	RowsTotal     uint64  `json:"rows_total"`
	RowsPerSecond float64 `json:"rows_per_second"`
	// ETASeconds is nil while no rate is known yet.
	ETASeconds *uint64 `json:"eta_seconds"`
}

// NewBackfill computes rate and ETA from rows done out of total over elapsed.
func NewBackfill(done, total uint64, elapsed time.Duration) *Backfill {
	b := &Backfill{RowsDone: done, RowsTotal: total}
	if elapsed <= 0 || done == 0 {
		return b
	}
	b.RowsPerSecond = float64(done) / elapsed.Seconds()
	eta := uint64(0)
	if total > done {
		eta = uint64(math.Ceil(float64(total-done) / b.RowsPerSecond))
	}
	b.ETASeconds = &eta
	return b
}

// Quarantine is how full the quarantine stream is: past MaxBytes or MaxAge
// its oldest entries are dropped for room.
type Quarantine struct {
	Entries       uint64  `json:"entries"`
	Bytes         uint64  `json:"bytes"`
	MaxBytes      int64   `json:"max_bytes"`       // -1: no limit
	MaxAgeSeconds float64 `json:"max_age_seconds"` // 0: no limit
}

// Backlog counts the broker messages each stage has not acknowledged yet.
// A message holds up to 128 changes of one transaction or documents of one
// index (a marker or backfill key batch one), so these count messages, not
// changes or documents.
type Backlog struct {
	// Changes are waiting for the assemblers.
	Changes uint64 `json:"changes"`
	// Documents are waiting for the writers (the largest backlog over sinks).
	Documents uint64 `json:"documents"`
}

// MarshalJSON renders durations in the units of the original flusso and
// an empty last error as null.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status // without this method
	var lastError *string
	if s.LastError != "" {
		lastError = &s.LastError
	}
	indexes := s.Indexes
	if indexes == nil {
		indexes = []IndexStatus{}
	}
	s.Indexes = indexes
	if s.Stages == nil {
		s.Stages = []health.Report{}
	}
	return json.Marshal(struct {
		plain
		UptimeSeconds   uint64  `json:"uptime_seconds"`
		LastFlushMicros uint64  `json:"last_flush_micros"`
		LastError       *string `json:"last_error"`
	}{plain(s), uint64(s.Uptime / time.Second), uint64(s.LastFlush / time.Microsecond), lastError})
}

// unready is the /readyz answer while stages have been degraded past the
// grace period: which stages, since when, and their last error.
func unready(st Status) map[string]any {
	first := st.Unready[0]
	msg := fmt.Sprintf("not ready: stage %s degraded since %s: %s",
		first.Stage, first.Since.UTC().Format(time.RFC3339), first.LastError)
	if n := len(st.Unready); n > 1 {
		msg += fmt.Sprintf(" (and %d more)", n-1)
	}
	return map[string]any{"error": msg, "phase": st.Phase, "degraded": st.Unready}
}

// IndexInfo is one index in GET /indexes.
type IndexInfo struct {
	Name       string     `json:"name"`
	State      IndexState `json:"state"`
	Generation uint64     `json:"generation"`
	// Docs is the document count of the current generation.
	Docs uint64 `json:"docs"`
}
