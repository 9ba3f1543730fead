package telemetry

import (
	"context"
	"fmt"
	"math"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/meter"
)

// Sources are what the pipeline metrics read at each collection: the
// counters the stages record into as events happen, the stages' health,
// and State for what has to be asked for (the capture's position, the
// broker's backlog).
type Sources struct {
	// Indexes are reported from the start, at 0 until their first event.
	Indexes     []string
	Built       *meter.Counter // documents built, by index
	Quarantined *meter.Counter // documents set aside, by index
	Flushes     *meter.Counter // sink writes, by sink
	Skipped     *meter.Counter // updates the capture dropped, by table
	Health      *health.Registry
	State       func() State
}

// State is the part of the pipeline's state that is read, not counted.
type State struct {
	ChangesCaptured  uint64
	ChangesCommitted uint64
	ChangesInFlight  uint64
	Errors           uint64
	// SlotLagBytes is nil until first measured.
	SlotLagBytes *uint64
	// Backlog is the broker messages pending per stage (assembler, writer).
	Backlog map[string]uint64
	// Quarantine is nil until the quarantine stream was read.
	Quarantine *QuarantineUse
	// Audit is nil until a continuous audit ended.
	Audit *AuditResult
}

// AuditResult is the latest continuous audit.
type AuditResult struct {
	LastRun time.Time
	Drift   map[string]int64 // drifted documents by index
}

// QuarantineUse is the quarantine stream's bytes against its limit.
type QuarantineUse struct {
	Bytes    uint64
	MaxBytes int64 // -1: no limit
}

// Register exposes the pipeline's counters as observable instruments,
// read from src once per collection:
//
//	flusso.changes.captured      counter  flusso_changes_captured_total
//	flusso.changes.committed     counter  flusso_changes_committed_total
//	flusso.changes.in_flight     gauge    flusso_changes_in_flight
//	flusso.changes.skipped       counter  flusso_changes_skipped_total{table}
//	flusso.documents.built       counter  flusso_documents_built_total{index}
//	flusso.documents.quarantined counter  flusso_documents_quarantined_total{index}
//	flusso.batches               counter  flusso_batches_total
//	flusso.errors                counter  flusso_errors_total
//	flusso.replication.slot_lag  gauge    flusso_replication_slot_lag_bytes
//	flusso.stage.backlog         gauge    flusso_stage_backlog{stage}
//	flusso.stage.degraded        gauge    flusso_stage_degraded{stage} (0 or 1)
//	flusso.stage.failures        counter  flusso_stage_failures_total{stage}
//	flusso.quarantine.size       gauge    flusso_quarantine_size_bytes
//	flusso.quarantine.limit      gauge    flusso_quarantine_limit_bytes (absent without a limit)
//	flusso.audit.drift_documents gauge    flusso_audit_drift_documents{index}
//	flusso.audit.last_run_timestamp gauge flusso_audit_last_run_timestamp_seconds
func (p *Provider) Register(src Sources) error {
	m := p.meter
	var err error
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, e := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = fmt.Errorf("creating %s: %w", name, e)
		}
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, e := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = fmt.Errorf("creating %s: %w", name, e)
		}
		return g
	}
	captured := counter("flusso.changes.captured", "{change}", "Row changes read from the replication slot")
	committed := counter("flusso.changes.committed", "{transaction}", "Source transactions durable in every sink")
	inFlight := gauge("flusso.changes.in_flight", "{change}", "Captured changes not yet durable in every sink")
	skipped := counter("flusso.changes.skipped", "{change}", "Updates dropped at capture because they changed no column an index reads, per table")
	built := counter("flusso.documents.built", "{document}", "Documents assembled, per index")
	quarantined := counter("flusso.documents.quarantined", "{document}", "Documents a sink rejected and on_error = skip set aside, per index")
	batches := counter("flusso.batches", "{batch}", "Sink flushes")
	errs := counter("flusso.errors", "{error}", "Errors that failed a stage")
	slotLag := gauge("flusso.replication.slot_lag", "By", "WAL bytes the slot's confirmed position trails the server by")
	backlog := gauge("flusso.stage.backlog", "{message}", "Broker messages a stage has not acknowledged yet")
	degraded := gauge("flusso.stage.degraded", "", "1 while a stage keeps failing and retrying, else 0")
	failures := counter("flusso.stage.failures", "{failure}", "Failures a stage retried after (for a sink, its retries)")
	qSize := gauge("flusso.quarantine.size", "By", "Bytes the quarantine stream holds")
	qLimit := gauge("flusso.quarantine.limit", "By", "Bytes the quarantine stream holds before it drops its oldest entries")
	auditDrift := gauge("flusso.audit.drift_documents", "{document}", "Documents the latest continuous audit found drifted from Postgres, per index")
	auditLast := gauge("flusso.audit.last_run_timestamp", "s", "When the latest continuous audit ended, in seconds since the epoch")
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := src.State()
		o.ObserveInt64(captured, clamp(s.ChangesCaptured))
		o.ObserveInt64(committed, clamp(s.ChangesCommitted))
		o.ObserveInt64(inFlight, clamp(s.ChangesInFlight))
		for table, n := range src.Skipped.Snapshot() {
			o.ObserveInt64(skipped, clamp(n), metric.WithAttributes(attribute.String("table", table)))
		}
		o.ObserveInt64(errs, clamp(s.Errors))
		if s.SlotLagBytes != nil {
			o.ObserveInt64(slotLag, clamp(*s.SlotLagBytes))
		}
		for stage, n := range s.Backlog {
			o.ObserveInt64(backlog, clamp(n), metric.WithAttributes(attribute.String("stage", stage)))
		}
		var flushes uint64
		for _, n := range src.Flushes.Snapshot() {
			flushes += n
		}
		o.ObserveInt64(batches, clamp(flushes))
		builds, set := src.Built.Snapshot(), src.Quarantined.Snapshot()
		for _, index := range src.Indexes {
			for _, m := range []map[string]uint64{builds, set} {
				if _, ok := m[index]; !ok {
					m[index] = 0
				}
			}
		}
		for index, n := range builds {
			o.ObserveInt64(built, clamp(n), metric.WithAttributes(attribute.String("index", index)))
		}
		for index, n := range set {
			o.ObserveInt64(quarantined, clamp(n), metric.WithAttributes(attribute.String("index", index)))
		}
		for _, r := range src.Health.Reports() {
			attrs := metric.WithAttributes(attribute.String("stage", r.Stage))
			o.ObserveInt64(degraded, boolGauge(r.State == health.Degraded), attrs)
			o.ObserveInt64(failures, clamp(r.Failures), attrs)
		}
		if q := s.Quarantine; q != nil {
			o.ObserveInt64(qSize, clamp(q.Bytes))
			if q.MaxBytes > 0 {
				o.ObserveInt64(qLimit, q.MaxBytes)
			}
		}
		if a := s.Audit; a != nil {
			o.ObserveInt64(auditLast, a.LastRun.Unix())
			for index, n := range a.Drift {
				o.ObserveInt64(auditDrift, n, metric.WithAttributes(attribute.String("index", index)))
			}
		}
		return nil
	}, captured, committed, inFlight, skipped, built, quarantined, batches, errs, slotLag, backlog, degraded, failures, qSize, qLimit, auditDrift, auditLast)
	if err != nil {
		return fmt.Errorf("registering the pipeline metrics: %w", err)
	}
	return nil
}

func boolGauge(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func clamp(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

// Tracer is flusso's tracer, from the global provider Setup installs (a
// no-op one before, or without OTLP traces).
func Tracer() trace.Tracer { return otel.Tracer(Name) }
