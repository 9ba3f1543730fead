// Command harness runs the flusso benchmark end to end on this machine:
// it seeds Postgres with the generated data set, measures the ceiling
// (Postgres build rate, raw OpenSearch bulk rate), flusso's backfill and
// live latency as separate processes, the distributed mode with 1, 2 and 3
// assembler processes, and PGSync on a copy of the same data, then writes a
// JSON result file and a markdown table.
//
// It prints figures; it asserts nothing about time.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/bench/ceiling"
	"github.com/flusso/flusso/bench/datagen"
	"github.com/flusso/flusso/internal/latencyproxy"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

type harness struct {
	repo        string // repository root
	work        string // scratch directory of this run
	users       int
	gen         datagen.Gen
	rates       []int
	pgsyncRates []int
	rustRates   []int
	// mix adds a ramp of the realistic mix (datagen.MixWorkload) to the
	// one-process run.
	mix bool
	// rustInstall delivers the Rust flusso's binary once cargo built it;
	// nil when it is not run.
	rustInstall <-chan rustInstall
	scale       []int
	scaleRate   int
	// scaleBackfill seeds a fresh index in every distributed run.
	scaleBackfill bool
	// writers is the writer processes of a distributed run.
	writers int
	// scaleWriters are more writer counts, run at the assembler count
	// that did best.
	scaleWriters []int
	// scalePGLatency, when set, puts the assemblers of the distributed
	// runs behind a proxy delaying Postgres's traffic by it each way.
	scalePGLatency time.Duration
	// pgProxy is the latency proxy of the distributed runs; nil when
	// they read Postgres directly.
	pgProxy *latencyproxy.Proxy
	// rev is the commit flusso is built from ("": the work tree); commit
	// is its short hash.
	rev, commit string
	// ceilingConc are the bulk concurrencies of the ceiling runs;
	// overwriteCeiling adds an overwrite pass to each.
	ceilingConc      []int
	overwriteCeiling bool
	skipCeiling      bool
	// skipSingle leaves out the one-process run (the distributed runs
	// then need -scale-backfill).
	skipSingle bool
	liveFor    time.Duration
	drainLimit time.Duration
	txSize     int
	flussoBin  string
	natsBin    string
	venv       string
	redisPort  int
	natsPort   int

	pgURL      *url.URL // admin URL of the cluster
	osURL      string
	admin      *pgxpool.Pool
	search     *search
	schema     *schema.Index
	schemaPath string

	flussoDB   string
	pgsyncDB   string
	rustDB     string
	flussoPool *pgxpool.Pool
	pgsyncPool *pgxpool.Pool
	rustPool   *pgxpool.Pool

	res *results
}

