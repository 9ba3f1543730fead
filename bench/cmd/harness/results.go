package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/flusso/flusso/bench/ceiling"
	"github.com/flusso/flusso/bench/datagen"
)

// results is the JSON result file.
type results struct {
	Started  time.Time   `json:"started"`
	Finished time.Time   `json:"finished"`
	Seconds  float64     `json:"seconds"`
	Env      environment `json:"environment"`
	Params   params      `json:"params"`

	Dataset  *dataset      `json:"dataset,omitempty"`
	Build    *buildRun     `json:"postgres_build,omitempty"`
	Ceiling  []bulkRun     `json:"bulk_ceiling,omitempty"`
	Backfill *backfillRes  `json:"flusso_backfill,omitempty"`
	Live     []*liveResult `json:"flusso_live,omitempty"`
	LiveMix  []*liveResult `json:"flusso_live_mix,omitempty"`
	// Wrong compares flusso's documents after its live phases with a
	// fresh build from Postgres.
	Wrong   *wrongDocs    `json:"flusso_wrong_documents,omitempty"`
	Rust    *rustResult   `json:"rust_flusso,omitempty"`
	Scale   []*scaleRes   `json:"flusso_distributed,omitempty"`
	PGSync  *pgsyncResult `json:"pgsync,omitempty"`
	Targets []target      `json:"targets"`
	Errors  []string      `json:"errors,omitempty"`
}

type buildRun struct {
	ceiling.BuildResult
	ServiceCPU map[string]float64 `json:"service_cpu_seconds"`
}

type bulkRun struct {
	ceiling.BulkResult
	ServiceCPU map[string]float64 `json:"service_cpu_seconds"`
}

type environment struct {
	CPU              string            `json:"cpu"`
	Cores            int               `json:"cores"`
	MemoryGB         float64           `json:"memory_gb"`
	OS               string            `json:"os"`
	GoVersion        string            `json:"go"`
	Postgres         string            `json:"postgres"`
	PostgresSettings map[string]string `json:"postgres_settings"`
	OpenSearch       string            `json:"opensearch"`
	NATS             string            `json:"nats_server"`
	FlussoCommit     string            `json:"flusso_commit"`
	LoadAvgAtStart   string            `json:"loadavg_at_start"`
}

type params struct {
	Users       int    `json:"users"`
	Seed        uint64 `json:"seed"`
	Rates       []int  `json:"rates"`
	PGSyncRates []int  `json:"pgsync_rates"`
	RustRates   []int  `json:"rust_flusso_rates"`
	Scale       []int  `json:"assembler_processes"`
	ScaleRate   int    `json:"distributed_live_rate"`
	// ScaleWriters, ScaleBackfill and ScalePGLatencyMs are the other
	// choices of the distributed runs (-scale-writers, -scale-backfill,
	// -scale-pg-latency).
	ScaleWriters     []int   `json:"writer_processes,omitempty"`
	ScaleBackfill    bool    `json:"distributed_backfill,omitempty"`
	ScalePGLatencyMs float64 `json:"assembler_pg_latency_ms,omitempty"`
	LiveSeconds      int     `json:"live_seconds"`
	TxSize           int     `json:"changes_per_transaction"`
}

type dataset struct {
	Rows         int64            `json:"rows"`
	Tables       map[string]int64 `json:"tables"`
	CopySeconds  float64          `json:"copy_seconds"`
	IndexSeconds float64          `json:"index_seconds"`
	SizeMB       float64          `json:"size_mb"`
}

type target struct {
	Name  string `json:"name"`
	Goal  string `json:"goal"`
	Value string `json:"value"`
	Met   *bool  `json:"met"` // nil: not measured in this run, or not for this data set
	Note  string `json:"note,omitempty"`
	// Figure is the number the goal bounds (a ratio, ms, MB); measured says
	// there is one. The medians of repeated runs are taken of it.
	Figure   float64 `json:"-"`
	measured bool
	bound    bound
}

// bound is a goal as a number: at least or at most limit; unit writes a
// figure the way the goal is written.
type bound struct {
	limit   float64
	atLeast bool
	unit    func(float64) string
}

