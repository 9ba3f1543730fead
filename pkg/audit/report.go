package audit

import (
	"fmt"
	"io"
	"time"
)

// WriteText prints the report for a person: a line per index and sink,
// then the first drifted documents with their differing fields.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("audit at snapshot %s, %s\n", r.SnapshotLSN, r.Elapsed.Round(time.Millisecond))
	total, drifted := 0, 0
	for _, ix := range r.Indexes {
		if ix.Skipped != "" {
			ew.printf("index %s in sink %s: skipped: %s\n", ix.Index, ix.Sink, ix.Skipped)
			continue
		}
		ew.printf("index %s in sink %s (%s): compared %d, equal %d, missing %d, extra %d, stale %d, rechecked %d, unsettled %d",
			ix.Index, ix.Sink, ix.Served, ix.Compared, ix.Equal, ix.Missing, ix.Extra, ix.Stale, ix.Rechecked, ix.Unsettled)
		if ix.Unbuildable > 0 {
			ew.printf(", unbuildable %d", ix.Unbuildable)
		}
		ew.printf("\n")
		n := ix.Missing + ix.Extra + ix.Stale
		if n > 0 {
			total += n
			drifted++
		}
		for _, d := range ix.Drift {
			ew.printf("  %-7s %s", d.Kind, d.ID)
			if d.Version != 0 {
				ew.printf(" (stored version %d)", d.Version)
			}
			ew.printf("\n")
			for _, f := range d.Diff {
				path := f.Path
				if path == "" {
					path = "(document)"
				}
				ew.printf("    %s: want %s, got %s\n", path, orAbsent(f.Want), orAbsent(f.Got))
			}
		}
		if more := n - len(ix.Drift); more > 0 {
			ew.printf("  … and %d more\n", more)
		}
	}
	if total == 0 {
		ew.printf("no drift\n")
	} else {
		ew.printf("drift: %d documents in %d index(es)\n", total, drifted)
	}
	return ew.err
}

func orAbsent(v []byte) string {
	if v == nil {
		return "(absent)"
	}
	return string(v)
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
