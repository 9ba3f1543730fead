package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/faultproxy"
)

// injectWait bounds how long the sink takes to run into one counted fault:
// a run of failures backs off exponentially up to 30 s between attempts.
var injectWait = scale(3*time.Minute, 10*time.Minute)

// TestRefusals: OpenSearch answers bulks with bursts of 429 (more in a row
// than max_retries, with Retry-After) and then 503s. The process rides
// them out, /status shows the sink degraded with the last error while it
// fails and ok after, and nothing is lost.
func TestRefusals(t *testing.T) {
	const maxRetries = 2
	r := newRig(t, setup{MaxRetries: maxRetries})
	r.start()
	rp := &report{scenario: "refusals"}
	w := r.startWorkload(10 * time.Millisecond)
	o := r.observe()

	out, during := r.rideOut(rp, w, o, "refusals",
		faultproxy.Fault{Status: 429, RetryAfter: time.Second, Count: scale(8, 40)},
		faultproxy.Fault{Status: 503, Count: scale(4, 12)},
		faultproxy.Fault{Status: 429, RetryAfter: 2 * time.Second, Count: scale(3, 10)},
		faultproxy.Fault{Status: 503, Count: scale(maxRetries+2, 12)},
	)
	r.expectDegraded(during, sinkStage, "429")
	// The last refusal stays as last_error once the stage is ok again.
	if ok := r.expectStage(sinkStage, "ok", time.Minute); !containsAll(ok.LastError, "503") {
		t.Errorf("expected the recovered sink's last_error to keep the last refusal (503); it is %q", ok.LastError)
	}
	rp.log(r, out)
}

// TestResetsAndLatency: bulks are slowed by latency spikes, then their
// connections are reset, more times in a row than max_retries. Same end
// state: the process runs on, the sink shows degraded while the resets
// last and ok after, nothing is lost.
func TestResetsAndLatency(t *testing.T) {
	const maxRetries = 2
	r := newRig(t, setup{MaxRetries: maxRetries})
	r.start()
	rp := &report{scenario: "resets and latency"}
	w := r.startWorkload(10 * time.Millisecond)
	o := r.observe()

	spike := faultproxy.Fault{Latency: scale(3*time.Second, 8*time.Second)}
	hold := scale(10*time.Second, 60*time.Second)
	rp.inject(fmt.Sprintf("%s for %v", spike, hold))
	r.hold(spike, hold)

	out, during := r.rideOut(rp, w, o, "resets",
		faultproxy.Fault{Reset: true, Count: scale(maxRetries+6, 20)},
		// Delayed resets keep the sink failing for seconds on end, long
		// enough for /status (cached for a second) to be sampled.
		faultproxy.Fault{Reset: true, Latency: time.Second, Count: scale(maxRetries+2, 10)},
	)
	r.expectDegraded(during, sinkStage)
	r.expectStage(sinkStage, "ok", time.Minute)
	rp.log(r, out)
}

// rideOut injects faults in turn, each until the sink has run into all of
// it, then clears the proxy and finishes the run (see finish). It reports
// the recovery, the slot's progress during the faults (named by what) and
// the writes, and returns the outcome and the samples taken during the
// faults.
func (r *rig) rideOut(rp *report, w *workload, o *observer, what string, faults ...faultproxy.Fault) (outcome, []sample) {
	r.t.Helper()
	from := time.Now()
	for _, f := range faults {
		rp.inject(f.String())
		r.inject(f, injectWait)
	}
	cleared := time.Now()
	r.proxy.Clear()
	out := r.finish(w)
	during := between(o.stop(), from, cleared)
	rp.saw = seen(during)
	maxLag, advances := slotFigures(during)
	rp.figure("recovery %v from the last fault to the index equal", out.converged.Round(100*time.Millisecond))
	rp.figure("slot advanced %d× during %v of %s, max slot lag %s", advances, cleared.Sub(from).Round(time.Second), what, mib(maxLag))
	rp.figure("writes %d", w.writes.Load())
	return out, during
}

// TestLongLag: every bulk takes 16 s for 40 s under a steady workload, so
// end-to-end lag stays above the 12.8 s the capture's tracker once kept
// samples for. confirmed_flush_lsn must keep advancing during the fault
// as documents become durable, and catch up to the end after.
func TestLongLag(t *testing.T) {
	r := newRig(t, setup{})
	r.start()
	rp := &report{scenario: "long lag"}
	w := r.startWorkload(50 * time.Millisecond)
	o := r.observe()

	latency := 16 * time.Second
	window := scale(40*time.Second, 120*time.Second)
	rp.inject(fmt.Sprintf("latency %v on every bulk for %v", latency, window))
	from := time.Now()
	r.hold(faultproxy.Fault{Latency: latency}, window)
	cleared := time.Now()
	r.proxy.Clear()
	out := r.finish(w)
	samples := o.stop()
	during := between(samples, from, cleared)
	rp.saw = seen(during)

	// Bulks sent before the fault may land in its first seconds; only
	// what is confirmed after one full latency proves the point.
	if n := r.proxy.Counts().Delayed; n < 2 {
		t.Fatalf("expected several bulks delayed by %v during the fault; the proxy delayed %d", latency, n)
	}
	late := between(samples, from.Add(latency+time.Second), cleared)
	maxLag, advances := slotFigures(late)
	want := max(1, int((window-latency)/(2*latency)))
	if advances < want {
		t.Errorf("expected confirmed_flush_lsn to advance at least %d× between %v into the fault and its end (documents became durable every %v); it advanced %d×: %s",
			want, latency+time.Second, latency, advances, lsnTrail(late))
	}
	allLag, allAdvances := slotFigures(during)
	rp.figure("slot advanced %d× during the fault (%d× after the first %v), max slot lag %s (%s after the first bulk)",
		allAdvances, advances, latency, mib(allLag), mib(maxLag))
	rp.figure("catch-up %v from the end of the fault to the slot at the end", out.caughtUp.Round(100*time.Millisecond))
	rp.figure("writes %d", w.writes.Load())
	rp.log(r, out)
}

// lsnTrail lists the confirmed positions of samples, one per second.
func lsnTrail(samples []sample) string {
	out := ""
	for i, s := range samples {
		if i > 0 {
			out += " "
		}
		out += s.confirmed.String()
	}
	return out
}