// meets reports whether figure meets the bound.
func (b bound) meets(figure float64) bool {
	if b.atLeast {
		return figure >= b.limit
	}
	return figure <= b.limit
}

// set records the figure, its description and whether it meets the goal.
func (t *target) set(figure float64, value string) {
	t.Figure, t.measured, t.Value = figure, true, value
	t.Met = ptr(t.bound.meets(figure))
}

// bestCeiling is the fastest fill of an empty index: the backfill's
// ceiling.
func (r *results) bestCeiling() float64 {
	var best float64
	for _, c := range r.Ceiling {
		if !c.Overwrite {
			best = max(best, c.DocsPerSec)
		}
	}
	return best
}

// overwriteCeiling is the fastest overwrite of existing documents: the
// most document updates per second live changes can reach OpenSearch.
func (r *results) overwriteCeiling() float64 {
	var best float64
	for _, c := range r.Ceiling {
		if c.Overwrite {
			best = max(best, c.DocsPerSec)
		}
	}
	return best
}

func ptr(b bool) *bool { return &b }

// rawOpenSearchPer1k is OpenSearch's CPU per 1,000 documents of the fastest
// raw fill, 0 when unknown.
func (r *results) rawOpenSearchPer1k() float64 {
	var best bulkRun
	for _, c := range r.Ceiling {
		if !c.Overwrite && c.DocsPerSec > best.DocsPerSec {
			best = c
		}
	}
	if best.Docs == 0 {
		return 0
	}
	return best.ServiceCPU["opensearch"] / float64(best.Docs) * 1000
}

// maxRateP99 is the latency bound of a sustained rate: the max rate is the
// highest rate of a ramp whose p99 stayed within it.
const maxRateP99 = 2 * time.Second

// withinP99 reports whether a phase ran, every probe showed and p99 stayed
// within maxRateP99.
func (l *liveResult) withinP99() bool {
	return l.Skipped == "" && l.Lost == 0 && l.P99ms >= 0 && l.P99ms <= float64(maxRateP99.Milliseconds())
}

// maxRate is the highest offered rate of a ramp within maxRateP99, 0 when
// none was; ok is false when the ramp did not run.
func maxRate(ramp []*liveResult) (rate int, ok bool) {
	for _, l := range ramp {
		if l.Skipped != "" {
			continue
		}
		ok = true
		if l.withinP99() {
			rate = max(rate, l.OfferedRate)
		}
	}
	return rate, ok
}

// Units of the goals.
var (
	percent = func(v float64) string { return fmt.Sprintf("%.0f%%", v*100) }
	times   = func(v float64) string { return fmt.Sprintf("%.2fx", v) }
	millis  = func(v float64) string { return f0(v) + " ms" }
	cpu     = func(v float64) string { return fmt.Sprintf("%.3f CPU-s", v) }
	mb      = func(v float64) string { return fmt.Sprintf("%.0f MB", v) }
)

