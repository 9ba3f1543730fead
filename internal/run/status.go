package run

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flusso/flusso/internal/server"
	"github.com/flusso/flusso/internal/telemetry"
	"github.com/flusso/flusso/pkg/backfill"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/meter"
	"github.com/flusso/flusso/pkg/sink"
	"github.com/flusso/flusso/services/capture"
)

// Meters are the counters the stages of this process record into, as
// events happen; /status and the metrics both read them.
type Meters struct {
	Built       meter.Counter // documents built, by index
	Quarantined meter.Counter // documents set aside by the assembler or a writer, by index
	Skipped     meter.Counter // updates the capture dropped as changing no column an index reads, by table
	Flushes     meter.Counter // sink writes, by sink
	LastFlush   meter.Gauge   // the latest write's duration, by sink
}

// status is the pipeline's view for the HTTP surfaces: it implements
// server.Source over the stages this process runs and the shared broker
// state every process sees.
type status struct {
	p       *Pipeline
	jobs    *backfill.Store
	started time.Time
	grace   time.Duration // a stage degraded longer makes /readyz answer 503

	stopping atomic.Bool
	failed   atomic.Bool
	errors   atomic.Uint64
	lastErr  atomic.Value // string

	mu         sync.Mutex
	cached     server.Status
	at         time.Time
	states     map[string]sink.State // index → state in the first stateful sink
	statesAt   time.Time
	refreshing atomic.Bool
}

func newStatus(p *Pipeline, jobs *backfill.Store, grace time.Duration) *status {
	return &status{p: p, jobs: jobs, started: time.Now(), grace: grace, states: map[string]sink.State{}}
}

// fail records a stage error.
func (s *status) fail(err error) {
	s.errors.Add(1)
	s.lastErr.Store(err.Error())
	s.failed.Store(true)
}

// Status implements server.Source; it is cached for a second since every
// request and scrape asks.
func (s *status) Status(ctx context.Context) server.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.at) < time.Second {
		return s.cached
	}
	s.cached, s.at = s.compute(ctx), time.Now()
	return s.cached
}

func (s *status) compute(ctx context.Context) server.Status {
	st := server.Status{Uptime: time.Since(s.started), Errors: s.errors.Load(),
		Stages: s.p.Health.Reports(), Unready: s.p.Health.DegradedFor(s.grace, time.Now())}
	if e, ok := s.lastErr.Load().(string); ok {
		st.LastError = e
	}
	if c := s.p.Capture; c != nil {
		cs := c.Stats()
		st.ChangesCaptured, st.ChangesCommitted, st.ConfirmedLSN = cs.Captured, cs.Commits, cs.ConfirmedLSN
		if cs.LagBytes >= 0 && cs.LagMeasured {
			lag := uint64(cs.LagBytes)
			st.SlotLagBytes = &lag
		}
	}
	built, quarantined := s.p.Meters.Built.Snapshot(), s.p.Meters.Quarantined.Snapshot()
	st.ChangesSkipped = s.p.Meters.Skipped.Snapshot()
	for _, n := range built {
		st.DocumentsBuilt += n
	}
	for _, n := range s.p.Meters.Flushes.Snapshot() {
		st.Batches += n
	}
	for _, d := range s.p.Meters.LastFlush.Snapshot() {
		st.LastFlush = max(st.LastFlush, time.Duration(d))
	}
	var changesDone uint64
	if pr, err := s.p.Broker.Progress(ctx, broker.ChangesStream); err == nil {
		st.Backlog.Changes, changesDone = pr.Pending, pr.Done
	}
	if pr, err := s.p.Broker.Progress(ctx, broker.DocsStream); err == nil {
		st.Backlog.Documents = pr.Pending
	}
	if q, err := s.p.Broker.Quarantine(ctx); err == nil {
		st.Quarantine = &server.Quarantine{Entries: q.Entries, Bytes: q.Bytes, MaxBytes: q.MaxBytes, MaxAgeSeconds: q.MaxAge.Seconds()}
	}
	if st.ChangesCaptured > 0 {
		st.ChangesInFlight = st.Backlog.Changes
	}
	jobs, _ := s.jobs.List(ctx)
	running := false
	for _, ix := range s.p.Indexes {
		is := server.IndexStatus{Name: ix.Name, State: server.Seeded, DocumentsBuilt: built[ix.Name], DocumentsQuarantined: quarantined[ix.Name]}
		if state, ok := s.states[ix.Name]; ok { // s.mu is held by Status
			is.Generation = uint64(state.Generation)
			if !state.Seeded {
				is.State = server.Pending
			}
		}
		for _, j := range jobs {
			if j.Index != ix.Name {
				continue
			}
			if j.Phase == backfill.Done {
				// Finished since the sink states were read: its markers are
				// on their way; read the states again soon.
				if j.Finished.After(s.statesAt) {
					is.State = server.Seeded
					s.refreshSoon(ctx)
				}
				continue
			}
			running = true
			is.State = server.IndexBackfilling
			is.Backfill = server.NewBackfill(rowsDone(j, changesDone), uint64(max(j.Total, j.Rows)), time.Since(j.Created))
		}
		st.DocumentsQuarantined += is.DocumentsQuarantined
		st.Indexes = append(st.Indexes, is)
	}
	if s.p.audit != nil {
		st.Audit = s.p.audit.status()
	}
	switch {
	case s.failed.Load():
		st.Phase = server.Failed
	case s.stopping.Load():
		st.Phase = server.Stopping
	case s.p.Capture != nil && !s.p.Capture.Stats().Streaming:
		st.Phase = server.Starting
	case running:
		st.Phase = server.Backfilling
	default:
		st.Phase = server.Live
	}
	return st
}

