package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/flusso/flusso/internal/logging"
	"github.com/flusso/flusso/internal/server"
	"github.com/flusso/flusso/internal/telemetry"
	"github.com/flusso/flusso/pkg/backfill"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/retry"
	"github.com/flusso/flusso/pkg/sink"
	"github.com/flusso/flusso/services/assembler"
	"github.com/flusso/flusso/services/capture"
	"github.com/flusso/flusso/services/writer"
)

// Pipeline is a running set of stages, for the HTTP surfaces to read.
type Pipeline struct {
	Capture   *capture.Capture
	Assembler *assembler.Assembler
	Writers   []*writer.Writer
	Broker    *broker.Conn
	Sinks     []sink.Sink
	Indexes   []flow.Index
	// Health holds the health of every stage this process runs.
	Health *health.Registry
	// Meters are the counters the stages record into; /status and the
	// metrics both read them.
	Meters Meters
	roles  []Role
	audit  *auditing // nil unless this process audits
}

// runs reports whether this process runs role.
func (p *Pipeline) runs(role Role) bool { return slices.Contains(p.roles, role) }

// Run runs the pipeline until ctx is cancelled or a stage fails.
func Run(ctx context.Context, opts Options) error {
	return Start(ctx, opts, nil)
}

// Start runs the pipeline like Run and hands the assembled stages to ready
// before they start (nil: nobody asks).
func Start(ctx context.Context, opts Options, ready func(*Pipeline)) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	log := slog.Default()
	indexes, err := enabledIndexes(opts.Config)
	if err != nil {
		return err
	}
	bc, closeBroker, err := openBroker(ctx, opts, log)
	if err != nil {
		return err
	}
	defer closeBroker()
	kv, err := bc.State(ctx)
	if err != nil {
		return err
	}
	dsn, err := sourceDSN(opts.Config, log)
	if err != nil {
		return err
	}
	p := &Pipeline{Broker: bc, Indexes: indexes, Health: health.NewRegistry(), roles: opts.roles()}
	closeSinks, err := p.openSinks(opts, kv)
	defer closeSinks()
	if err != nil {
		return err
	}
	st := newStatus(p, backfill.NewStore(kv), opts.readyGrace())
	tel, stopTelemetry, err := startTelemetry(ctx, opts, st, log)
	if err != nil {
		return err
	}
	defer stopTelemetry()
	srv, err := server.Listen(server.Config{
		PublicAddress: opts.PublicAddress, PrivateAddress: opts.PrivateAddress,
		AdminUser: opts.AdminUser, AdminPassword: opts.AdminPassword,
		Source: st, Metrics: tel.Handler(), Log: log,
	})
	if err != nil {
		return err
	}
	stages, closeStages, err := p.assemble(ctx, opts, dsn, tel, log)
	defer closeStages()
	if err != nil {
		return err
	}
	stages = append(stages, st.refresher)
	if opts.AuditEvery > 0 && p.runs(Capture) {
		stages = append(stages, p.auditor(opts, dsn, st.jobs, log))
	}
	if ready != nil {
		ready(p)
	}
	go func() {
		<-ctx.Done()
		st.stopping.Store(true)
	}()
	return serve(ctx, srv, st, func(ctx context.Context) error {
		if !p.prepare(ctx, log) {
			return nil // ctx ended
		}
		st.refreshStates(ctx)
		return all(ctx, stages)
	})
}

