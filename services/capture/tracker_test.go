package capture

import (
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/flusso/flusso/pkg/broker"
)

func TestTrackerConfirmsOnlyDurableCommits(t *testing.T) {
	type step struct {
		commit        *mark         // a settled transaction
		idle          pglogrepl.LSN // a keepalive position
		open          bool          // a transaction begins
		changes, docs broker.Progress
		want          pglogrepl.LSN
	}
	tests := []struct {
		name  string
		steps []step
	}{{
		name: "waits for the writers, not just the assemblers",
		steps: []step{
			{commit: &mark{end: 100, lastSeq: 1}},
			// assemblers done with change 1; docs 1..5 stored, writers at 3
			{changes: broker.Progress{Done: 1}, docs: broker.Progress{Done: 3, Last: 5}, want: 0},
			// writers reach 5: the sample above is durable
			{changes: broker.Progress{Done: 1}, docs: broker.Progress{Done: 5, Last: 7}, want: 100},
		},
	}, {
		name: "never confirms past an unprocessed transaction",
		steps: []step{
			{commit: &mark{end: 100, lastSeq: 2}},
			{commit: &mark{end: 200, lastSeq: 4}},
			{changes: broker.Progress{Done: 3}, docs: broker.Progress{Done: 9, Last: 9}, want: 100},
			{changes: broker.Progress{Done: 4}, docs: broker.Progress{Done: 9, Last: 9}, want: 200},
		},
	}, {
		name: "a transaction that published nothing follows its predecessor",
		steps: []step{
			{commit: &mark{end: 100, lastSeq: 2}},
			{commit: &mark{end: 150, lastSeq: 0}},
			{changes: broker.Progress{Done: 1}, docs: broker.Progress{Done: 0, Last: 0}, want: 0},
			{changes: broker.Progress{Done: 2}, docs: broker.Progress{Done: 0, Last: 0}, want: 150},
		},
	}, {
		name: "idle positions only when nothing is outstanding",
		steps: []step{
			{idle: 50, changes: broker.Progress{}, docs: broker.Progress{}, want: 50},
			{open: true},
			{idle: 80, changes: broker.Progress{}, docs: broker.Progress{}, want: 50},
			{commit: &mark{end: 90, lastSeq: 1}},
			{idle: 120, changes: broker.Progress{Done: 0}, docs: broker.Progress{}, want: 50},
			{changes: broker.Progress{Done: 1}, docs: broker.Progress{}, want: 90},
			{idle: 130, changes: broker.Progress{Done: 1}, docs: broker.Progress{}, want: 130},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(0)
			open := false
			for i, s := range tt.steps {
				switch {
				case s.open:
					tr.Open()
					open = true
					continue
				case s.commit != nil:
					if !open {
						tr.Open()
					}
					tr.Commit(s.commit.end, s.commit.lastSeq)
					open = false
					continue
				case s.idle != 0:
					tr.Idle(s.idle)
				}
				if got := tr.Advance(s.changes, s.docs); got != s.want {
					t.Fatalf("step %d: confirmed %s, want %s", i, got, s.want)
				}
			}
		})
	}
}

// TestTrackerConfirmsUnderLagLongerThanItsSamples keeps the writers a
// steady 80 samples (16 s at 200 ms) behind, longer than the tracker keeps
// samples at full rate: the slot must still follow what is durable, never
// run ahead of it, and the samples stay bounded.
func TestTrackerConfirmsUnderLagLongerThanItsSamples(t *testing.T) {
	const lag, steps = 80, 1000
	tr := newTracker(0)
	end := func(txn int) pglogrepl.LSN { return pglogrepl.LSN(100 * (txn + 1)) }
	worst := 0 // samples between the last durable transaction and the last confirmed
	for k := range steps {
		// Transaction k publishes change k+1, which the assemblers turn
		// into document k+1 at once; the writers are lag documents behind.
		tr.Open()
		tr.Commit(end(k), uint64(k+1))
		durable := k + 1 - lag // documents written, so transactions durable
		got := tr.Advance(broker.Progress{Done: uint64(k + 1)}, broker.Progress{Done: uint64(max(durable, 0)), Last: uint64(k + 1)})
		if durable > 0 && got > end(durable-1) {
			t.Fatalf("step %d: confirmed %s past the last durable transaction's end %s", k, got, end(durable-1))
		}
		if k >= 2*lag && got < end(k-2*lag) {
			t.Fatalf("step %d: confirmed %s, more than %d samples behind what is durable (%s)", k, got, lag, end(durable-1))
		}
		if n := len(tr.samples); n > maxSamples+1 {
			t.Fatalf("step %d: %d samples kept", k, n)
		}
		if durable > 0 {
			worst = max(worst, durable-int(got/100))
		}
	}
	t.Logf("writers %d samples behind: the slot trailed what was durable by at most %d samples", lag, worst)
}