func targets(r *results) []target {
	var out []target
	t := target{Name: "backfill vs raw bulk ceiling", Goal: ">= 70%", bound: bound{0.7, true, percent}}
	if c := r.bestCeiling(); r.Backfill != nil && c > 0 {
		ratio := r.Backfill.DocsPerSec / c
		t.set(ratio, fmt.Sprintf("%.0f%% (%.0f of %.0f docs/s)", ratio*100, r.Backfill.DocsPerSec, c))
	}
	out = append(out, t)

	t = target{Name: "live p99 commit-to-searchable at 2,000 changes/s", Goal: "<= 2 s", bound: bound{2000, false, millis}}
	for _, l := range r.Live {
		if l.OfferedRate != 2000 {
			continue
		}
		if l.Skipped != "" {
			t.set(math.Inf(1), "not run: the ramp "+strings.TrimPrefix(l.Skipped, "skipped: "))
			continue
		}
		p99, figure := fmt.Sprintf("%.0f ms", l.P99ms), l.P99ms
		if l.P99ms < 0 || l.Lost > 0 {
			figure = math.Inf(1)
		}
		if l.P99ms < 0 {
			p99 = "not visible within the drain limit"
		}
		t.set(figure, fmt.Sprintf("%s (offered %d, achieved %.0f changes/s, %d of %d probes not visible)", p99, l.OfferedRate, l.AchievedRate, l.Lost, l.Probes))
	}
	out = append(out, t)

	t = target{Name: "flusso's own CPU per 1k backfilled documents", Goal: "<= 0.08 CPU-s", bound: bound{0.08, false, cpu}}
	if r.Backfill != nil && r.Backfill.Docs > 0 {
		t.set(r.Backfill.CPUPer1kDocs, cpu(r.Backfill.CPUPer1kDocs))
	}
	out = append(out, t)

	t = target{Name: "OpenSearch CPU per backfilled document vs the raw bulk loop", Goal: "<= 1.05x", bound: bound{1.05, false, times}}
	if raw := r.rawOpenSearchPer1k(); r.Backfill != nil && r.Backfill.Docs > 0 && raw > 0 {
		ratio := r.Backfill.ServiceCPU["opensearch"] / float64(r.Backfill.Docs) * 1000 / raw
		t.set(ratio, fmt.Sprintf("%.2fx (%.2f vs %.2f CPU-s per 1k docs)", ratio, ratio*raw, raw))
	}
	out = append(out, t)

	t = target{Name: "backfill vs PGSync", Goal: ">= 5x", bound: bound{5, true, times}}
	if r.PGSync != nil && r.PGSync.Backfill != nil && r.Backfill != nil && r.PGSync.Backfill.DocsPerSec > 0 {
		ratio := r.Backfill.DocsPerSec / r.PGSync.Backfill.DocsPerSec
		t.set(ratio, fmt.Sprintf("%.1fx (%.0f vs %.0f docs/s)", ratio, r.Backfill.DocsPerSec, r.PGSync.Backfill.DocsPerSec))
	}
	out = append(out, t)

	t = target{Name: "backfill vs the Rust flusso", Goal: ">= 1.5x", bound: bound{1.5, true, times}}
	if r.Rust != nil && r.Rust.Backfill != nil && r.Backfill != nil && r.Rust.Backfill.DocsPerSec > 0 {
		ratio := r.Backfill.DocsPerSec / r.Rust.Backfill.DocsPerSec
		t.set(ratio, fmt.Sprintf("%.1fx (%.0f vs %.0f docs/s)", ratio, r.Backfill.DocsPerSec, r.Rust.Backfill.DocsPerSec))
	}
	out = append(out, t)

	flusso, ran := maxRate(r.Live)
	t = target{Name: "max live rate at p99 <= 2 s vs the Rust flusso", Goal: ">= 1.5x", bound: bound{1.5, true, times}}
	if rust, ok := maxRate(rustLive(r)); ran && ok {
		ratio := math.Inf(1) // the Rust flusso kept up with no rate of its ramp
		if rust > 0 {
			ratio = float64(flusso) / float64(rust)
		}
		if flusso == 0 && rust == 0 {
			ratio = 0
		}
		t.set(ratio, fmt.Sprintf("%d vs %d changes/s", flusso, rust))
	}
	out = append(out, t)

	t = target{Name: "max live rate at p99 <= 2 s vs the raw overwrite ceiling", Goal: ">= 0.5x", bound: bound{0.5, true, times}}
	if ow := r.overwriteCeiling(); ran && ow > 0 {
		t.set(float64(flusso)/ow, fmt.Sprintf("%.2fx (%d of %.0f docs/s)", float64(flusso)/ow, flusso, ow))
	}
	out = append(out, t)

	t = target{Name: "max live rate on the realistic mix vs the usual mix", Goal: ">= 2x", bound: bound{2, true, times}}
	if mix, ok := maxRate(r.LiveMix); ran && ok && flusso > 0 {
		t.set(float64(mix)/float64(flusso), fmt.Sprintf("%.2fx (%d vs %d changes/s)", float64(mix)/float64(flusso), mix, flusso))
	}
	out = append(out, t)

	t = target{Name: "flusso peak RSS during the 1M-user backfill", Goal: "<= 256 MB", bound: bound{256, false, mb}}
	if r.Backfill != nil {
		var peak float64
		for _, v := range r.Backfill.PeakRSSMB {
			peak = max(peak, v)
		}
		t.set(peak, fmt.Sprintf("%.0f MB at %d users", peak, r.Params.Users))
		if r.Params.Users < 1_000_000 {
			t.Met, t.Note = nil, "measured on the quick data set; the target is for 1M users"
		}
	}
	out = append(out, t)
	return out
}

