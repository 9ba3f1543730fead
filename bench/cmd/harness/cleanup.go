package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// started is every process the harness started, so that the end of a run
// stops those still running, whichever way it ends.
var started struct {
	mu    sync.Mutex
	procs []*proc
}

func track(p *proc) {
	started.mu.Lock()
	defer started.mu.Unlock()
	started.procs = append(started.procs, p)
}

// leftovers is what a run may leave behind: the benchmark databases (with
// the replication slots, publications and PGSync's triggers in them) and
// the OpenSearch indexes under the given prefixes.
type leftovers struct {
	admin     *pgxpool.Pool
	search    *search
	databases []string
	prefixes  []string
}

// cleanup removes every leftover: it stops the processes still running,
// drops the slots of the databases (a slot left behind holds WAL on the
// shared cluster for good) and the databases, and deletes the indexes. It
// goes on past a failure and returns them all.
func (l leftovers) cleanup(ctx context.Context) error {
	var errs []error
	started.mu.Lock()
	procs := started.procs
	started.procs = nil
	started.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(10 * time.Second)
	}
	if l.admin != nil {
		for _, db := range l.databases {
			if err := dropDatabase(ctx, l.admin, db); err != nil {
				errs = append(errs, err)
			}
		}
		var left []string
		rows, err := l.admin.Query(ctx, `SELECT slot_name::text FROM pg_replication_slots WHERE database = ANY($1)`, l.databases)
		if err == nil {
			for rows.Next() {
				var s string
				if rows.Scan(&s) == nil {
					left = append(left, s)
				}
			}
			rows.Close()
			err = rows.Err()
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("listing replication slots left: %w", err))
		case len(left) > 0:
			errs = append(errs, fmt.Errorf("replication slots left behind: %v", left))
		}
	}
	if l.search != nil {
		for _, p := range l.prefixes {
			if err := l.search.drop(ctx, p); err != nil {
				errs = append(errs, fmt.Errorf("deleting indexes %s*: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// cleanupOnSignal cancels the run at the first SIGINT or SIGTERM, so that
// its deferred cleanup runs; a second signal ends the harness at once.
func cleanupOnSignal(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "harness: %s: stopping and cleaning up (again to quit now)\n", s)
			cancel()
		case <-ctx.Done():
			return
		}
		<-sigs
		os.Exit(2)
	}()
	return ctx, func() {
		cancel()
		signal.Stop(sigs)
	}
}