// rowsDone estimates the rows of a job whose documents are built: keys
// published, less those still waiting on the changes stream.
func rowsDone(j *backfill.Job, changesDone uint64) uint64 {
	rows := uint64(j.Rows)
	if j.LastSeq > changesDone {
		behind := (j.LastSeq - changesDone) * capture.DefaultBatchKeys
		if behind >= rows {
			return 0
		}
		rows -= behind
	}
	return rows
}

// refreshSoon re-reads the sink states in the background, once at a time.
func (s *status) refreshSoon(ctx context.Context) {
	if !s.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.refreshing.Store(false)
		s.refreshStates(context.WithoutCancel(ctx))
	}()
}

// refresher re-reads the index states every 10 s until ctx ends.
func (s *status) refresher(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Second):
			s.refreshStates(ctx)
		}
	}
}

// refreshStates re-reads each index's state in the first sink that keeps
// one, for /status and /indexes.
func (s *status) refreshStates(ctx context.Context) {
	read := time.Now()
	defer func() {
		s.mu.Lock()
		// The cached status was computed from the states before these.
		s.statesAt, s.at = read, time.Time{}
		s.mu.Unlock()
	}()
	for _, ix := range s.p.Indexes {
		for _, sk := range s.p.Sinks {
			st, err := sk.State(ctx, ix.Name)
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.states[ix.Name] = st
			s.mu.Unlock()
			break
		}
	}
}

// Indexes implements server.Source.
func (s *status) Indexes(ctx context.Context) ([]server.IndexInfo, error) {
	if len(s.p.Sinks) == 0 {
		return nil, errors.New("this process runs no sink (assembler only): ask a capture or writer process")
	}
	s.refreshStates(ctx)
	st := s.Status(ctx)
	out := make([]server.IndexInfo, 0, len(st.Indexes))
	for _, ix := range st.Indexes {
		info := server.IndexInfo{Name: ix.Name, State: ix.State, Generation: ix.Generation}
		s.mu.Lock()
		if state, ok := s.states[ix.Name]; ok {
			info.Docs = uint64(max(state.Docs, 0))
		}
		s.mu.Unlock()
		out = append(out, info)
	}
	return out, nil
}

// Reindex implements server.Source: it starts the next generation in every
// sink that keeps generations and queues a backfill job for the capture.
func (s *status) Reindex(ctx context.Context, index string) error {
	var target *flow.Index
	for i := range s.p.Indexes {
		if s.p.Indexes[i].Name == index {
			target = &s.p.Indexes[i]
		}
	}
	if target == nil {
		return server.ErrUnknownIndex
	}
	if len(s.p.Sinks) == 0 {
		return fmt.Errorf("%w: this process runs no sink (assembler only): send the reindex to a capture or writer process", server.ErrNothingToRebuild)
	}
	if j, err := s.jobs.Get(ctx, index); err != nil {
		return err
	} else if j != nil && j.Phase != backfill.Done {
		return server.ErrReindexRunning
	}
	targets := map[string]uint32{}
	for _, sk := range s.p.Sinks {
		gen, err := sk.BeginReindex(ctx, index)
		if err != nil {
			return fmt.Errorf("sink %s: %w", sk.Name(), err)
		}
		if gen != 0 {
			targets[sk.Name()] = gen
		}
	}
	if len(targets) == 0 {
		return fmt.Errorf("%w: the sinks of this process are stdout sinks, which keep no index", server.ErrNothingToRebuild)
	}
	err := s.jobs.Request(ctx, &backfill.Job{Index: index, Hash: target.Hash, Targets: targets, Reason: "reindex"})
	if errors.Is(err, backfill.ErrRunning) {
		return server.ErrReindexRunning
	}
	return err
}

// sources are what the metrics read: the meters and health records the
// stages write, and the queried part of the status (cached like /status).
func (s *status) sources() telemetry.Sources {
	names := make([]string, len(s.p.Indexes))
	for i, ix := range s.p.Indexes {
		names[i] = ix.Name
	}
	return telemetry.Sources{
		Indexes:     names,
		Built:       &s.p.Meters.Built,
		Quarantined: &s.p.Meters.Quarantined,
		Flushes:     &s.p.Meters.Flushes,
		Skipped:     &s.p.Meters.Skipped,
		Health:      s.p.Health,
		State: func() telemetry.State {
			st := s.Status(context.Background())
			out := telemetry.State{
				ChangesCaptured:  st.ChangesCaptured,
				ChangesCommitted: st.ChangesCommitted,
				ChangesInFlight:  st.ChangesInFlight,
				Errors:           st.Errors,
				SlotLagBytes:     st.SlotLagBytes,
				Backlog:          map[string]uint64{"assembler": st.Backlog.Changes, "writer": st.Backlog.Documents},
			}
			if q := st.Quarantine; q != nil {
				out.Quarantine = &telemetry.QuarantineUse{Bytes: q.Bytes, MaxBytes: q.MaxBytes}
			}
			if a := st.Audit; a != nil && a.LastRun != nil {
				out.Audit = &telemetry.AuditResult{LastRun: *a.LastRun, Drift: a.Drift}
			}
			return out
		},
	}
}
