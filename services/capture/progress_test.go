package capture

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestBarLine(t *testing.T) {
	tests := []struct {
		name        string
		rows, total int64
		rate        float64
		want        string
	}{
		{"start", 0, 200, 0, "backfill users [>                       ]   0% 0/200 rows 0/s ETA unknown"},
		{"half", 100, 200, 10, "backfill users [============>           ]  50% 100/200 rows 10/s ETA 10s"},
		{"done", 200, 200, 10, "backfill users [========================] 100% 200/200 rows 10/s ETA unknown"},
		{"past the estimate", 300, 200, 10, "backfill users [========================] 100% 300/300 rows 10/s ETA unknown"},
		{"no estimate", 50, 0, 5, "backfill users [========================] 100% 50/50 rows 5/s ETA unknown"},
		{"long", 1, 7201, 1, "backfill users [>                       ]   0% 1/7201 rows 1/s ETA 2h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := barLine("users", tt.rows, tt.total, tt.rate); got != tt.want {
				t.Errorf("barLine = %q\nwant      %q", got, tt.want)
			}
		})
	}
}

// TestProgressDrawsInPlace checks the bar is redrawn on one line, no more
// often than progressDrawEvery, and cleared at the end.
func TestProgressDrawsInPlace(t *testing.T) {
	var bar, logs bytes.Buffer
	p := newProgress(slog.New(slog.NewTextHandler(&logs, nil)), &bar, "users", 0)
	p.update(10, 100)
	p.update(20, 100) // within progressDrawEvery of the first: not drawn
	if got := strings.Count(bar.String(), "backfill users"); got != 1 {
		t.Fatalf("drawn %d times, want 1: %q", got, bar.String())
	}
	if s := bar.String(); !strings.HasPrefix(s, "\r\x1b[K") || !strings.HasSuffix(s, "\r") || strings.Contains(s, "\n") {
		t.Fatalf("bar %q is not redrawn in place", s)
	}
	p.drawn = p.drawn.Add(-progressDrawEvery)
	p.update(30, 100)
	if !strings.Contains(bar.String(), " 30/100 rows") {
		t.Fatalf("bar not redrawn after %v: %q", progressDrawEvery, bar.String())
	}
	p.finish()
	if !strings.HasSuffix(bar.String(), "\r\x1b[K") {
		t.Fatalf("bar not cleared at the end: %q", bar.String())
	}
	if logs.Len() != 0 {
		t.Fatalf("logged before %v: %s", progressLogEvery, logs.String())
	}
	p.logged = p.logged.Add(-progressLogEvery)
	p.start = p.start.Add(-10 * time.Second)
	p.update(40, 100)
	for _, want := range []string{"backfill progress", "rows_done=40", "rows_total=100", "rows_per_sec=4", "eta=15s"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("progress log %q lacks %q", logs.String(), want)
		}
	}
}
