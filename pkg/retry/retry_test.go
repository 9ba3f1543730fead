package retry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flusso/flusso/pkg/health"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt int
		bound   time.Duration
		limit   time.Duration // BackoffUpTo's; 0: Backoff
	}{
		{0, Base, 0},
		{1, 2 * Base, 0},
		{5, 32 * Base, 0},
		{9, Cap, 0},
		{64, Cap, 0},
		{1 << 20, Cap, 0},
		{3, 800 * time.Millisecond, time.Second},
		{4, time.Second, time.Second},
	}
	for _, tt := range tests {
		backoff := Backoff
		if tt.limit > 0 {
			backoff = func(attempt int) time.Duration { return BackoffUpTo(attempt, tt.limit) }
		}
		var below time.Duration = -1
		for range 200 {
			d := backoff(tt.attempt)
			if d < 0 || d > tt.bound {
				t.Fatalf("attempt %d (cap %v): %v, want within [0, %v]", tt.attempt, tt.limit, d, tt.bound)
			}
			below = max(below, tt.bound-d)
		}
		// Full jitter: 200 draws all in the top half would be a constant
		// delay, not jitter (odds 2^-200).
		if below < tt.bound/2 {
			t.Errorf("attempt %d (cap %v): 200 delays all within %v of %v", tt.attempt, tt.limit, below, tt.bound)
		}
	}
}

// TestRunnerHealth checks the health record of concurrent operations: a
// stage is degraded from a failed attempt and stays so while any operation
// still retries, even as others succeed; it is ok after the next success.
func TestRunnerHealth(t *testing.T) {
	stage := health.NewRegistry().Stage("sink.primary")
	r := &Runner{Health: stage}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	failing, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		attempts := 0
		done <- r.Do(ctx, "test", func() error {
			attempts++
			if attempts == 1 {
				close(failing)
				return errors.New("status 429 from http://u:secret@os:9200")
			}
			<-release
			return nil
		}, func(int, error) (time.Duration, error) { return time.Millisecond, nil })
	}()
	<-failing
	// The failure is recorded before pause is asked; wait for the record.
	for stage.Report().State != health.Degraded && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if err := r.Do(ctx, "test", func() error { return nil }, nil); err != nil {
		t.Fatal(err)
	}
	got := stage.Report()
	if got.State != health.Degraded || got.LastError != "status 429 from http://u:xxxxx@os:9200" || got.Failures != 1 {
		t.Fatalf("while one operation retries and another succeeded: %+v", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := stage.Report(); got.State != health.OK {
		t.Fatalf("after the retried operation succeeded: %+v", got)
	}

	// One that gives up leaves the stage degraded until a success.
	stop := errors.New("refused")
	if err := r.Do(ctx, "test", func() error { return stop }, func(int, error) (time.Duration, error) { return 0, stop }); !errors.Is(err, stop) {
		t.Fatalf("Do = %v, want %v", err, stop)
	}
	if got := stage.Report(); got.State != health.Degraded {
		t.Fatalf("after an operation gave up: %+v", got)
	}
	if err := r.Do(ctx, "test", func() error { return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if got := stage.Report(); got.State != health.OK {
		t.Fatalf("after the next success: %+v", got)
	}

	// Shutdown ends the retries at once.
	cctx, ccancel := context.WithCancel(ctx)
	start := time.Now()
	go func() { time.Sleep(50 * time.Millisecond); ccancel() }()
	err := r.Do(cctx, "test", func() error { return errors.New("status 503") }, func(int, error) (time.Duration, error) { return time.Hour, nil })
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Fatalf("Do after cancel = %v after %v, want context.Canceled at once", err, time.Since(start))
	}
}

func TestDelay(t *testing.T) {
	d := Delay{Limit: 400 * time.Millisecond}
	for i, bound := range []time.Duration{Base, 2 * Base, 4 * Base, 400 * time.Millisecond, 400 * time.Millisecond} {
		if got := d.Next(); got < 0 || got > bound {
			t.Fatalf("pause %d = %v, want within [0, %v]", i, got, bound)
		}
	}
	d.Reset()
	if got := d.Next(); got > Base {
		t.Fatalf("after Reset: %v, want at most %v", got, Base)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (&Delay{Limit: time.Hour, attempt: 30}).Wait(ctx); err == nil {
		t.Fatal("Wait on an ended context returned nil")
	}
}