func main() {
	log.SetFlags(0)
	h := &harness{}
	var (
		rates, pgRates, rustRates, scale, ceilConc, scaleWriters string
		liveSecs                                                 int
		out                                                      string
		skipPGSync, skipRust                                     bool
	)
	repo, _ := os.Getwd()
	flag.StringVar(&h.repo, "repo", repo, "repository root")
	flag.IntVar(&h.users, "users", datagen.QuickUsers, "users in the data set")
	seed := flag.Uint64("seed", datagen.DefaultSeed, "data set seed")
	flag.StringVar(&rates, "rates", "100,250,500,1000,1500,2000,3000,5000", "live change rates (changes/s) for flusso, ascending: a ramp that stops above p99 2 s; the highest rate within is the max rate")
	flag.StringVar(&pgRates, "pgsync-rates", "100,250,500,1000,2000", "live change rates for PGSync, a ramp like -rates (empty: backfill only)")
	flag.StringVar(&rustRates, "rust-rates", "100,250,500,1000,1500,2000,3000,5000", "live change rates for the Rust flusso, a ramp like -rates (empty: backfill only)")
	flag.BoolVar(&skipRust, "skip-rust", false, "do not run the Rust flusso ("+rustCrate+" "+rustVersion+", installed with cargo)")
	flag.BoolVar(&h.mix, "mix", true, "also ramp flusso on the realistic mix (half the updates touch a column no index reads, a quarter rewrite a document unchanged)")
	flag.StringVar(&scale, "scale", "1,2,3", "assembler process counts of the distributed runs (empty: skip)")
	flag.StringVar(&ceilConc, "ceiling-concurrency", "1,2", "bulk requests in flight of the ceiling runs")
	flag.BoolVar(&h.skipSingle, "skip-single", false, "leave out the one-process run (distributed runs then need -scale-backfill)")
	flag.BoolVar(&h.skipCeiling, "skip-ceiling", false, "do not measure the build rate and the bulk ceiling")
	flag.BoolVar(&h.overwriteCeiling, "overwrite-ceiling", true, "also measure the ceiling of overwriting every document (live updates)")
	flag.StringVar(&h.rev, "rev", "HEAD", "commit to build flusso from; empty builds the work tree as it is")
	flag.IntVar(&h.writers, "writers", 1, "writer processes of each distributed run")
	flag.StringVar(&scaleWriters, "scale-writers", "", "more writer counts of distributed runs, each run at the fewest -scale assemblers within 5% of the best throughput (backfill docs/s, else live end to end) (e.g. \"2\")")
	flag.DurationVar(&h.scalePGLatency, "scale-pg-latency", 0, "one-way delay the assemblers of the distributed runs see on every Postgres round trip, through a TCP proxy on loopback, like a database on another host (e.g. 2ms; 0: direct). The capture and the writers stay direct")
	flag.BoolVar(&h.scaleBackfill, "scale-backfill", false, "seed a fresh index in every distributed run too (slow)")
	flag.IntVar(&h.scaleRate, "scale-rate", 2000, "live rate of each distributed run (0: backfill only)")
	flag.IntVar(&liveSecs, "live-secs", 30, "seconds of each live phase")
	drainSecs := flag.Int("drain-secs", 90, "seconds to wait for the backlog after each live phase")
	flag.IntVar(&h.txSize, "tx-size", 5, "changes per transaction of the live load")
	flag.StringVar(&out, "out", "bench/results", "directory of the result files")
	mediansOf := flag.String("medians", "", "comma-separated result files (.json) of repeated runs: write the medians of their figures to -out and run nothing")
	flag.StringVar(&h.flussoBin, "flusso", "bench/.work/flusso", "flusso binary (built from the work tree when missing)")
	flag.StringVar(&h.natsBin, "nats-server", "bin/nats-server", "nats-server binary for the distributed runs")
	flag.StringVar(&h.venv, "venv", "bench/pgsync/.venv", "PGSync virtualenv (bench/pgsync/setup.sh)")
	flag.BoolVar(&skipPGSync, "skip-pgsync", false, "do not run PGSync")
	flag.IntVar(&h.redisPort, "redis-port", 56379, "port of the Redis the harness starts for PGSync")
	flag.IntVar(&h.natsPort, "nats-port", 54340, "port of the nats-server the harness starts for the distributed runs")
	flag.Parse()
	if *mediansOf != "" {
		if err := writeMedians(strings.Split(*mediansOf, ","), out); err != nil {
			log.Fatalf("harness: %v", err)
		}
		return
	}
	h.gen = datagen.Gen{Users: h.users, Seed: *seed}
	h.liveFor = time.Duration(liveSecs) * time.Second
	h.drainLimit = time.Duration(*drainSecs) * time.Second
	var err error
	if h.rates, err = ints(rates); err == nil {
		if h.pgsyncRates, err = ints(pgRates); err == nil {
			if h.scale, err = ints(scale); err == nil {
				if h.ceilingConc, err = ints(ceilConc); err == nil {
					if h.rustRates, err = ints(rustRates); err == nil {
						h.scaleWriters, err = ints(scaleWriters)
					}
				}
			}
		}
	}
	if err != nil {
		log.Fatalf("harness: %v", err)
	}
	if skipPGSync {
		h.pgsyncRates = nil
	}

	ctx, stop := cleanupOnSignal(context.Background())
	defer stop()
	start := time.Now()
	h.res = &results{Started: start.UTC(), Params: params{Users: h.users, Seed: *seed, Rates: h.rates,
		PGSyncRates: h.pgsyncRates, RustRates: h.rustRates, Scale: h.scale, ScaleRate: h.scaleRate, LiveSeconds: liveSecs, TxSize: h.txSize,
		ScaleWriters: h.scaleWriters, ScaleBackfill: h.scaleBackfill, ScalePGLatencyMs: float64(h.scalePGLatency) / float64(time.Millisecond)}}
	runErr := h.run(ctx, skipPGSync, skipRust)
	if runErr != nil {
		h.res.Errors = append(h.res.Errors, runErr.Error())
		log.Printf("harness: %v", runErr)
	}
	h.res.Finished = time.Now().UTC()
	h.res.Seconds = time.Since(start).Seconds()
	h.res.Targets = targets(h.res)
	if err := h.write(out); err != nil {
		log.Fatalf("harness: %v", err)
	}
	if runErr != nil {
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func (h *harness) logf(format string, args ...any) {
	log.Printf("%s  %s", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (h *harness) run(ctx context.Context, skipPGSync, skipRust bool) error {
	if err := h.setup(ctx); err != nil {
		return err
	}
	if !skipRust {
		h.rustInstall = h.installRust(ctx)
	}
	defer h.admin.Close()
	// Whichever way the run ends (an error, a signal), nothing it made
	// outlives it.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		defer cancel()
		h.logf("cleaning up: processes, replication slots, databases %s, %s and %s, indexes", h.flussoDB, h.pgsyncDB, h.rustDB)
		if err := h.leftovers().cleanup(cctx); err != nil {
			msg := fmt.Sprintf("cleanup: %v", err)
			h.logf("%s", msg)
			h.res.Errors = append(h.res.Errors, msg)
		}
	}()
	if err := h.seed(ctx, !skipPGSync, !skipRust); err != nil {
		return err
	}
	defer h.flussoPool.Close()
	if !h.skipCeiling {
		if err := h.ceiling(ctx); err != nil {
			return fmt.Errorf("ceiling: %w", err)
		}
	}
	if !h.skipSingle {
		if err := h.flussoSingle(ctx); err != nil {
			return fmt.Errorf("flusso: %w", err)
		}
	}
	if err := h.scaleSweep(ctx); err != nil {
		return err
	}
	_ = h.search.drop(ctx, singlePrefix)
	if h.rustInstall != nil {
		defer h.rustPool.Close()
		rr, err := h.runRust(ctx, h.rustInstall)
		h.res.Rust = rr
		if err != nil {
			msg := fmt.Sprintf("rust flusso: %v", err)
			h.logf("%s", msg)
			rr.Error = msg
		}
		_ = h.search.drop(ctx, rustPrefix)
	}
	if !skipPGSync {
		defer h.pgsyncPool.Close()
		pr, err := h.runPGSync(ctx)
		h.res.PGSync = pr
		if err != nil {
			msg := fmt.Sprintf("pgsync: %v", err)
			h.logf("%s", msg)
			pr.Error = msg
		}
	}
	return nil
}

// setup checks the services and builds flusso.
func (h *harness) setup(ctx context.Context) error {
	admin := os.Getenv("FLUSSO_TEST_PG_URL")
	if admin == "" {
		admin = "postgres://flusso:flusso@127.0.0.1:54329/postgres?sslmode=disable"
	}
	h.osURL = os.Getenv("FLUSSO_TEST_OPENSEARCH_URL")
	if h.osURL == "" {
		h.osURL = "http://127.0.0.1:59200"
	}
	var err error
	if h.pgURL, err = url.Parse(admin); err != nil {
		return fmt.Errorf("FLUSSO_TEST_PG_URL: %w", err)
	}
	if h.admin, err = pgxpool.New(ctx, admin); err != nil {
		return err
	}
	if err := h.admin.Ping(ctx); err != nil {
		return fmt.Errorf("postgres is not reachable (make services): %w", err)
	}
	h.search = newSearch(h.osURL)
	if u, err := url.Parse(h.osURL); err == nil && u.Port() != "" {
		osPort = u.Port()
	}
	h.flussoDB, h.pgsyncDB, h.rustDB = "bench_flusso", "bench_pgsync", "bench_rust"
	h.schemaPath = filepath.Join(h.repo, "bench", "schemas", "users.schema.yml")
	if h.schema, err = schema.Load(h.schemaPath); err != nil {
		return err
	}
	h.work = filepath.Join(h.repo, "bench", "results", "tmp", h.res.Started.Format("20060102-150405"))
	if err := os.MkdirAll(h.work, 0o755); err != nil {
		return err
	}
	for _, p := range []*string{&h.flussoBin, &h.natsBin, &h.venv} {
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(h.repo, *p)
		}
	}
	if err := h.build(ctx); err != nil {
		return err
	}
	h.res.Env = h.environment(ctx)
	return nil
}

// build builds the flusso binary under test. From a revision (the
// default, HEAD) it builds an exported copy of that commit, so that the
// figures belong to a commit and not to whatever is half-edited in the
// work tree; with -rev "" it builds the work tree.
func (h *harness) build(ctx context.Context) error {
	dir := h.repo
	if h.rev != "" {
		out, err := exec.CommandContext(ctx, "git", "-C", h.repo, "rev-parse", "--short", h.rev).Output()
		if err != nil {
			return fmt.Errorf("resolving -rev %s: %w", h.rev, err)
		}
		h.commit = strings.TrimSpace(string(out))
		dir = filepath.Join(h.work, "src")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		export := exec.CommandContext(ctx, "sh", "-c", "git -C \"$1\" archive \"$2\" | tar -x -C \"$3\"", "sh", h.repo, h.commit, dir)
		export.Stderr = os.Stderr
		if err := export.Run(); err != nil {
			return fmt.Errorf("exporting %s: %w", h.commit, err)
		}
	}
	h.logf("building flusso %s into %s", map[bool]string{true: "from the work tree", false: h.commit}[h.rev == ""], h.flussoBin)
	build := exec.CommandContext(ctx, "go", "build", "-o", h.flussoBin, "./cmd/flusso")
	build.Dir, build.Stdout, build.Stderr = dir, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building flusso: %w", err)
	}
	return nil
}

// seed recreates the benchmark databases: the data set is generated once
// into bench_flusso and copied to bench_pgsync, so both tools read the same
// rows and neither sees the other's triggers or slots.
func (h *harness) seed(ctx context.Context, withPGSync, withRust bool) error {
	for _, db := range []string{h.flussoDB, h.pgsyncDB, h.rustDB} {
		if err := dropDatabase(ctx, h.admin, db); err != nil {
			return err
		}
	}
	if _, err := h.admin.Exec(ctx, "CREATE DATABASE "+h.flussoDB); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, h.dbURL(h.flussoDB))
	if err != nil {
		return err
	}
	h.logf("seeding %d users (seed %d)", h.users, h.gen.Seed)
	st, err := h.gen.Load(ctx, pool, func(table string, rows int64) { h.logf("  %-12s %10d rows", table, rows) })
	pool.Close()
	if err != nil {
		return err
	}
	ds := &dataset{Rows: st.Rows, CopySeconds: st.Copy.Seconds(), IndexSeconds: st.PostLoad.Seconds(), Tables: map[string]int64{}}
	for _, t := range h.gen.Tables() {
		ds.Tables[t.Name] = t.Count
	}
	if err := h.admin.QueryRow(ctx, "SELECT pg_database_size($1) / 1048576.0", h.flussoDB).Scan(&ds.SizeMB); err != nil {
		return err
	}
	h.res.Dataset = ds
	h.logf("seeded %d rows in %.1fs + %.1fs indexing; database %.0f MB", st.Rows, ds.CopySeconds, ds.IndexSeconds, ds.SizeMB)
	// Each peer gets a copy made before flusso touches the data: the
	// replica identities, publication and changes flusso leaves are not
	// theirs to meet.
	copyFor := func(db, who string) (*pgxpool.Pool, error) {
		start := time.Now()
		if _, err := h.admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", db, h.flussoDB)); err != nil {
			return nil, fmt.Errorf("copying the data set for %s: %w", who, err)
		}
		h.logf("copied the data set to %s in %.1fs", db, time.Since(start).Seconds())
		return pgxpool.New(ctx, h.dbURL(db))
	}
	if withPGSync {
		if h.pgsyncPool, err = copyFor(h.pgsyncDB, "PGSync"); err != nil {
			return err
		}
	}
	if withRust {
		if h.rustPool, err = copyFor(h.rustDB, "the Rust flusso"); err != nil {
			return err
		}
	}
	h.flussoPool, err = pgxpool.New(ctx, h.dbURL(h.flussoDB))
	return err
}

