package harness

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/run"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/config"
)

// Task is a function a test runs in the background until Stop, until it
// returns on its own, or until the test ends. An error nobody asked for
// through Stop or Failure fails the test at cleanup.
type Task struct {
	t      testing.TB
	cancel context.CancelFunc
	done   chan struct{} // closed once fn returned
	err    error         // what fn returned; read after done is closed
	mu     sync.Mutex
	seen   bool // a caller was handed err
}

// stopWait bounds how long a task may take to return once cancelled.
const stopWait = 30 * time.Second

// Go runs fn with a context that Stop, or the end of the test, cancels.
func Go(t testing.TB, fn func(context.Context) error) *Task {
	ctx, cancel := context.WithCancel(context.Background())
	k := &Task{t: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		k.err = fn(ctx)
		close(k.done)
	}()
	t.Cleanup(func() {
		err := k.Stop()
		k.mu.Lock()
		defer k.mu.Unlock()
		if err != nil && !k.seen {
			t.Errorf("harness: a background task ended with: %v", err)
		}
	})
	return k
}

// Stop cancels the task and returns what it returned.
func (k *Task) Stop() error {
	k.cancel()
	select {
	case <-k.done:
	case <-time.After(stopWait):
		return fmt.Errorf("the task did not return within %v of being cancelled", stopWait)
	}
	return k.result()
}

// StopClean stops the task and fails the test unless it returned nil.
func (k *Task) StopClean() {
	k.t.Helper()
	if err := k.Stop(); err != nil {
		k.t.Fatalf("harness: the task ended with: %v", err)
	}
}

// Failure waits up to two minutes for the task to return on its own and
// returns its error; the test fails if it returns nil or does not return.
func (k *Task) Failure() error {
	k.t.Helper()
	select {
	case <-k.done:
	case <-time.After(2 * time.Minute):
		k.t.Fatal("harness: the task still runs; it should have failed")
	}
	err := k.result()
	if err == nil {
		k.t.Fatal("harness: the task returned without an error")
	}
	return err
}

// CheckRunning fails the test if the task returned.
func (k *Task) CheckRunning() {
	k.t.Helper()
	if k.Returned() {
		k.t.Fatalf("harness: the task returned: %v", k.result())
	}
}

// Returned reports whether the task returned.
func (k *Task) Returned() bool {
	select {
	case <-k.done:
		return true
	default:
		return false
	}
}

func (k *Task) result() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seen = true
	return k.err
}

// Pipeline is `flusso run` in this process (internal/run), a Task.
type Pipeline struct {
	*Task
	Options run.Options
	ready   chan *run.Pipeline
	stages  *run.Pipeline
}

// Options are the run options of an in-process pipeline of the deployment
// with cfg: its slot and prefix, the embedded NATS with its store in data
// unless NATSURL is set, HTTP surfaces on free ports with admin/secret as
// the control surface's credentials.
func (d *Deployment) Options(cfg *config.Config, data string) run.Options {
	return run.Options{
		Config: cfg, Slot: d.Slot(), Publication: "flusso", ManagePublication: true,
		QueueCapacity: 1000, LagPoll: time.Second, IndexPrefix: d.Prefix,
		DataDir: data, Version: "test",
		PublicAddress: testenv.FreeAddr(d.T), PrivateAddress: testenv.FreeAddr(d.T),
		AdminUser: "admin", AdminPassword: "secret",
	}
}

// Launch runs a pipeline with opts until Stop or the end of the test.
func Launch(t testing.TB, opts run.Options) *Pipeline {
	p := &Pipeline{Options: opts, ready: make(chan *run.Pipeline, 1)}
	p.Task = Go(t, func(ctx context.Context) error {
		return run.Start(ctx, opts, func(s *run.Pipeline) { p.ready <- s })
	})
	return p
}

// Stages waits until the pipeline assembled its stages and returns them.
func (p *Pipeline) Stages() *run.Pipeline {
	p.t.Helper()
	if p.stages != nil {
		return p.stages
	}
	select {
	case p.stages = <-p.ready:
	case <-p.done:
		select {
		case p.stages = <-p.ready:
		default:
			p.t.Fatalf("harness: the pipeline ended before it started: %v", p.result())
		}
	}
	return p.stages
}

// PublicURL is the base URL of the pipeline's public surface.
func (p *Pipeline) PublicURL() string { return "http://" + p.Options.PublicAddress }

// PrivateURL is the base URL of the pipeline's control surface.
func (p *Pipeline) PrivateURL() string { return "http://" + p.Options.PrivateAddress }
