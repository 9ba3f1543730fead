package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/flusso/flusso/internal/latencyproxy"
)

// scaleSweep runs the distributed mode with each assembler count of
// -scale and -writers writers, then with each other writer count of
// -scale-writers at the assembler count that did best. With
// -scale-pg-latency the assemblers of every run read Postgres through one
// latency proxy.
func (h *harness) scaleSweep(ctx context.Context) error {
	if len(h.scale) == 0 {
		return nil
	}
	if h.scalePGLatency > 0 {
		p, err := latencyproxy.Start(ctx, "127.0.0.1:0", h.pgURL.Host, h.scalePGLatency)
		if err != nil {
			return err
		}
		h.pgProxy = p
		defer func() {
			p.Close()
			h.pgProxy = nil
		}()
		h.logf("latency proxy on %s: Postgres at %s with %s each way for the assemblers", p.Addr(), h.pgURL.Host, h.scalePGLatency)
	}
	run := func(k, writers int) bool {
		sr, err := h.flussoDistributed(ctx, k, writers)
		if sr != nil {
			h.res.Scale = append(h.res.Scale, sr)
		}
		if err != nil {
			// The distributed mode may not work yet: say so and go on.
			msg := fmt.Sprintf("distributed run with %d assembler(s), %d writer(s): %v", k, writers, err)
			h.logf("%s", msg)
			h.res.Errors = append(h.res.Errors, msg)
			return false
		}
		return true
	}
	for _, k := range h.scale {
		if !run(k, h.writers) {
			return nil
		}
	}
	k := fewestNearBest(h.res.Scale)
	for _, w := range h.scaleWriters {
		if k == 0 || w == h.writers {
			continue
		}
		if !run(k, w) {
			return nil
		}
	}
	return nil
}

// proxiedURL is the URL of database db through the latency proxy.
func (h *harness) proxiedURL(db string) string {
	u := *h.pgURL
	u.Host = h.pgProxy.Addr()
	u.Path = "/" + db
	return u.String()
}

func (s *scaleRes) label() string {
	l := fmt.Sprintf("%d assemblers, %d writers", s.Assemblers, s.Writers)
	if s.PGLatencyMs > 0 {
		l += fmt.Sprintf(", Postgres +%gms each way", s.PGLatencyMs)
	}
	return l
}

// throughput is what a distributed run sustained end to end: backfilled
// documents per second when it seeded an index, else changes per second
// through the live phase; 0 when neither finished.
func (s *scaleRes) throughput() float64 {
	if s.Backfill != nil {
		return s.Backfill.DocsPerSec
	}
	if s.Live != nil && s.Live.PipelineRate > 0 {
		return s.Live.PipelineRate
	}
	return 0
}

// nearBest is how close to the best throughput counts as as good: closer
// than that is the machine's noise, not the process count.
const nearBest = 0.95

// fewestNearBest is the fewest assemblers whose throughput is within
// nearBest of the best run's (0 when no run finished).
func fewestNearBest(runs []*scaleRes) int {
	var top float64
	for _, s := range runs {
		top = max(top, s.throughput())
	}
	k := 0
	for _, s := range runs {
		if t := s.throughput(); t > 0 && t >= nearBest*top && (k == 0 || s.Assemblers < k) {
			k = s.Assemblers
		}
	}
	return k
}

// flatGain is the least gain over one process fewer that still counts as
// scaling.
const flatGain = 1.10

// flattens is the assembler count after which one more added less than
// flatGain, among runs of one writer count in ascending assembler order;
// 0 when every added assembler paid.
func flattens(runs []*scaleRes) int {
	for i := 1; i < len(runs); i++ {
		prev, cur := runs[i-1].throughput(), runs[i].throughput()
		if prev > 0 && cur < flatGain*prev {
			return runs[i-1].Assemblers
		}
	}
	return 0
}