// leftovers is what this run may create.
func (h *harness) leftovers() leftovers {
	prefixes := []string{singlePrefix, rustPrefix, pgsyncIndex, ceilingIndex}
	for _, k := range h.scale {
		prefixes = append(prefixes, fmt.Sprintf("bench_s%d_", k))
	}
	return leftovers{admin: h.admin, search: h.search, databases: []string{h.flussoDB, h.pgsyncDB, h.rustDB}, prefixes: prefixes}
}

func (h *harness) dbURL(db string) string {
	u := *h.pgURL
	u.Path = "/" + db
	return u.String()
}

// dropDatabase drops a benchmark database and the replication slots in it.
func dropDatabase(ctx context.Context, admin *pgxpool.Pool, db string) error {
	for range 100 {
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE database = $1 AND active_pid IS NOT NULL`, db); err != nil {
			return err
		}
		var left int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_drop_replication_slot(slot_name)
			FROM pg_replication_slots WHERE database = $1 AND NOT active) d`, db).Scan(&left); err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, db).Scan(&left); err != nil {
			return err
		}
		if left == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
	if err != nil {
		return fmt.Errorf("dropping database %s: %w", db, err)
	}
	return nil
}

// dropSlot drops a replication slot once nothing holds it.
func (h *harness) dropSlot(ctx context.Context, slot string) {
	for range 50 {
		_, err := h.admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
		if err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ceiling builds every document once with pkg/sqlbuild (the Postgres build
// rate) and bulk-indexes them raw into an index with flusso's mapping.
func (h *harness) ceiling(ctx context.Context) error {
	ix, err := sqlbuild.Compile("users", h.schema)
	if err != nil {
		return err
	}
	docs := filepath.Join(h.work, "docs.tsv")
	h.logf("ceiling: building %d documents with pkg/sqlbuild", h.users)
	svc := services(h.flussoDB)
	br, err := ceiling.Build(ctx, h.flussoPool, ix, 2, 250, docs)
	if err != nil {
		return err
	}
	h.res.Build = &buildRun{br, servicesDelta(services(h.flussoDB), svc)}
	h.logf("ceiling: built %d docs (%.0f MB) in %.1fs: %.0f docs/s", br.Docs, float64(br.Bytes)/(1<<20), br.Took.Seconds(), br.DocsPerSec)
	if br.Docs != int64(h.users) {
		return fmt.Errorf("built %d documents, expected %d", br.Docs, h.users)
	}
	// A first pass that is not recorded: an OpenSearch started minutes ago
	// (the test suite restarts it) runs its first bulk load at two thirds
	// of its speed while the JVM compiles, which would bias the first
	// ceiling and flusso's backfill after it.
	h.logf("ceiling: warming OpenSearch up with one unrecorded fill")
	if _, err := ceiling.Bulk(ctx, h.osURL, ceilingIndex, h.schema, 0, 1000, 2, docs, false); err != nil {
		return err
	}
	// Fill an empty index (the backfill's ceiling), then overwrite every
	// document once (what live updates cost OpenSearch).
	for _, c := range h.ceilingConc {
		for _, overwrite := range []bool{false, true} {
			if overwrite && !h.overwriteCeiling {
				continue
			}
			svc := services(h.flussoDB)
			r, err := ceiling.Bulk(ctx, h.osURL, ceilingIndex, h.schema, 0, 1000, c, docs, overwrite)
			if err != nil {
				return err
			}
			h.res.Ceiling = append(h.res.Ceiling, bulkRun{r, servicesDelta(services(h.flussoDB), svc)})
			h.logf("ceiling: bulk (overwrite %v) with %d request(s) in flight: %d docs in %.1fs: %.0f docs/s", overwrite, c, r.Docs, r.Took.Seconds(), r.DocsPerSec)
		}
	}
	_ = h.search.drop(ctx, ceilingIndex)
	return nil
}

// ceilingAgain fills the ceiling index once more, right after flusso's
// backfill: other load on the machine moves from minute to minute, and a
// ceiling measured on both sides of the backfill brackets it.
func (h *harness) ceilingAgain(ctx context.Context) {
	if h.skipCeiling || len(h.ceilingConc) == 0 {
		return
	}
	docs := filepath.Join(h.work, "docs.tsv")
	defer os.Remove(docs)
	defer h.search.drop(context.WithoutCancel(ctx), ceilingIndex) //nolint:errcheck
	c := slices.Max(h.ceilingConc)
	svc := services(h.flussoDB)
	r, err := ceiling.Bulk(ctx, h.osURL, ceilingIndex, h.schema, 0, 1000, c, docs, false)
	if err != nil {
		h.logf("ceiling after the backfill: %v", err)
		return
	}
	r.After = true
	h.res.Ceiling = append(h.res.Ceiling, bulkRun{r, servicesDelta(services(h.flussoDB), svc)})
	h.logf("ceiling after flusso's backfill: bulk with %d request(s) in flight: %d docs in %.1fs: %.0f docs/s", c, r.Docs, r.Took.Seconds(), r.DocsPerSec)
}

// backfillRes is one seeding, empty index to seeded.
type backfillRes struct {
	System string `json:"system"`
	Docs   int64  `json:"docs"`
	// Seconds runs from the start of the processes to the seeded marker
	// (flusso) or the end of the one-shot sync (PGSync).
	Seconds    float64 `json:"seconds"`
	DocsPerSec float64 `json:"docs_per_sec"`
	// FirstDocSeconds is when the first document reached OpenSearch: the
	// start-up share of Seconds.
	FirstDocSeconds float64            `json:"first_doc_seconds,omitempty"`
	CPU             map[string]usage   `json:"cpu"`
	CPUPer1kDocs    float64            `json:"cpu_seconds_per_1k_docs"`
	PeakRSSMB       map[string]float64 `json:"peak_rss_mb"`
	Curve           []point            `json:"curve"` // seconds, documents indexed
	// ServiceCPU is the CPU time OpenSearch and the database's Postgres
	// backends spent during the backfill.
	ServiceCPU map[string]float64 `json:"service_cpu_seconds"`
	LoadAvg    float64            `json:"loadavg_1m_at_end"`
}

// flussoConfig writes the flusso.toml of the benchmark on database db into
// dir.
func (h *harness) flussoConfig(dir, db string) (string, error) {
	return h.flussoConfigAt(dir, "flusso.toml", h.dbURL(db))
}

// flussoConfigAt writes the benchmark's config, reading Postgres at
// dbURL, into dir as file.
func (h *harness) flussoConfigAt(dir, file, dbURL string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	schemaBytes, err := os.ReadFile(h.schemaPath)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "users.schema.yml"), schemaBytes, 0o644); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`[source]
type = "postgres"
connection_url = %q

[sinks.primary]
type = "opensearch"
url = %q
number_of_replicas = 0
# Short, as the benchmark asks: live latency is what is measured.
refresh_interval = "1s"

[[index]]
name = "users"
schema = "users.schema.yml"
enabled = true
`, dbURL, h.osURL)
	path := filepath.Join(dir, file)
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// flussoProc starts one flusso process.
func (h *harness) flussoProc(name, dir, cfg, slot, prefix, natsURL string, port int, roles ...string) (*proc, error) {
	argv := []string{h.flussoBin, "run", "--config", cfg, "--lock", filepath.Join(dir, name+".lock"),
		"--slot", slot, "--publication", "bench", "--index-prefix", prefix, "--lag-poll-secs", "1",
		"--public-address", "127.0.0.1:" + strconv.Itoa(port), "--private-address", "127.0.0.1:" + strconv.Itoa(port+1)}
	if natsURL == "" {
		argv = append(argv, "--data-dir", filepath.Join(dir, "data"))
	} else {
		argv = append(argv, "--nats-url", natsURL)
	}
	for _, r := range roles {
		argv = append(argv, "--role", r)
	}
	role := strings.Join(roles, "+")
	if role == "" {
		role = "all"
	}
	return startProc(name, role, filepath.Join(dir, name+".log"), nil, argv...)
}

// waitSeeded follows a flusso backfill until the seeded marker is in the
// meta index and every document is searchable.
func (h *harness) waitSeeded(ctx context.Context, procs group, prefix string, start time.Time, svcBefore map[string]float64) (*backfillRes, error) {
	res := &backfillRes{System: "flusso", PeakRSSMB: map[string]float64{}}
	timeout := time.Duration(h.users/50)*time.Second + 5*time.Minute
	for {
		if err := procs.failed(); err != nil {
			return nil, err
		}
		if time.Since(start) > timeout {
			return nil, fmt.Errorf("not seeded after %s", timeout)
		}
		n, err := h.search.indexed(ctx, prefix+"users_*")
		if err == nil {
			if n > 0 && res.FirstDocSeconds == 0 {
				res.FirstDocSeconds = time.Since(start).Seconds()
			}
			res.Curve = append(res.Curve, point{time.Since(start).Seconds(), float64(n)})
		}
		seeded, err := h.search.seeded(ctx, prefix+"flusso_meta", "users")
		if err == nil && seeded {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	res.Seconds = time.Since(start).Seconds()
	count, err := h.search.count(ctx, prefix+"users")
	if err != nil {
		return nil, err
	}
	res.Docs = count
	res.DocsPerSec = float64(count) / res.Seconds
	res.Curve = append(res.Curve, point{res.Seconds, float64(count)})
	res.CPU = procs.sample()
	res.ServiceCPU = servicesDelta(services(h.flussoDB), svcBefore)
	res.LoadAvg = loadavg()
	res.CPUPer1kDocs = totalCPU(res.CPU) / float64(max(count, 1)) * 1000
	for name, u := range res.CPU {
		res.PeakRSSMB[name] = u.PeakRSSMB
	}
	if count != int64(h.users) {
		return res, fmt.Errorf("seeded with %d documents, expected %d", count, h.users)
	}
	return res, nil
}

// ceilingIndex is the index of the raw bulk ceiling runs.
const ceilingIndex = "bench_ceiling_users"

// singlePrefix is the index prefix of the one-process run, whose seeded
// index the distributed runs reuse.
const singlePrefix = "bench_f_"

// flussoSingle runs flusso as one process (embedded NATS): backfill, then
// the live rates.
func (h *harness) flussoSingle(ctx context.Context) error {
	const prefix, slot = singlePrefix, "bench"
	if err := h.search.drop(ctx, prefix); err != nil {
		return err
	}
	dir := filepath.Join(h.work, "flusso")
	cfg, err := h.flussoConfig(dir, h.flussoDB)
	if err != nil {
		return err
	}
	h.logf("flusso: backfill of %d users (one process, embedded NATS)", h.users)
	svc := services(h.flussoDB)
	start := time.Now()
	p, err := h.flussoProc("flusso", dir, cfg, slot, prefix, "", singlePort)
	if err != nil {
		return err
	}
	procs := group{p}
	defer func() {
		procs.stop()
		h.dropSlot(context.WithoutCancel(ctx), slot)
	}()
	bf, err := h.waitSeeded(ctx, procs, prefix, start, svc)
	if bf != nil {
		h.res.Backfill = bf
		h.logf("flusso: seeded %d docs in %.1fs: %.0f docs/s; %.2f CPU-s per 1k docs; peak RSS %.0f MB",
			bf.Docs, bf.Seconds, bf.DocsPerSec, bf.CPUPer1kDocs, bf.PeakRSSMB["flusso"])
	}
	if err != nil {
		return err
	}
	h.ceilingAgain(ctx)
	status := "http://127.0.0.1:" + strconv.Itoa(singlePort)
	lives, err := h.liveSeries(ctx, "flusso", h.rates, 0, false, status, h.flussoPool, h.flussoDB, prefix+"users", procs)
	h.res.Live = lives
	if err != nil {
		return err
	}
	if h.mix {
		lives, err = h.liveSeries(ctx, "flusso", h.rates, 50, true, status, h.flussoPool, h.flussoDB, prefix+"users", procs)
		h.res.LiveMix = lives
		if err != nil {
			return err
		}
	}
	h.res.Wrong = h.compare(ctx, h.flussoDB, prefix+"users")
	return nil
}

// singlePort is the public port of the one-process run (the private one
// follows it).
const singlePort = 19464

// liveSeries runs the live phases of one system in ascending rate order:
// a ramp. Each starts from a caught-up pipeline. Once a rate saturates the
// pipeline (it needed longer to catch up than the load lasted) or its p99
// exceeds maxRateP99, higher rates would only measure the same saturation
// with a longer backlog to wait out, so they are recorded as skipped; the
// highest rate before is the system's max rate (see maxRate).
func (h *harness) liveSeries(ctx context.Context, system string, rates []int, stream uint64, mix bool, status string, db *pgxpool.Pool, dbName, index string, procs group) ([]*liveResult, error) {
	var out []*liveResult
	var saturated *liveResult
	label := ""
	if mix {
		label = "realistic mix"
	}
	for i, rate := range rates {
		if saturated != nil {
			note := fmt.Sprintf("skipped: saturated at %d changes/s (end to end %.0f changes/s)", saturated.OfferedRate, saturated.PipelineRate)
			if saturated.PipelineRate < 0 {
				note = fmt.Sprintf("skipped: saturated at %d changes/s (not caught up %s after the load)", saturated.OfferedRate, h.drainLimit)
			} else if !saturated.withinP99() {
				note = fmt.Sprintf("skipped: p99 above %s at %d changes/s", maxRateP99, saturated.OfferedRate)
			}
			h.logf("%s: live at %d changes/s %s", system, rate, note)
			out = append(out, &liveResult{System: system, Label: label, OfferedRate: rate, TxSize: h.txSize, Skipped: note, Mix: mix,
				P50ms: -1, P95ms: -1, P99ms: -1, MaxMs: -1, DrainSeconds: -1, PipelineRate: -1})
			continue
		}
		if err := h.waitLive(ctx, procs, db, index); err != nil {
			return out, fmt.Errorf("before live at %d/s: %w", rate, err)
		}
		h.logf("%s: live at %d changes/s for %s", system, rate, h.liveFor)
		lr, err := runLive(ctx, liveSpec{
			system: system, label: label, db: db, admin: h.admin, dbName: dbName, search: h.search, index: index,
			gen: h.gen, stream: stream + uint64(i), mix: mix, status: status, rate: rate, duration: h.liveFor, txSize: h.txSize, procs: procs, drainLimit: h.drainLimit,
		})
		if err != nil {
			return out, fmt.Errorf("live at %d/s: %w", rate, err)
		}
		h.logLive(lr)
		out = append(out, lr)
		if lr.DrainSeconds < 0 || lr.DrainSeconds > lr.LoadSeconds || !lr.withinP99() {
			saturated = lr
		}
	}
	return out, nil
}

func (h *harness) logLive(lr *liveResult) {
	h.logf("%s: offered %d/s, achieved %.0f/s; latency p50 %.0f ms p95 %.0f ms p99 %.0f ms (%d probes, %d not visible); drain %.1fs; max slot lag %.1f MB; %.2f CPU-s per 1k changes",
		lr.System, lr.OfferedRate, lr.AchievedRate, lr.P50ms, lr.P95ms, lr.P99ms, lr.Probes, lr.Lost, lr.DrainSeconds, lr.MaxSlotLagMB, lr.CPUPer1kChanges)
}

// scaleRes is one distributed run.
type scaleRes struct {
	Assemblers int `json:"assemblers"`
	Writers    int `json:"writers"`
	// PGLatencyMs is the one-way delay the assemblers saw on Postgres.
	PGLatencyMs float64 `json:"assembler_pg_latency_ms,omitempty"`
	// BackfillPGRequests and LivePGRequests are the requests the
	// assemblers sent through the latency proxy in each phase: about
	// their round trips to Postgres.
	BackfillPGRequests int64        `json:"backfill_pg_requests,omitempty"`
	LivePGRequests     int64        `json:"live_pg_requests,omitempty"`
	Backfill           *backfillRes `json:"backfill,omitempty"`
	// AssemblerCPUPer1kDocs is the CPU the assembler processes spent per
	// 1,000 documents, summed over them: flat when coordination is cheap.
	AssemblerCPUPer1kDocs float64     `json:"assembler_cpu_seconds_per_1k_docs,omitempty"`
	Live                  *liveResult `json:"live,omitempty"`
	// AssemblerCPUPer1kChanges is the same for the live phase.
	AssemblerCPUPer1kChanges float64 `json:"assembler_cpu_seconds_per_1k_changes,omitempty"`
	// Backlog is the work waiting at each stage, once a second, over the
	// whole run.
	Backlog []backlogPoint `json:"backlog"`
	// LiveFrom and LiveTo bound the live phase, in seconds on the
	// backlog's clock.
	LiveFrom    float64 `json:"live_from_seconds,omitempty"`
	LiveTo      float64 `json:"live_to_seconds,omitempty"`
	NATSVersion string  `json:"nats_version"`
}

// flussoDistributed runs flusso as separate processes around an external
// nats-server: one capture + writer, k assemblers.
//
// Without -scale-backfill the processes share the index the one-process
// run seeded (same prefix, so the sink reports it seeded and no backfill
// runs) and the comparison is the live phase alone: a backfill per process
// count costs minutes per run on two cores.
//
// With -scale-pg-latency the assemblers read Postgres through h.pgProxy.
func (h *harness) flussoDistributed(ctx context.Context, k, writers int) (*scaleRes, error) {
	prefix, slot := singlePrefix, fmt.Sprintf("bench_s%d", k)
	if h.scaleBackfill {
		prefix = fmt.Sprintf("bench_s%d_", k)
		if err := h.search.drop(ctx, prefix); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(h.work, fmt.Sprintf("scale-%d-w%d", k, writers))
	cfg, err := h.flussoConfig(dir, h.flussoDB)
	if err != nil {
		return nil, err
	}
	assemblerCfg := cfg
	if h.pgProxy != nil {
		if assemblerCfg, err = h.flussoConfigAt(dir, "assembler.toml", h.proxiedURL(h.flussoDB)); err != nil {
			return nil, err
		}
	}
	res := &scaleRes{Assemblers: k, Writers: writers, PGLatencyMs: float64(h.scalePGLatency) / float64(time.Millisecond), NATSVersion: natsVersion(h.natsBin)}
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", h.natsPort)
	h.logf("flusso distributed: capture+writer, %d more writer(s) and %d assembler process(es) on %s; assemblers see Postgres at +%s each way", writers-1, k, natsURL, h.scalePGLatency)
	svc := services(h.flussoDB)
	start := time.Now()
	ns, err := startProc("nats-server", "broker", filepath.Join(dir, "nats.log"), nil,
		h.natsBin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(h.natsPort), "-sd", filepath.Join(dir, "nats"))
	if err != nil {
		return nil, err
	}
	procs := group{ns}
	defer func() {
		procs.stop()
		h.dropSlot(context.WithoutCancel(ctx), slot)
		if prefix != singlePrefix {
			_ = h.search.drop(context.WithoutCancel(ctx), prefix)
		}
	}()
	if err := waitPort(ctx, h.natsPort, 10*time.Second); err != nil {
		return nil, err
	}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	backlog := sampleBacklog(sampleCtx, natsURL, start)
	defer func() {
		stopSampling()
		res.Backlog = <-backlog
	}()
	// Assemblers first: the capture starts publishing as soon as it runs.
	port := 19500
	var assemblers group
	for i := 1; i <= k; i++ {
		a, err := h.flussoProc(fmt.Sprintf("assembler-%d", i), dir, assemblerCfg, slot, prefix, natsURL, port, "assembler")
		if err != nil {
			return nil, err
		}
		port += 2
		procs = append(procs, a)
		assemblers = append(assemblers, a)
	}
	// Writers next, the capture last. One writer shares the capture's
	// process; more are processes of their own sharing the sink's consumer,
	// which is how the distributed mode puts several bulk requests in
	// flight.
	for i := 2; i <= writers; i++ {
		w, err := h.flussoProc(fmt.Sprintf("writer-%d", i), dir, cfg, slot, prefix, natsURL, port, "writer")
		if err != nil {
			return nil, err
		}
		port += 2
		procs = append(procs, w)
	}
	cw, err := h.flussoProc("capture-writer", dir, cfg, slot, prefix, natsURL, port, "capture", "writer")
	if err != nil {
		return nil, err
	}
	procs = append(procs, cw)
	requests := func() int64 {
		if h.pgProxy == nil {
			return 0
		}
		return h.pgProxy.Requests()
	}
	startRequests := requests()
	if h.scaleBackfill {
		bf, err := h.waitSeeded(ctx, procs, prefix, start, svc)
		res.BackfillPGRequests = requests() - startRequests
		if bf != nil {
			res.Backfill = bf
			var cpu float64
			for _, a := range assemblers {
				cpu += bf.CPU[a.name].CPUSeconds
			}
			res.AssemblerCPUPer1kDocs = cpu / float64(max(bf.Docs, 1)) * 1000
			h.logf("flusso distributed (%s): seeded %d docs in %.1fs: %.0f docs/s; %.2f CPU-s per 1k docs (assemblers %.2f)",
				res.label(), bf.Docs, bf.Seconds, bf.DocsPerSec, bf.CPUPer1kDocs, res.AssemblerCPUPer1kDocs)
		}
		if err != nil {
			return res, err
		}
	} else if err := h.waitLive(ctx, procs, h.flussoPool, prefix+"users"); err != nil {
		return res, err
	}
	if h.scaleRate > 0 {
		res.LiveFrom = time.Since(start).Seconds()
		liveRequests := requests()
		lr, err := runLive(ctx, liveSpec{
			system: "flusso", label: res.label(), db: h.flussoPool, admin: h.admin, dbName: h.flussoDB,
			search: h.search, index: prefix + "users", gen: h.gen, stream: uint64(10 + k), rate: h.scaleRate,
			duration: h.liveFor, txSize: h.txSize, procs: procs, drainLimit: h.drainLimit,
		})
		if err != nil {
			return res, fmt.Errorf("live at %d/s: %w", h.scaleRate, err)
		}
		h.logLive(lr)
		res.Live = lr
		res.LiveTo = time.Since(start).Seconds()
		res.LivePGRequests = requests() - liveRequests
		var cpu float64
		for _, a := range assemblers {
			cpu += lr.CPU[a.name].CPUSeconds
		}
		if lr.Changes > 0 {
			res.AssemblerCPUPer1kChanges = cpu / float64(lr.Changes) * 1000
		}
	}
	return res, nil
}

// waitLive waits until a pipeline follows live changes: a probe committed
// now becomes searchable.
func (h *harness) waitLive(ctx context.Context, procs group, db *pgxpool.Pool, index string) error {
	pr := newProber(liveSpec{db: db, gen: h.gen, search: h.search, index: index}, time.Now())
	limit := h.drainLimit + 2*time.Minute
	deadline := time.Now().Add(limit)
	var v int64
	var committed time.Time
	for time.Now().Before(deadline) {
		// A probe committed before the slot existed is never captured:
		// commit a fresh one every few seconds until one shows.
		if time.Since(committed) > 5*time.Second {
			var err error
			if v, err = pr.commit(ctx, true); err != nil {
				return err
			}
			committed = time.Now()
		}
		if err := procs.failed(); err != nil {
			return err
		}
		seen, err := h.search.visible(ctx, index, []int64{v})
		if err == nil && seen[v] {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("a probe did not become visible in %s within %s", index, limit)
}

func waitPort(ctx context.Context, port int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		c, err := (&netDialer).DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on 127.0.0.1:%d after %s", port, limit)
}

func natsVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server:"))
}

// write saves the JSON result and the markdown table, and keeps only the
// latest committed result: older files in out are removed.
func (h *harness) write(out string) error {
	if !filepath.IsAbs(out) {
		out = filepath.Join(h.repo, out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	stamp := h.res.Started.Format("20060102-150405")
	old, _ := filepath.Glob(filepath.Join(out, "*.json"))
	oldMD, _ := filepath.Glob(filepath.Join(out, "*.md"))
	b, err := json.MarshalIndent(h.res, "", "  ")
	if err != nil {
		return err
	}
	jsonPath := filepath.Join(out, stamp+".json")
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return err
	}
	md := markdown(h.res)
	if err := os.WriteFile(filepath.Join(out, stamp+".md"), []byte(md), 0o644); err != nil {
		return err
	}
	oldPNG, _ := filepath.Glob(filepath.Join(out, "*.png"))
	pngPath := filepath.Join(out, stamp+".png")
	plot := exec.Command(filepath.Join(h.venv, "bin", "python"), filepath.Join(h.repo, "bench", "plot.py"), jsonPath, pngPath)
	plot.Stdout, plot.Stderr = os.Stderr, os.Stderr
	if err := plot.Run(); err != nil {
		h.logf("no plot (bench/pgsync/setup.sh installs matplotlib): %v", err)
	}
	for _, f := range append(append(old, oldMD...), oldPNG...) {
		if !strings.HasPrefix(filepath.Base(f), stamp) {
			_ = os.Remove(f)
		}
	}
	fmt.Println()
	fmt.Print(md)
	fmt.Printf("\nresults: %s\n", jsonPath)
	return nil
}

// environment records the versions and the machine.
func (h *harness) environment(ctx context.Context) environment {
	env := environment{
		Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
		OpenSearch: h.search.version(ctx), NATS: natsVersion(h.natsBin),
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%f", &kb)
		env.MemoryGB = kb / (1 << 20)
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				env.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	_ = h.admin.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&env.Postgres)
	rows, err := h.admin.Query(ctx, `SELECT name, setting FROM pg_settings WHERE name IN
		('shared_buffers', 'fsync', 'synchronous_commit', 'max_wal_size', 'work_mem')`)
	if err == nil {
		env.PostgresSettings = map[string]string{}
		for rows.Next() {
			var k, v string
			if rows.Scan(&k, &v) == nil {
				env.PostgresSettings[k] = v
			}
		}
		rows.Close()
	}
	env.FlussoCommit = h.commit
	if h.rev == "" {
		if out, err := exec.Command("git", "-C", h.repo, "rev-parse", "--short", "HEAD").Output(); err == nil {
			env.FlussoCommit = strings.TrimSpace(string(out))
			if st, err := exec.Command("git", "-C", h.repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
				env.FlussoCommit += "+dirty"
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		env.LoadAvgAtStart = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return env
}

var netDialer net.Dialer