func f0(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) || v < 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f", v)
}

func f1(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) || v < 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", v)
}

func f2(v float64) string { return fmt.Sprintf("%.2f", v) }

func per1k(cpu float64, n int64) string {
	if n == 0 || cpu == 0 {
		return "—"
	}
	return f2(cpu / float64(n) * 1000)
}

// markdown renders the result file as tables.
func markdown(r *results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## Benchmark %s — %d users\n\n", r.Started.Format("2006-01-02 15:04 MST"), r.Params.Users)
	e := r.Env
	p("%s, %d cores, %.0f GiB; PostgreSQL %s, %s, nats-server %s, %s; flusso %s", e.CPU, e.Cores, e.MemoryGB, e.Postgres, e.OpenSearch, e.NATS, e.GoVersion, e.FlussoCommit)
	if r.PGSync != nil {
		p("; PGSync %s with Redis %s", r.PGSync.Version, r.PGSync.Redis)
	}
	p(". Run took %.0f s.\n\n", r.Seconds)
	if d := r.Dataset; d != nil {
		names := make([]string, 0, len(d.Tables))
		for n := range d.Tables {
			names = append(names, n)
		}
		sort.Strings(names)
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s %d", n, d.Tables[n])
		}
		p("Data set: %s (%d rows, %.0f MB; loaded in %.1f s + %.1f s indexing).\n\n", strings.Join(parts, ", "), d.Rows, d.SizeMB, d.CopySeconds, d.IndexSeconds)
	}

	p("### Backfill (empty index → seeded)\n\n")
	p("| what | docs | seconds | docs/s | vs ceiling | CPU-s / 1k docs: tool | OpenSearch | Postgres | peak RSS MB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	c := r.bestCeiling()
	ratio := func(v float64) string {
		if c == 0 {
			return "—"
		}
		return fmt.Sprintf("%.0f%%", v/c*100)
	}
	if br := r.Build; br != nil {
		p("| Postgres build alone (pkg/sqlbuild, %d workers × %d keys) | %d | %s | %s | %s | — | — | %s | — |\n", br.Workers, br.Chunk, br.Docs, f1(br.Took.Seconds()), f0(br.DocsPerSec), ratio(br.DocsPerSec), per1k(br.ServiceCPU["postgres"], br.Docs))
	}
	for _, cr := range r.Ceiling {
		what := "raw bulk ceiling"
		if cr.After {
			what = "raw bulk ceiling, again after flusso's backfill"
		}
		if cr.Overwrite {
			what = "raw bulk overwrite of every document (live ceiling)"
		}
		p("| %s (%d request(s) in flight, %d docs each) | %d | %s | %s | %s | — | %s | — | — |\n", what, cr.Concurrency, cr.BatchDocs, cr.Docs, f1(cr.Took.Seconds()), f0(cr.DocsPerSec), ratio(cr.DocsPerSec), per1k(cr.ServiceCPU["opensearch"], cr.Docs))
	}
	row := func(name string, bf *backfillRes) {
		var peak []string
		names := make([]string, 0, len(bf.PeakRSSMB))
		for n := range bf.PeakRSSMB {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if len(names) == 1 {
				peak = append(peak, f0(bf.PeakRSSMB[n]))
			} else {
				peak = append(peak, fmt.Sprintf("%s %s", n, f0(bf.PeakRSSMB[n])))
			}
		}
		p("| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", name, bf.Docs, f1(bf.Seconds), f0(bf.DocsPerSec), ratio(bf.DocsPerSec), f2(bf.CPUPer1kDocs),
			per1k(bf.ServiceCPU["opensearch"], bf.Docs), per1k(bf.ServiceCPU["postgres"], bf.Docs), strings.Join(peak, ", "))
	}
	if r.Backfill != nil {
		row("**flusso**, one process (embedded NATS)", r.Backfill)
	}
	for _, s := range r.Scale {
		if s.Backfill != nil {
			row(fmt.Sprintf("flusso distributed, %d assembler process(es), %d writer(s)", s.Assemblers, s.Writers), s.Backfill)
		}
	}
	if r.Rust != nil && r.Rust.Backfill != nil {
		row(fmt.Sprintf("Rust flusso %s (%s), one process", r.Rust.Version, rustCrate), r.Rust.Backfill)
	}
	if r.PGSync != nil && r.PGSync.Backfill != nil {
		row(fmt.Sprintf("PGSync %s (one-shot sync, after a %.1f s bootstrap)", r.PGSync.Version, r.PGSync.BootstrapSeconds), r.PGSync.Backfill)
	}
	p("\n")
	if r.Rust != nil && r.Rust.Skipped != "" {
		p("Rust flusso: not run (%s).\n\n", r.Rust.Skipped)
	}

	var live []*liveResult
	live = append(live, r.Live...)
	live = append(live, r.LiveMix...)
	if r.Rust != nil {
		live = append(live, r.Rust.Live...)
	}
	for _, s := range r.Scale {
		if s.Live != nil {
			live = append(live, s.Live)
		}
	}
	if r.PGSync != nil {
		live = append(live, r.PGSync.Live...)
	}
	if len(live) > 0 {
		p("### Live (%d s per rate, %d changes per transaction; latency = commit → visible in search)\n\n", r.Params.LiveSeconds, r.Params.TxSize)
		p("| system | offered/s | achieved/s | end-to-end/s | p50 ms | p95 ms | p99 ms | max ms | probes (lost) | drain s | max slot lag MB | CPU-s / 1k changes: tool | OpenSearch | Postgres |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, l := range live {
			name := l.System
			if l.Label != "" {
				name += ", " + l.Label
			}
			if l.Skipped != "" {
				p("| %s | %d | %s |||||||||||\n", name, l.OfferedRate, l.Skipped)
				continue
			}
			p("| %s | %d | %s | %s | %s | %s | %s | %s | %d (%d) | %s | %s | %s | %s | %s |\n", name, l.OfferedRate, f0(l.AchievedRate), f0(l.PipelineRate),
				f0(l.P50ms), f0(l.P95ms), f0(l.P99ms), f0(l.MaxMs), l.Probes, l.Lost, f1(l.DrainSeconds), f1(l.MaxSlotLagMB), f2(l.CPUPer1kChanges),
				per1k(l.ServiceCPU["opensearch"], l.Changes), per1k(l.ServiceCPU["postgres"], l.Changes))
		}
		p("\n")
	}

	maxRates(p, r)
	mixTable(p, r)
	wrongTable(p, r)

	if len(r.Scale) > 0 {
		p("### Scale: assembler processes (distributed mode, external nats-server)\n\n")
		p("| assemblers (writers) | backfill docs/s | backfill CPU-s / 1k docs (all; assemblers) | live offered/s | live end-to-end/s | live p50 / p99 ms | live CPU-s / 1k changes (all; assemblers) |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range r.Scale {
			bf, bcpu, off, e2e, lat, lcpu := "—", "—", "—", "—", "—", "—"
			if s.Backfill != nil {
				bf, bcpu = f0(s.Backfill.DocsPerSec), f2(s.Backfill.CPUPer1kDocs)+"; "+f2(s.AssemblerCPUPer1kDocs)
			}
			if l := s.Live; l != nil {
				off, e2e, lat = fmt.Sprint(l.OfferedRate), f0(l.PipelineRate), f0(l.P50ms)+" / "+f0(l.P99ms)
				lcpu = f2(l.CPUPer1kChanges) + "; " + f2(s.AssemblerCPUPer1kChanges)
			}
			p("| %d (%d) | %s | %s | %s | %s | %s | %s |\n", s.Assemblers, s.Writers, bf, bcpu, off, e2e, lat, lcpu)
		}
		p("\n")
	}
	scalingTable(p, r)
	footprintTable(p, r)

	budget(p, r)

	p("### Targets\n\n| target | goal | measured | met |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		met := "not measured"
		if t.Met != nil {
			met = map[bool]string{true: "yes", false: "**no**"}[*t.Met]
		} else if t.Note != "" {
			met = t.Note
		}
		v := t.Value
		if v == "" {
			v = "—"
		}
		p("| %s | %s | %s | %s |\n", t.Name, t.Goal, v, met)
	}
	if len(r.Errors) > 0 {
		p("\nErrors:\n\n")
		for _, e := range r.Errors {
			p("- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
	}
	if r.PGSync != nil && r.PGSync.Error != "" {
		p("\nPGSync: %s\n", strings.ReplaceAll(r.PGSync.Error, "\n", " "))
	}
	return b.String()
}

// budget prints what the machine's cores allow at the CPU each flusso phase
// cost per unit of work across flusso, OpenSearch and Postgres: when the
// cores are the limit, a phase cannot run faster than its cap, whatever the
// pipeline does, and the raw ceiling pays OpenSearch's share only.
func budget(p func(string, ...any), r *results) {
	cores := float64(r.Env.Cores)
	type row struct {
		what    string
		per1k   float64 // CPU-s per 1,000 documents or changes, all processes
		rate    float64
		ceiling string
	}
	var rows []row
	if bf := r.Backfill; bf != nil && bf.Docs > 0 {
		per1k := bf.CPUPer1kDocs + (bf.ServiceCPU["opensearch"]+bf.ServiceCPU["postgres"])/float64(bf.Docs)*1000
		rows = append(rows, row{"backfill (docs/s)", per1k, bf.DocsPerSec, f0(r.bestCeiling())})
	}
	for _, l := range r.Live {
		// Only a phase the pipeline could not keep up with says anything
		// about a cap; below it the CPU per change includes idle refreshes.
		if l.Skipped != "" || l.Changes == 0 || l.PipelineRate <= 0 || l.PipelineRate > 0.95*float64(l.OfferedRate) {
			continue
		}
		per1k := l.CPUPer1kChanges + (l.ServiceCPU["opensearch"]+l.ServiceCPU["postgres"])/float64(l.Changes)*1000
		rows = append(rows, row{fmt.Sprintf("live at %d/s offered (changes/s end to end)", l.OfferedRate), per1k, l.PipelineRate, "—"})
	}
	if len(rows) == 0 || cores == 0 {
		return
	}
	p("### CPU budget (%d cores)\n\n", r.Env.Cores)
	p("| phase | CPU-s per 1k: flusso + OpenSearch + Postgres | cap on these cores | measured | of the cap | raw ceiling |\n|---|---:|---:|---:|---:|---:|\n")
	for _, w := range rows {
		if w.per1k <= 0 {
			continue
		}
		capped := cores * 1000 / w.per1k
		p("| %s | %s | %s | %s | %.0f%% | %s |\n", w.what, f2(w.per1k), f0(capped), f0(w.rate), w.rate/capped*100, w.ceiling)
	}
	p("\n")
}

// ramps are the live ramps of a run, by system, in the order the tables
// list them.
func (r *results) ramps() []struct {
	name string
	ramp []*liveResult
} {
	type ramp = struct {
		name string
		ramp []*liveResult
	}
	out := []ramp{{"flusso", r.Live}}
	if len(r.LiveMix) > 0 {
		out = append(out, ramp{"flusso, realistic mix", r.LiveMix})
	}
	if r.Rust != nil && len(r.Rust.Live) > 0 {
		out = append(out, ramp{"Rust flusso " + r.Rust.Version, r.Rust.Live})
	}
	if r.PGSync != nil && len(r.PGSync.Live) > 0 {
		out = append(out, ramp{"PGSync " + r.PGSync.Version, r.PGSync.Live})
	}
	return out
}

// maxRates prints the highest rate of each ramp within maxRateP99.
func maxRates(p func(string, ...any), r *results) {
	ow := r.overwriteCeiling()
	flusso, _ := maxRate(r.Live)
	var rows []string
	for _, rp := range r.ramps() {
		rate, ok := maxRate(rp.ramp)
		if !ok {
			continue
		}
		shown := fmt.Sprintf("%d", rate)
		if last := rp.ramp[len(rp.ramp)-1]; last.Skipped == "" && last.withinP99() {
			shown = "≥ " + shown // the ramp ended within the bound
		} else if rate == 0 {
			shown = fmt.Sprintf("< %d", rp.ramp[0].OfferedRate) // its first step was above
		}
		of, vs := "—", "—"
		if ow > 0 {
			of = fmt.Sprintf("%.0f%%", float64(rate)/ow*100)
		}
		if rate > 0 {
			vs = fmt.Sprintf("%.2fx", float64(flusso)/float64(rate))
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s |\n", rp.name, shown, of, vs))
	}
	if len(rows) == 0 {
		return
	}
	p("### Max sustained rate (highest rate of the ramp with p99 ≤ %s and every probe visible)\n\n", maxRateP99)
	p("| system | changes/s | of the raw overwrite ceiling (%s docs/s) | flusso's (usual mix) ÷ this |\n|---|---:|---:|---:|\n", f0(ow))
	for _, row := range rows {
		p("%s", row)
	}
	p("\n")
}

// mixTable prints the work flusso avoided on the realistic mix.
func mixTable(p func(string, ...any), r *results) {
	if len(r.LiveMix) == 0 {
		return
	}
	p("### Realistic mix: work avoided\n\n")
	p("Half of the updates set `profiles.last_seen_at`, which no index reads; a quarter set a `users` column to its own value (the document is rebuilt to the same content); the rest are the usual mix.\n\n")
	p("| offered/s | changes | of them: unread column | same content | changes dropped at capture | sink writes skipped (unchanged document) |\n|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range r.LiveMix {
		if l.Skipped != "" {
			continue
		}
		dropped, skipped := "—", "—"
		if a := l.Avoided; a != nil {
			dropped = fmt.Sprint(a.ChangesSkipped)
			skipped = fmt.Sprint(a.WritesSkipped)
			if !a.WritesReported {
				skipped = "0 (not reported by this build)"
			}
		}
		p("| %d | %d | %d | %d | %s | %s |\n", l.OfferedRate, l.Changes, l.Kinds[datagen.KindUnread], l.Kinds[datagen.KindRewrite], dropped, skipped)
	}
	p("\n")
}

// wrongTable prints how the indexes compared with Postgres after the live
// phases.
func wrongTable(p func(string, ...any), r *results) {
	type row struct {
		name string
		w    *wrongDocs
	}
	var rows []row
	if r.Wrong != nil {
		rows = append(rows, row{"flusso", r.Wrong})
	}
	if r.Rust != nil && r.Rust.Wrong != nil {
		rows = append(rows, row{"Rust flusso " + r.Rust.Version, r.Rust.Wrong})
	}
	if len(rows) == 0 {
		return
	}
	p("### Documents compared with Postgres after the live phases\n\n")
	p("| system | compared | missing | extra | different values | wrong | same values in another form (timestamp notation) |\n|---|---:|---:|---:|---:|---:|---:|\n")
	var examples []string
	for _, w := range rows {
		if w.w.Skipped != "" {
			p("| %s | %s ||||||\n", w.name, w.w.Skipped)
			continue
		}
		p("| %s | %d | %d | %d | %d | **%d** | %d |\n", w.name, w.w.Compared, w.w.Missing, w.w.Extra, w.w.Mismatched, w.w.total(), w.w.Rendered)
		for _, e := range w.w.Examples {
			examples = append(examples, fmt.Sprintf("- %s, document %s", w.name, e))
		}
	}
	p("\n")
	if len(examples) > 0 {
		p("Examples of wrong documents:\n\n%s\n\n", strings.Join(examples, "\n"))
	}
}

func rustLive(r *results) []*liveResult {
	if r.Rust == nil {
		return nil
	}
	return r.Rust.Live
}