// busy is the cores each process group kept busy over seconds: CPU
// seconds per wall second.
func busy(cpu map[string]usage, svc map[string]float64, seconds float64) string {
	if seconds <= 0 {
		return "—"
	}
	groups := map[string]float64{}
	for name, u := range cpu {
		switch {
		case strings.HasPrefix(name, "assembler-"):
			groups["assemblers"] += u.CPUSeconds
		case name == "nats-server":
			groups["nats"] += u.CPUSeconds
		default:
			groups["capture+writers"] += u.CPUSeconds
		}
	}
	parts := make([]string, 0, 5)
	for _, g := range []string{"assemblers", "capture+writers", "nats"} {
		parts = append(parts, fmt.Sprintf("%.2f", groups[g]/seconds))
	}
	for _, g := range []string{"postgres", "opensearch"} {
		parts = append(parts, fmt.Sprintf("%.2f", svc[g]/seconds))
	}
	return strings.Join(parts, " / ")
}

// scalingTable prints each distributed run's throughput as a multiple of
// the first run's (one assembler, -writers writers), the cores each
// process group used, and where adding assemblers stopped paying.
func scalingTable(p func(string, ...any), r *results) {
	if len(r.Scale) < 2 {
		return
	}
	where := "Postgres on loopback"
	if r.Params.ScalePGLatencyMs > 0 {
		where = fmt.Sprintf("the assemblers' Postgres %g ms away each way (latency proxy)", r.Params.ScalePGLatencyMs)
	}
	p("### Scaling factor (%s)\n\n", where)
	p("Throughput ÷ that of the first run. Cores busy = CPU-s per wall second of: assemblers / capture+writers / nats-server / Postgres / OpenSearch. Round trips = the assemblers' requests through the latency proxy per 1,000 documents or changes.\n\n")
	p("| assemblers | writers | backfill docs/s | × | cores busy (backfill) | round trips / 1k docs | live end-to-end/s | × | p50 / p99 ms | cores busy (live) | round trips / 1k changes | load avg |\n")
	p("|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|\n")
	first := r.Scale[0]
	factor := func(v, base float64) string {
		if v <= 0 || base <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", v/base)
	}
	for _, s := range r.Scale {
		bf, bx, bb, e2e, lx, lat, lb, load := "—", "—", "—", "—", "—", "—", "—", "—"
		brt, lrt := "—", "—"
		if b := s.Backfill; b != nil {
			bf, bb = f0(b.DocsPerSec), busy(b.CPU, b.ServiceCPU, b.Seconds)
			if first.Backfill != nil {
				bx = factor(b.DocsPerSec, first.Backfill.DocsPerSec)
			}
			load = fmt.Sprintf("%.1f", b.LoadAvg)
			if s.BackfillPGRequests > 0 {
				brt = fmt.Sprintf("%.0f", float64(s.BackfillPGRequests)/float64(max(b.Docs, 1))*1000)
			}
		}
		if l := s.Live; l != nil {
			e2e, lat = f0(l.PipelineRate), f0(l.P50ms)+" / "+f0(l.P99ms)
			if first.Live != nil {
				lx = factor(l.PipelineRate, first.Live.PipelineRate)
			}
			if l.DrainSeconds >= 0 {
				lb = busy(l.CPU, l.ServiceCPU, l.LoadSeconds+l.DrainSeconds)
			}
			load = fmt.Sprintf("%.1f", l.LoadAvg)
			if s.LivePGRequests > 0 {
				lrt = fmt.Sprintf("%.0f", float64(s.LivePGRequests)/float64(max(l.Changes, 1))*1000)
			}
		}
		p("| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Assemblers, s.Writers, bf, bx, bb, brt, e2e, lx, lat, lb, lrt, load)
	}
	var sweep []*scaleRes
	for _, s := range r.Scale {
		if s.Writers == first.Writers {
			sweep = append(sweep, s)
		}
	}
	if k := flattens(sweep); k > 0 {
		p("\nFlattens after %d assembler(s): one more added less than %.0f%%.\n", k, (flatGain-1)*100)
	} else if len(sweep) > 1 {
		p("\nEvery added assembler (up to %d) added at least %.0f%%.\n", sweep[len(sweep)-1].Assemblers, (flatGain-1)*100)
	}
	p("\n")
}