// enabledIndexes describes the enabled indexes of cfg.
func enabledIndexes(cfg *config.Config) ([]flow.Index, error) {
	var out []flow.Index
	for _, ix := range cfg.Indexes {
		if ix.Enabled {
			out = append(out, flow.New(ix.Name, ix.Schema, ix.OnError))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no enabled [[index]] in the configuration: nothing to sync")
	}
	return out, nil
}

// compiled gives one stage indexes with SQL of its own (flow.Index.Compiled).
func compiled(indexes []flow.Index) ([]flow.Index, error) {
	out := make([]flow.Index, len(indexes))
	for i, ix := range indexes {
		c, err := ix.Compiled()
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// openBroker connects to the broker and lays out its streams for the
// configured sinks. The returned func closes the connection.
func openBroker(ctx context.Context, opts Options, log *slog.Logger) (*broker.Conn, func(), error) {
	bc, closeBroker, err := opts.connectBroker(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	sinkNames := make([]string, len(opts.Config.Sinks))
	for i, s := range opts.Config.Sinks {
		sinkNames[i] = s.Name
	}
	if err := bc.Setup(ctx, sinkNames, broker.WithQuarantineLimits(opts.Quarantine), broker.WithPlacement(opts.Placement)); err != nil {
		closeBroker()
		return nil, nil, err
	}
	return bc, closeBroker, nil
}

// sourceDSN resolves the source's connection string from the environment,
// logging which reserved overrides applied (never their values).
func sourceDSN(cfg *config.Config, log *slog.Logger) (string, error) {
	dsn, overrides, err := cfg.Source.ConnString(os.LookupEnv)
	if err != nil {
		return "", fmt.Errorf("%s: %w", cfg.Path, err)
	}
	for _, o := range overrides {
		log.Info("deployment override", "override", o.String())
	}
	return dsn, nil
}

// openSinks opens the sinks this process needs: the capture asks every
// sink about seeding, writers need only theirs. The returned func closes
// those opened, also when opening a later one failed.
func (p *Pipeline) openSinks(opts Options, kv jetstream.KeyValue) (func(), error) {
	closeAll := func() {
		for _, s := range slices.Backward(p.Sinks) {
			s.Close()
		}
	}
	for _, sc := range opts.Config.Sinks {
		if !p.runs(Capture) && !(p.runs(Writer) && opts.writes(sc.Name)) {
			continue
		}
		s, err := openSink(sc, opts, os.LookupEnv, p.Health.Stage("sink."+sc.Name))
		if err != nil {
			return closeAll, err
		}
		if sc.Type == config.Stdout {
			s = sink.Remembered(s, kv)
		}
		p.Sinks = append(p.Sinks, s)
	}
	return closeAll, nil
}

// startTelemetry sets up metrics and traces, fed from st. The returned
// func flushes what is buffered.
func startTelemetry(ctx context.Context, opts Options, st *status, log *slog.Logger) (*telemetry.Provider, func(), error) {
	tel, err := telemetry.Setup(ctx, telemetry.Config{Version: opts.Version, Log: log})
	if err != nil {
		return nil, nil, err
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}
	if err := tel.Register(st.sources()); err != nil {
		stop()
		return nil, nil, err
	}
	return tel, stop, nil
}

// assemble builds the stages of the roles this process runs and returns
// their Run functions. The returned func releases what they hold.
func (p *Pipeline) assemble(ctx context.Context, opts Options, dsn string, tel *telemetry.Provider, log *slog.Logger) ([]func(context.Context) error, func(), error) {
	var (
		stages  []func(context.Context) error
		cleanup = func() {}
	)
	if p.runs(Capture) {
		c, err := p.newCapture(opts, dsn, log)
		if err != nil {
			return nil, cleanup, err
		}
		p.Capture = c
		stages = append(stages, c.Run)
	}
	if p.runs(Assembler) {
		a, pool, err := p.newAssembler(ctx, dsn, log)
		if err != nil {
			return nil, cleanup, err
		}
		cleanup = pool.Close
		p.Assembler = a
		stages = append(stages, a.Run)
	}
	if p.runs(Writer) {
		for _, s := range p.Sinks {
			if !opts.writes(s.Name()) {
				continue
			}
			flushes := sink.Meters{Flushes: &p.Meters.Flushes, LastFlush: &p.Meters.LastFlush, Observe: tel.ObserveFlush}
			w := writer.New(writer.Config{Sink: sink.Instrumented(s, flushes), Broker: p.Broker, Indexes: p.Indexes, Batch: opts.QueueCapacity,
				Log: log.With(logging.ComponentKey, "writer"), Health: p.Health.Stage("writer." + s.Name()), Quarantined: &p.Meters.Quarantined})
			p.Writers = append(p.Writers, w)
			stages = append(stages, w.Run)
		}
	}
	return stages, cleanup, nil
}

// newCapture builds the capture stage.
func (p *Pipeline) newCapture(opts Options, dsn string, log *slog.Logger) (*capture.Capture, error) {
	indexes, err := compiled(p.Indexes)
	if err != nil {
		return nil, err
	}
	return capture.New(capture.Config{
		DatabaseURL:       dsn,
		Slot:              opts.Slot,
		Publication:       opts.Publication,
		ManagePublication: opts.ManagePublication,
		SkipBackfill:      opts.SkipBackfill,
		LagPoll:           opts.LagPoll,
		Indexes:           indexes,
		Broker:            p.Broker,
		Seeds:             seedPlanner(p.Sinks),
		Progress:          progressOut(),
		Log:               log.With(logging.ComponentKey, "capture"),
		Health:            p.Health.Stage("capture"),
		Tracer:            telemetry.Tracer(),
		Skipped:           &p.Meters.Skipped,
	})
}

// newAssembler builds the assembler stage, with the pool it reads from.
func (p *Pipeline) newAssembler(ctx context.Context, dsn string, log *slog.Logger) (*assembler.Assembler, *pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("opening postgres pool: %w", err)
	}
	indexes, err := compiled(p.Indexes)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	a := assembler.New(assembler.Config{Pool: pool, Broker: p.Broker, Indexes: indexes, Workers: 2,
		Log: log.With(logging.ComponentKey, "assembler"), Health: p.Health.Stage("assembler"),
		Built: &p.Meters.Built, Quarantined: &p.Meters.Quarantined})
	return a, pool, nil
}

// prepare creates or resumes every index in every sink once, before the
// stages race to it: at start, the one place Sink.Ensure is called. A sink
// that fails is retried until it answers, its stage degraded meanwhile: an
// unreachable OpenSearch at start is a fault to show and wait out, like one
// later. It reports false if ctx ended first.
func (p *Pipeline) prepare(ctx context.Context, log *slog.Logger) bool {
	for _, s := range p.Sinks {
		retries := &retry.Runner{Health: p.Health.Stage("sink." + s.Name()), Log: log}
		for _, ix := range p.Indexes {
			err := retries.Do(ctx, "preparing a sink", func() error {
				if _, err := s.Ensure(ctx, ix); err != nil {
					return fmt.Errorf("sink %s: preparing index %s: %w", s.Name(), ix.Name, err)
				}
				return nil
			}, func(attempt int, _ error) (time.Duration, error) { return retry.Backoff(attempt), nil })
			if err != nil {
				return false // only ctx ends the retries
			}
		}
	}
	return ctx.Err() == nil
}

// serve answers on the HTTP surfaces while work runs, and until it ends:
// while a sink cannot be reached, /status and /readyz say so rather than
// not answering. A failure of work is shown on /status before the
// surfaces close.
func serve(ctx context.Context, srv *server.Server, st *status, work func(context.Context) error) error {
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()
	err := work(ctx)
	if err != nil {
		st.fail(err)
	}
	stopServing()
	if serr := <-served; serr != nil && err == nil {
		err = serr
	}
	return err
}

// all runs fns until ctx is done or the first fails, then stops the rest.
// It returns the first failure, if one came before ctx ended.
func all(ctx context.Context, fns []func(context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, fn := range fns {
		g.Go(func() error { return fn(gctx) })
	}
	_ = g.Wait() // what ended the group, below: a stage failing after ctx ended is part of the shutdown
	if cause := context.Cause(gctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// seedPlanner asks each sink whether it holds a seeded index. It runs each
// time the capture takes the lease, possibly long after start and after
// other processes seeded or reindexed, so it reads the sinks then rather
// than reusing what prepare saw; Ensure, not State, so that an index gone
// meanwhile is made again and seeded.
func seedPlanner(sinks []sink.Sink) capture.SeedPlanner {
	return func(ctx context.Context, ix flow.Index) (map[string]uint32, error) {
		targets := map[string]uint32{}
		for _, s := range sinks {
			st, err := s.Ensure(ctx, ix)
			if err != nil {
				return nil, fmt.Errorf("sink %s: %w", s.Name(), err)
			}
			switch {
			case !st.Seeded:
				targets[s.Name()] = st.Generation
			case st.Next != 0:
				targets[s.Name()] = st.Next
			}
		}
		return targets, nil
	}
}

// progressOut is where backfills draw their bar: nowhere when logs are JSON
// (a bar between JSON lines breaks their readers), else the capture's
// default (stderr when it is a terminal).
func progressOut() io.Writer {
	if os.Getenv("FLUSSO_LOG_FORMAT") == "json" {
		return io.Discard
	}
	return nil
}
