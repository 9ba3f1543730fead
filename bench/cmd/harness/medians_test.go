package main

import (
	"math"
	"strings"
	"testing"

	"github.com/flusso/flusso/bench/ceiling"
)

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		name    string
		figures []float64
		want    float64
	}{
		{"the middle of three", []float64{0.66, 0.61, 0.72}, 0.66},
		{"the mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"one", []float64{7}, 7},
		{"an endless figure counts as the largest", []float64{1900, math.Inf(1), 2100}, 2100},
		{"a run that did not measure", []float64{1, math.NaN(), 3}, math.NaN()},
		{"none", nil, math.NaN()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := median(tt.figures)
			if got != tt.want && !(math.IsNaN(got) && math.IsNaN(tt.want)) {
				t.Errorf("median(%v) = %v, want %v", tt.figures, got, tt.want)
			}
		})
	}
}

// TestMedians judges a goal on the median of the runs, not on any one run:
// two of three runs below 70% of the ceiling miss it, whatever the third.
func TestMedians(t *testing.T) {
	run := func(docsPerSec float64) *results {
		return &results{
			Params:   params{Users: 50000},
			Ceiling:  []bulkRun{{BulkResult: ceiling.BulkResult{Docs: 50000, DocsPerSec: 5000}}},
			Backfill: &backfillRes{Docs: 50000, DocsPerSec: docsPerSec},
		}
	}
	for _, tt := range []struct {
		name string
		runs []float64
		want string
	}{
		{"two of three above", []float64{3400, 3600, 3550}, "| **71%** | yes |"},
		{"two of three below", []float64{3400, 3600, 3450}, "| **69%** | **no** |"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var runs []*results
			for _, v := range tt.runs {
				runs = append(runs, run(v))
			}
			md := medians(runs, []string{"a.json", "b.json", "c.json"})
			var line string
			for l := range strings.Lines(md) {
				if strings.HasPrefix(l, "| backfill vs raw bulk ceiling |") {
					line = l
				}
			}
			if !strings.Contains(line, tt.want) {
				t.Errorf("the ceiling line is %q, want it to hold %q", line, tt.want)
			}
		})
	}
}
