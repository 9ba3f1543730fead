package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/internal/logging"
	"github.com/flusso/flusso/internal/server"
	"github.com/flusso/flusso/internal/telemetry"
	"github.com/flusso/flusso/pkg/backfill"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/retry"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sink"
	"github.com/flusso/flusso/pkg/sqlbuild"
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
	Indexes   []sink.Index
	// Health holds the health of every stage this process runs.
	Health *health.Registry
	roles  []Role
}

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
	cfg := opts.Config
	env := os.LookupEnv
	roles := opts.Roles
	if len(roles) == 0 {
		roles = []Role{Capture, Assembler, Writer}
	}

	var indexes []sink.Index
	onError := map[string]config.OnError{}
	for _, ix := range cfg.Indexes {
		if !ix.Enabled {
			continue
		}
		indexes = append(indexes, sink.Index{Name: ix.Name, Schema: ix.Schema, Hash: schema.Hash(ix.Schema)})
		onError[ix.Name] = ix.OnError
	}
	if len(indexes) == 0 {
		return errors.New("no enabled [[index]] in the configuration: nothing to sync")
	}

	bc, closeBroker, err := opts.connectBroker(ctx, log)
	if err != nil {
		return err
	}
	defer closeBroker()
	sinkNames := make([]string, len(cfg.Sinks))
	for i, s := range cfg.Sinks {
		sinkNames[i] = s.Name
	}
	if err := bc.Setup(ctx, sinkNames, broker.WithQuarantineLimits(opts.Quarantine)); err != nil {
		return err
	}
	kv, err := bc.State(ctx)
	if err != nil {
		return err
	}
	jobs := backfill.NewStore(kv)

	dsn, overrides, err := cfg.Source.ConnString(env)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Path, err)
	}
	for _, o := range overrides {
		log.Info("deployment override", "override", o.String())
	}

	reg := health.NewRegistry()
	// The capture asks every sink about seeding; writers need only theirs.
	var sinks []sink.Sink
	for _, sc := range cfg.Sinks {
		need := slices.Contains(roles, Capture) ||
			(slices.Contains(roles, Writer) && (len(opts.Sinks) == 0 || slices.Contains(opts.Sinks, sc.Name)))
		if !need {
			continue
		}
		s, err := openSink(sc, opts, env, reg.Stage("sink."+sc.Name))
		if err != nil {
			return err
		}
		if sc.Type == config.Stdout {
			s = sink.Remembered(s, kv)
		}
		defer s.Close()
		sinks = append(sinks, s)
	}

	p := &Pipeline{Broker: bc, Sinks: sinks, Indexes: indexes, Health: reg, roles: roles}
	grace := opts.ReadyGrace
	if grace == 0 {
		grace = DefaultReadyGrace
	}
	st := newStatus(p, jobs, grace)
	tel, err := telemetry.Setup(ctx, telemetry.Config{Version: opts.Version, Log: log})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	if err := tel.Register(func() telemetry.Snapshot { return st.Status(context.Background()).Snapshot() }); err != nil {
		return err
	}
	srv, err := server.Listen(server.Config{
		PublicAddress: opts.PublicAddress, PrivateAddress: opts.PrivateAddress,
		AdminUser: opts.AdminUser, AdminPassword: opts.AdminPassword,
		Source: st, Metrics: tel.Handler(), Log: log,
	})
	if err != nil {
		return err
	}
	// Each stage gets its own compiled indexes: preparing one reads the
	// live catalog, and stages do that concurrently.
	compile := func() ([]*sqlbuild.Index, error) {
		var out []*sqlbuild.Index
		for _, ix := range indexes {
			c, err := sqlbuild.Compile(ix.Name, ix.Schema)
			if err != nil {
				return nil, fmt.Errorf("index %s: %w", ix.Name, err)
			}
			out = append(out, c)
		}
		return out, nil
	}

	var run []func(context.Context) error
	if slices.Contains(roles, Capture) {
		compiled, err := compile()
		if err != nil {
			return err
		}
		ci := make([]capture.Index, len(indexes))
		for i, ix := range indexes {
			ci[i] = capture.Index{Name: ix.Name, Hash: ix.Hash, Schema: ix.Schema, Keys: compiled[i]}
		}
		p.Capture, err = capture.New(capture.Config{
			DatabaseURL:       dsn,
			Slot:              opts.Slot,
			Publication:       opts.Publication,
			ManagePublication: opts.ManagePublication,
			SkipBackfill:      opts.SkipBackfill,
			LagPoll:           opts.LagPoll,
			Indexes:           ci,
			Broker:            bc,
			Seeds:             seedPlanner(sinks),
			Progress:          progressOut(),
			Log:               log.With(logging.ComponentKey, "capture"),
			Health:            reg.Stage("capture"),
		})
		if err != nil {
			return err
		}
		run = append(run, p.Capture.Run)
	}
	if slices.Contains(roles, Assembler) {
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return fmt.Errorf("opening postgres pool: %w", err)
		}
		defer pool.Close()
		compiled, err := compile()
		if err != nil {
			return err
		}
		ai := make([]assembler.Index, len(indexes))
		for i, ix := range indexes {
			ai[i] = assembler.Index{Name: ix.Name, SQL: compiled[i], OnError: onError[ix.Name]}
		}
		p.Assembler = assembler.New(assembler.Config{Pool: pool, Broker: bc, Indexes: ai, Workers: 2, Log: log.With(logging.ComponentKey, "assembler"), Health: reg.Stage("assembler")})
		run = append(run, p.Assembler.Run)
	}
	if slices.Contains(roles, Writer) {
		wi := make([]writer.Index, len(indexes))
		for i, ix := range indexes {
			wi[i] = writer.Index{Index: ix, OnError: onError[ix.Name]}
		}
		for _, s := range sinks {
			if len(opts.Sinks) > 0 && !slices.Contains(opts.Sinks, s.Name()) {
				continue
			}
			w := writer.New(writer.Config{Sink: s, Broker: bc, Indexes: wi, Batch: opts.QueueCapacity,
				Log: log.With(logging.ComponentKey, "writer"), OnFlush: tel.ObserveFlush, Health: reg.Stage("writer." + s.Name())})
			p.Writers = append(p.Writers, w)
			run = append(run, w.Run)
		}
	}
	run = append(run, func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Second):
				st.refreshStates(ctx)
			}
		}
	})
	if ready != nil {
		ready(p)
	}
	go func() {
		<-ctx.Done()
		st.stopping.Store(true)
	}()
	// Serve from here: while a sink cannot be reached, /status and /readyz
	// say so rather than not answering.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()
	if prepare(ctx, sinks, indexes, reg, log) {
		st.refreshStates(ctx)
		err = all(ctx, run)
	}
	if err != nil {
		st.fail(err)
	}
	stopServing()
	if serr := <-served; serr != nil && err == nil {
		err = serr
	}
	return err
}

// prepare creates or resumes every index in every sink once, before the
// stages race to it. A sink that fails is retried until it answers, its
// stage degraded meanwhile: an unreachable OpenSearch at start is a fault to
// show and wait out, like one later. It reports false if ctx ended first.
func prepare(ctx context.Context, sinks []sink.Sink, indexes []sink.Index, reg *health.Registry, log *slog.Logger) bool {
	for _, s := range sinks {
		retries := &retry.Runner{Health: reg.Stage("sink." + s.Name()), Log: log}
		for _, ix := range indexes {
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

// all runs fns until ctx is done or the first fails, then stops the rest.
func all(ctx context.Context, fns []func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// seedPlanner asks each sink whether it holds a seeded index.
func seedPlanner(sinks []sink.Sink) capture.SeedPlanner {
	return func(ctx context.Context, ix capture.Index) (map[string]uint32, error) {
		targets := map[string]uint32{}
		for _, s := range sinks {
			st, err := s.Ensure(ctx, sink.Index{Name: ix.Name, Schema: ix.Schema, Hash: ix.Hash})
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
