package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestMaxRate(t *testing.T) {
	step := func(rate int, p99 float64, lost int) *liveResult {
		return &liveResult{OfferedRate: rate, P99ms: p99, Lost: lost}
	}
	skipped := func(rate int) *liveResult {
		return &liveResult{OfferedRate: rate, Skipped: "skipped: p99 above 2s", P99ms: -1}
	}
	for _, tt := range []struct {
		name string
		ramp []*liveResult
		want int
		ran  bool
	}{
		{"the step before the first above 2 s", []*liveResult{step(250, 900, 0), step(500, 1999, 0), step(1000, 2400, 0), skipped(2000)}, 500, true},
		{"exactly 2 s is within", []*liveResult{step(250, 2000, 0), step(500, 2001, 0)}, 250, true},
		{"a probe never visible is not within", []*liveResult{step(250, 800, 0), step(500, 900, 1)}, 250, true},
		{"an unknown p99 is not within", []*liveResult{step(250, -1, 3)}, 0, true},
		{"the first step above", []*liveResult{step(250, 3000, 0), skipped(500)}, 0, true},
		{"every step within", []*liveResult{step(250, 100, 0), step(500, 200, 0)}, 500, true},
		{"not run", []*liveResult{skipped(250)}, 0, false},
		{"no ramp", nil, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got, ran := maxRate(tt.ramp); got != tt.want || ran != tt.ran {
				t.Errorf("maxRate = %d, %v; want %d, %v", got, ran, tt.want, tt.ran)
			}
		})
	}
}

func TestReadAvoided(t *testing.T) {
	for _, tt := range []struct {
		name    string
		metrics string
		want    avoided
	}{
		{"a build counting unchanged documents", "# TYPE flusso_documents_unchanged_total counter\nflusso_documents_unchanged_total{index=\"users\"} 7\nflusso_documents_unchanged_total{index=\"orders\"} 2\nflusso_batches_total 40\n",
			avoided{ChangesSkipped: 12, WritesSkipped: 9, WritesReported: true}},
		{"a build without", "flusso_batches_total 40\nflusso_documents_unchanged_totally 3\n", avoided{ChangesSkipped: 12}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/status":
					fmt.Fprint(w, `{"changes_skipped": {"public.profiles": 10, "public.orders": 2}}`)
				case "/metrics":
					fmt.Fprint(w, tt.metrics)
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			got, err := readAvoided(context.Background(), srv.URL)
			if err != nil || *got != tt.want {
				t.Errorf("readAvoided = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
