// Package health tracks whether each stage of a running pipeline is doing its work.
// A stage that keeps failing keeps retrying; it reports each failure and each success
// here, and /status, /readyz and the metrics read the same records.
package health

import (
	"sort"
	"sync"
	"time"

	"github.com/flusso/flusso/pkg/redact"
)

// State is a stage's health.
type State string

// States.
const (
	OK       State = "ok"
	Degraded State = "degraded"
)

// Stage records the health of one stage ("capture", "assembler", "writer.primary",
// "sink.primary"). A nil *Stage ignores every call, so a stage built without one
// (in a unit test, say) needs no checks.
type Stage struct {
	name string

	mu       sync.Mutex
	failing  bool
	since    time.Time // first failure of the current run of failures
	last     string    // redacted
	lastAt   time.Time
	failures uint64 // every failure since start
}

// Report is a stage's health at one moment, as /status shows it.
type Report struct {
	Stage string `json:"stage"`
	State State  `json:"state"`
	// LastError is the newest failure's message (redacted); it stays after a
	// recovery so an operator can see what happened.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// Since is when the stage became degraded; empty while ok.
	Since    *time.Time `json:"since,omitempty"`
	Failures uint64     `json:"failures"`
}

// Fail records a failure: the stage is degraded from now, or still degraded since
// its first failure in a row.
func (s *Stage) Fail(err error) {
	if s == nil || err == nil {
		return
	}
	msg := redact.Error(err)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failing {
		s.failing, s.since = true, now
	}
	s.last, s.lastAt = msg, now
	s.failures++
}

// OK records that the stage did its work: a degraded stage has recovered.
func (s *Stage) OK() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.failing = false
	s.mu.Unlock()
}

// Report returns the stage's health now.
func (s *Stage) Report() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := Report{Stage: s.name, State: OK, LastError: s.last, Failures: s.failures}
	if !s.lastAt.IsZero() {
		at := s.lastAt
		r.LastErrorAt = &at
	}
	if s.failing {
		since := s.since
		r.State, r.Since = Degraded, &since
	}
	return r
}

// Registry holds the stages of one process.
type Registry struct {
	mu     sync.Mutex
	stages map[string]*Stage
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{stages: map[string]*Stage{}} }

// Stage returns the stage called name, registering it on first use. A nil registry
// returns nil, which ignores every report.
func (r *Registry) Stage(name string) *Stage {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stages[name]
	if s == nil {
		s = &Stage{name: name}
		r.stages[name] = s
	}
	return s
}

// Reports returns every stage's health, by name.
func (r *Registry) Reports() []Report {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	out := make([]Report, 0, len(r.stages))
	for _, s := range r.stages {
		out = append(out, s.Report())
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Stage < out[j].Stage })
	return out
}

// DegradedFor reports the stages degraded for longer than grace at now.
func (r *Registry) DegradedFor(grace time.Duration, now time.Time) []Report {
	var out []Report
	for _, rep := range r.Reports() {
		if rep.State == Degraded && now.Sub(*rep.Since) > grace {
			out = append(out, rep)
		}
	}
	return out
}
