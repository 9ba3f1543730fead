package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// writeMedians reads the result files of repeated runs and writes, next to
// them in out, the figure of every target per run and its median: one run
// on two shared cores moves by several percent, so the reported figures are
// medians (make bench-3).
func writeMedians(paths []string, out string) error {
	var runs []*results
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("reading a run's results: %w", err)
		}
		var r results
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		runs = append(runs, &r)
	}
	if len(runs) == 0 {
		return fmt.Errorf("no result files to take the medians of")
	}
	md := medians(runs, paths)
	path := filepath.Join(out, time.Now().UTC().Format("20060102-150405")+"-medians.md")
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	fmt.Printf("\nmedians: %s\n", path)
	return nil
}

// medians renders the medians table of runs, read from paths.
func medians(runs []*results, paths []string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	first := runs[0]
	p("## Medians of %d runs — %d users\n\n", len(runs), first.Params.Users)
	p("%s, %d cores; flusso %s. Runs:", first.Env.CPU, first.Env.Cores, first.Env.FlussoCommit)
	for i, r := range runs {
		p(" %d. `%s` (%s, %.0f s, load %s)", i+1, paths[i], r.Started.Format("15:04"), r.Seconds, r.Env.LoadAvgAtStart)
	}
	p("\n\n| figure | goal |")
	for i := range runs {
		p(" run %d |", i+1)
	}
	p(" median | met |\n|---|---|")
	for range runs {
		p("---:|")
	}
	p("---:|---|\n")
	per := make([][]target, len(runs))
	for i, r := range runs {
		// Computed again from each run's measurements: the goals are the
		// code's, not the file's.
		per[i] = targets(r)
	}
	for k, t := range per[0] {
		var figures []float64
		p("| %s | %s |", t.Name, t.Goal)
		measured, judged := true, true
		for i := range runs {
			ti := per[i][k]
			p(" %s |", cmp.Or(ti.Value, "—"))
			measured = measured && ti.measured
			judged = judged && ti.Met != nil
			figures = append(figures, ti.Figure)
		}
		if !measured {
			p(" — | not measured in every run |\n")
			continue
		}
		m := median(figures)
		met := "not judged here: " + t.Note
		if judged {
			met = map[bool]string{true: "yes", false: "**no**"}[t.bound.meets(m)]
		}
		p(" **%s** | %s |\n", t.bound.unit(m), met)
	}
	for _, f := range []struct {
		name string
		of   func(*results) (float64, bool)
	}{
		{"flusso backfill docs/s", func(r *results) (float64, bool) { return docsPerSec(r.Backfill) }},
		{"raw bulk ceiling docs/s", func(r *results) (float64, bool) { return r.bestCeiling(), r.bestCeiling() > 0 }},
		{"Rust flusso backfill docs/s", func(r *results) (float64, bool) {
			if r.Rust == nil {
				return 0, false
			}
			return docsPerSec(r.Rust.Backfill)
		}},
		{"PGSync backfill docs/s", func(r *results) (float64, bool) {
			if r.PGSync == nil {
				return 0, false
			}
			return docsPerSec(r.PGSync.Backfill)
		}},
		{"flusso max live rate (p99 ≤ 2 s), changes/s", func(r *results) (float64, bool) { return rate(maxRate(r.Live)) }},
		{"flusso max live rate, realistic mix", func(r *results) (float64, bool) { return rate(maxRate(r.LiveMix)) }},
		{"Rust flusso max live rate", func(r *results) (float64, bool) { return rate(maxRate(rustLive(r))) }},
	} {
		var figures []float64
		p("| %s | |", f.name)
		for _, r := range runs {
			v, ok := f.of(r)
			if !ok {
				v = math.NaN()
			}
			figures = append(figures, v)
			p(" %s |", f0(v))
		}
		p(" **%s** | |\n", f0(median(figures)))
	}
	return b.String()
}

func docsPerSec(b *backfillRes) (float64, bool) {
	if b == nil || b.Docs == 0 {
		return 0, false
	}
	return b.DocsPerSec, true
}

func rate(r int, ran bool) (float64, bool) { return float64(r), ran }

// median is the middle figure (the mean of the two middle ones for an even
// count); NaN, a figure a run did not measure, when any is.
func median(figures []float64) float64 {
	if len(figures) == 0 || slices.ContainsFunc(figures, math.IsNaN) {
		return math.NaN()
	}
	s := slices.Clone(figures)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
