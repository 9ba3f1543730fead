package capture

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"
)

// How often a backfill reports: a log line, and a redraw of the bar.
const (
	progressLogEvery  = 5 * time.Second
	progressDrawEvery = 200 * time.Millisecond
)

// progress reports one backfill run: "backfill progress" log lines with
// rows, rate and ETA, and a bar redrawn in place when bar is set.
type progress struct {
	log       *slog.Logger
	bar       io.Writer // nil: no bar
	index     string
	start     time.Time
	startRows int64
	logged    time.Time
	drawn     time.Time
}

func newProgress(log *slog.Logger, bar io.Writer, index string, rows int64) *progress {
	now := time.Now()
	return &progress{log: log, bar: bar, index: index, start: now, startRows: rows, logged: now}
}

// update reports rows done of total (an estimate; rows may pass it).
func (p *progress) update(rows, total int64) {
	now := time.Now()
	rate := float64(rows-p.startRows) / now.Sub(p.start).Seconds()
	if now.Sub(p.logged) >= progressLogEvery {
		p.logged = now
		p.log.Info("backfill progress", "rows_done", rows, "rows_total", total, "rows_per_sec", int64(math.Round(rate)), "eta", eta(rows, total, rate))
	}
	if p.bar != nil && now.Sub(p.drawn) >= progressDrawEvery {
		p.drawn = now
		// The line ends with a carriage return, so a log line written
		// meanwhile overwrites the bar instead of following it.
		fmt.Fprintf(p.bar, "\r\x1b[K%s\r", barLine(p.index, rows, total, rate))
	}
}

// finish clears the bar.
func (p *progress) finish() {
	if p.bar != nil && !p.drawn.IsZero() {
		fmt.Fprint(p.bar, "\r\x1b[K")
	}
}

// eta is the time left at rate, "unknown" without a rate or total.
func eta(rows, total int64, rate float64) string {
	if rate <= 0 || total <= rows {
		return "unknown"
	}
	return (time.Duration(float64(total-rows)/rate) * time.Second).String()
}

// barLine renders "backfill users [=====>    ]  45% 90000/200000 rows 12000/s ETA 9s".
func barLine(index string, rows, total int64, rate float64) string {
	const width = 24
	total = max(total, rows)
	filled, percent := 0, 0
	if total > 0 {
		filled, percent = int(rows*width/total), int(rows*100/total)
	}
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	return fmt.Sprintf("backfill %s [%s] %3d%% %d/%d rows %d/s ETA %s", index, bar, percent, rows, total, int64(math.Round(rate)), eta(rows, total, rate))
}

// terminal returns stderr when it is a terminal, else nil.
func terminal() io.Writer {
	fi, err := os.Stderr.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return os.Stderr
}
