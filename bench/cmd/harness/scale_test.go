package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/latencyproxy"
)

func backfillRun(assemblers int, docsPerSec float64) *scaleRes {
	return &scaleRes{Assemblers: assemblers, Writers: 1, Backfill: &backfillRes{DocsPerSec: docsPerSec}}
}

func TestFlattens(t *testing.T) {
	for _, tt := range []struct {
		name  string
		rates []float64 // docs/s at 1, 2, 3... assemblers
		want  int
	}{
		{"every assembler pays", []float64{1000, 1900, 2700, 3400}, 0},
		{"the third adds under 10%", []float64{1000, 1900, 2000, 2050}, 2},
		{"no gain from the second", []float64{1000, 1020, 990}, 1},
		{"a drop counts as flat", []float64{1000, 1800, 1500}, 2},
		{"a failed run is flat", []float64{1000, 1800, 0}, 2},
		{"one run", []float64{1000}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var runs []*scaleRes
			for i, r := range tt.rates {
				runs = append(runs, backfillRun(i+1, r))
			}
			if got := flattens(runs); got != tt.want {
				t.Errorf("flattens = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestFewestNearBest(t *testing.T) {
	for _, tt := range []struct {
		name  string
		rates []float64
		want  int
	}{
		{"the best", []float64{1000, 1900, 2700, 2400}, 3},
		{"fewer within 5% of the best", []float64{1000, 1900, 1960, 2000}, 2},
		{"none finished", []float64{0, 0}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var runs []*scaleRes
			for i, r := range tt.rates {
				runs = append(runs, backfillRun(i+1, r))
			}
			if got := fewestNearBest(runs); got != tt.want {
				t.Errorf("fewestNearBest = %d, want %d", got, tt.want)
			}
		})
	}
}

// The live figure counts when there is no backfill, and a live phase that
// did not catch up counts as nothing.
func TestThroughput(t *testing.T) {
	live := &scaleRes{Live: &liveResult{PipelineRate: 1234}}
	if got := live.throughput(); got != 1234 {
		t.Errorf("live throughput = %v, want 1234", got)
	}
	stuck := &scaleRes{Live: &liveResult{PipelineRate: -1}}
	if got := stuck.throughput(); got != 0 {
		t.Errorf("throughput of a live phase that did not catch up = %v, want 0", got)
	}
}

func TestBusyGroupsProcesses(t *testing.T) {
	cpu := map[string]usage{
		"assembler-1": {CPUSeconds: 4}, "assembler-2": {CPUSeconds: 6},
		"capture-writer": {CPUSeconds: 3}, "writer-2": {CPUSeconds: 1},
		"nats-server": {CPUSeconds: 2},
	}
	got := busy(cpu, map[string]float64{"postgres": 5, "opensearch": 8}, 10)
	if want := "1.00 / 0.40 / 0.20 / 0.50 / 0.80"; got != want {
		t.Errorf("busy = %q, want %q", got, want)
	}
}

func TestScalingTable(t *testing.T) {
	r := &results{Params: params{ScalePGLatencyMs: 2}, Scale: []*scaleRes{
		backfillRun(1, 1000), backfillRun(2, 1900), backfillRun(3, 2000),
		{Assemblers: 2, Writers: 2, Backfill: &backfillRes{Docs: 50000, DocsPerSec: 2100}, BackfillPGRequests: 2000},
	}}
	var b strings.Builder
	scalingTable(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, r)
	out := b.String()
	for _, want := range []string{"2 ms away", "| 2 | 1 | 1900 | 1.90 |", "| 2 | 2 | 2100 | 2.10 | — | 40 |", "Flattens after 2 assembler(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
}

// The messages of a phase are the sequences stored between the last
// samples at or before its start and its end (from empty streams when it
// starts the run), and the bytes per message are those of its largest
// backlog; samples outside the phase count for neither.
func TestPhaseFootprint(t *testing.T) {
	pt := func(t float64, cMsgs, cBytes, cSeq, dMsgs, dBytes, dSeq uint64) backlogPoint {
		return backlogPoint{T: t, ChangesStream: streamState{cMsgs, cBytes, cSeq}, DocsStream: streamState{dMsgs, dBytes, dSeq}}
	}
	pts := []backlogPoint{
		pt(1, 900, 900_000, 1000, 1, 100, 10), // before the live phase: a larger backlog that must not count for it
		pt(2, 0, 0, 1000, 0, 0, 10),
		pt(3, 50, 10_000, 1100, 4, 40_000, 20),
		pt(4, 80, 24_000, 1200, 2, 10_000, 30),
		pt(5, 700, 700_000, 2000, 90, 900_000, 90), // after
	}
	for _, tt := range []struct {
		name               string
		from, to           float64
		changeMsgs, docMsg uint64
		changeB, docB      float64
		perChange          float64
	}{
		{"live", 2.5, 4.5, 200, 20, 300, 10_000, 120},
		{"from the start", 0, 2.5, 1000, 10, 1000, 100, 2000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := phaseFootprint(tt.name, 500, pts, tt.from, tt.to)
			if f.ChangeMsgs != tt.changeMsgs || f.DocMsgs != tt.docMsg {
				t.Errorf("messages = %d changes, %d docs; want %d, %d", f.ChangeMsgs, f.DocMsgs, tt.changeMsgs, tt.docMsg)
			}
			if f.ChangeMsgBytes != tt.changeB || f.DocMsgBytes != tt.docB {
				t.Errorf("bytes per message = %v changes, %v docs; want %v, %v", f.ChangeMsgBytes, f.DocMsgBytes, tt.changeB, tt.docB)
			}
			if got := perUnit(f.ChangeMsgBytes, f.ChangeMsgs, f.Units); got != tt.perChange {
				t.Errorf("bytes per change = %v, want %v", got, tt.perChange)
			}
		})
	}
}

// With a latency proxy the assemblers' config reads Postgres through it,
// with the same credentials and parameters, while the others' reads it
// directly.
func TestAssemblersReadThroughTheProxy(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin, err := url.Parse("postgres://u:secret@127.0.0.1:54329/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	p, err := latencyproxy.Start(ctx, "127.0.0.1:0", admin.Host, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	repo, _ := filepath.Abs("../../..")
	h := &harness{pgURL: admin, pgProxy: p, osURL: "http://127.0.0.1:59200",
		schemaPath: filepath.Join(repo, "bench", "schemas", "users.schema.yml")}
	want := "postgres://u:secret@" + p.Addr() + "/bench_flusso?sslmode=disable"
	if got := h.proxiedURL("bench_flusso"); got != want {
		t.Fatalf("proxiedURL = %s, want %s", got, want)
	}
	dir := t.TempDir()
	direct, err := h.flussoConfig(dir, "bench_flusso")
	if err != nil {
		t.Fatal(err)
	}
	proxied, err := h.flussoConfigAt(dir, "assembler.toml", h.proxiedURL("bench_flusso"))
	if err != nil {
		t.Fatal(err)
	}
	for path, host := range map[string]string{direct: "127.0.0.1:54329", proxied: p.Addr()} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "@"+host+"/bench_flusso") {
			t.Errorf("%s does not read Postgres at %s:\n%s", filepath.Base(path), host, b)
		}
	}
}
