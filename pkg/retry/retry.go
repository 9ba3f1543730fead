// Package retry waits out failures: a capped, jittered backoff and a Runner that
// retries an operation and keeps its stage's health record while it does. Every
// stage retries through it, so one policy shows on /status the same way.
package retry

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/redact"
)

// Bounds of Backoff.
const (
	Base = 100 * time.Millisecond
	Cap  = 30 * time.Second
)

// Backoff is the delay before retry number attempt+1 (attempt counts from
// 0): up to Base doubled per attempt, at most Cap, with full
// jitter: any delay up to that bound, so the writers a refusing cluster
// turned away together do not all come back together.
func Backoff(attempt int) time.Duration { return BackoffUpTo(attempt, Cap) }

// BackoffUpTo is Backoff with another cap.
func BackoffUpTo(attempt int, limit time.Duration) time.Duration {
	bound := limit
	if attempt < 20 { // past that the shift overflows; the cap applies long before
		bound = min(Base<<attempt, limit)
	}
	return rand.N(bound + 1)
}

// Sleep waits d, or less when ctx ends first (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Pause is a retry policy: after a failed attempt (attempt counts the
// failures before it) it says how long to wait before the next, or returns
// an error that ends the retries.
type Pause func(attempt int, err error) (time.Duration, error)

// Runner runs operations that wait out failures, and keeps their health
// record: degraded from a failed attempt until an operation succeeds while
// none is still retrying (concurrent operations of one stage would
// otherwise flip it back to ok while another still fails). A Runner is
// shared by pointer.
type Runner struct {
	Health *health.Stage // may be nil
	Log    *slog.Logger  // nil: slog.Default()

	mu       sync.Mutex
	retrying int // operations between a failed attempt and their end
}

// Do runs fn until it succeeds, pause ends the retries or ctx ends. Every
// failed attempt is reported to the health record and logged, with what
// (say "opensearch request") and how long until the next.
func (r *Runner) Do(ctx context.Context, what string, fn func() error, pause Pause) error {
	failing := false
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			r.ended(failing, true)
			return nil
		}
		if ctx.Err() != nil {
			r.ended(failing, false)
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		r.failed(!failing, err)
		failing = true
		d, stop := pause(attempt, err)
		if stop != nil {
			r.ended(true, false)
			return stop
		}
		r.log().Warn(what+" failed, retrying", "attempt", attempt+1, "in", d.Round(time.Millisecond), "err", redact.Error(err))
		if cerr := Sleep(ctx, d); cerr != nil {
			r.ended(true, false)
			return fmt.Errorf("%w (last error: %v)", cerr, err)
		}
	}
}

func (r *Runner) log() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}

// failed records a failed attempt; first says it starts an operation's run
// of failures.
func (r *Runner) failed(first bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if first {
		r.retrying++
	}
	r.Health.Fail(err)
}

// ended records the end of an operation that was failing or not, and
// whether it succeeded: the stage is ok again once a success leaves no
// operation retrying. One that gave up leaves the stage degraded.
func (r *Runner) ended(failing, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if failing {
		r.retrying--
	}
	if ok && r.retrying == 0 {
		r.Health.OK()
	}
}

// Delay is the pause between the failed attempts of a loop that retries by
// itself: Next is Backoff of the failures in a row so far, up to Limit (Cap when
// zero); Reset starts over after a success.
type Delay struct {
	Limit   time.Duration
	attempt int
}

// Next returns the pause before the next attempt and counts one more failure.
func (d *Delay) Next() time.Duration {
	limit := d.Limit
	if limit <= 0 {
		limit = Cap
	}
	n := BackoffUpTo(d.attempt, limit)
	d.attempt++
	return n
}

// Wait sleeps Next, or less when ctx ends first (then it returns ctx's error).
func (d *Delay) Wait(ctx context.Context) error { return Sleep(ctx, d.Next()) }

// Reset starts the pauses over from the shortest.
func (d *Delay) Reset() { d.attempt = 0 }
