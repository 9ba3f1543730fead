package run

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/flusso/flusso/internal/server"
	"github.com/flusso/flusso/pkg/audit"
	"github.com/flusso/flusso/pkg/backfill"
)

// auditing is the continuous audit's latest outcome, for /status and the
// metrics.
type auditing struct {
	mu      sync.Mutex
	lastRun *time.Time
	drift   map[string]int64
	lastErr string
}

func (a *auditing) status() *server.Audit {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &server.Audit{LastRun: a.lastRun, Drift: a.drift, LastError: a.lastErr}
}

// auditor samples opts.AuditSample documents of each index in each sink
// that reads back, every opts.AuditEvery (pkg/audit), skipping indexes a
// backfill is still seeding: their documents are on their way, not
// drifted. It reports, it never repairs: `flusso audit --repair` does.
func (p *Pipeline) auditor(opts Options, dsn string, jobs *backfill.Store, log *slog.Logger) func(context.Context) error {
	p.audit = &auditing{}
	return func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(opts.AuditEvery):
			}
			rep, err := audit.Run(ctx, audit.Config{
				DatabaseURL: dsn, Slot: opts.Slot, Targets: p.auditTargets(ctx, jobs),
				Select: audit.Selection{Sample: opts.AuditSample}, Log: log,
			})
			if ctx.Err() != nil {
				return nil
			}
			p.audit.mu.Lock()
			if err != nil {
				p.audit.lastErr = err.Error()
				log.Warn("continuous audit failed", "err", err)
			} else {
				now := time.Now()
				p.audit.lastRun, p.audit.drift = &now, map[string]int64{}
				for _, ir := range rep.Indexes {
					n := int64(ir.Missing + ir.Extra + ir.Stale)
					p.audit.drift[ir.Index] += n
					if ir.Skipped == "" {
						log.Info("audited", "index", ir.Index, "sink", ir.Sink, "compared", ir.Compared, "drift", n, "unsettled", ir.Unsettled)
					}
				}
			}
			p.audit.mu.Unlock()
		}
	}
}

// auditTargets are the indexes no backfill is seeding, in every sink.
func (p *Pipeline) auditTargets(ctx context.Context, jobs *backfill.Store) []audit.Target {
	seeding := map[string]bool{}
	if list, err := jobs.List(ctx); err == nil {
		for _, j := range list {
			seeding[j.Index] = seeding[j.Index] || j.Phase != backfill.Done
		}
	}
	var out []audit.Target
	for _, ix := range p.Indexes {
		if seeding[ix.Name] {
			continue
		}
		for _, s := range p.Sinks {
			r, _ := s.(audit.Reader)
			out = append(out, audit.Target{Index: ix, Sink: r, SinkName: s.Name()})
		}
	}
	return out
}
