package sqlbuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/schema"
)

// TestRenderCost measures what building documents costs Postgres and this
// process with the builder's statement and with alternative ways of
// rendering the same documents, on a seeded benchmark database:
//
//	go run ./bench/cmd/benchgen -db bench_render
//	FLUSSO_BENCH_RENDER_DB=postgres://flusso:flusso@127.0.0.1:54329/bench_render \
//	  go test -count=1 -run TestRenderCost -v ./pkg/sqlbuild/
//
// Every variant builds the same keys, a batch at a time as the assembler
// does, in rounds that alternate the variants (the machine is shared: load
// comes and goes), each on its own connection whose backend's CPU time is
// read from /proc. Every document a variant builds must be byte-identical
// to the builder's; the test fails otherwise. It prints figures and asserts no
// timing. Skipped without FLUSSO_BENCH_RENDER_DB.
func TestRenderCost(t *testing.T) {
	url := os.Getenv("FLUSSO_BENCH_RENDER_DB")
	if url == "" {
		t.Skip("FLUSSO_BENCH_RENDER_DB is not set (a database seeded by bench/cmd/benchgen)")
	}
	nkeys := envInt(t, "FLUSSO_BENCH_RENDER_KEYS", 10_000)
	rounds := envInt(t, "FLUSSO_BENCH_RENDER_ROUNDS", 5)
	batch := envInt(t, "FLUSSO_BENCH_RENDER_BATCH", 250)
	only := os.Getenv("FLUSSO_BENCH_RENDER_VARIANTS")
	ctx := context.Background()

	def, err := schema.Load("../../bench/schemas/users.schema.yml")
	if err != nil {
		t.Fatal(err)
	}
	x, err := Compile("users", def)
	if err != nil {
		t.Fatal(err)
	}
	setup, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close(ctx)
	if err := x.Prepare(ctx, setup); err != nil {
		t.Fatal(err)
	}
	keys, err := x.Keys(ctx, setup, "", true, nkeys)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := 0; i < len(keys); i += batch {
		docs, err := x.Build(ctx, setup, keys[i:min(i+batch, len(keys))])
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			want[d.ID] = d.Body
		}
	}

	variants := renderVariants(t, x)
	if only != "" {
		variants = slices.DeleteFunc(variants, func(v renderVariant) bool {
			return !slices.Contains(strings.Split(only, ","), v.name)
		})
	}
	type sample struct{ pg, client, wall float64 }
	samples := make([][]sample, len(variants))
	conns := make([]*pgx.Conn, len(variants))
	pids := make([]int, len(variants))
	for i, v := range variants {
		conns[i], err = pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close(ctx)
		if err := conns[i].QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pids[i]); err != nil {
			t.Fatal(err)
		}
		for _, s := range v.session {
			if _, err := conns[i].Exec(ctx, s); err != nil {
				t.Fatalf("%s: %s: %v", v.name, s, err)
			}
		}
		// A warm-up pass: the statement is prepared and the data cached.
		if _, err := v.build(ctx, conns[i], keys[:min(batch*2, len(keys))]); err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
	}
	for r := range rounds {
		for j := range variants {
			i := (j + r) % len(variants) // a different order each round
			v := variants[i]
			got := map[string][]byte{}
			pg0, cl0, w0 := backendCPU(t, pids[i]), selfCPU(), time.Now()
			for k := 0; k < len(keys); k += batch {
				docs, err := v.build(ctx, conns[i], keys[k:min(k+batch, len(keys))])
				if err != nil {
					t.Fatalf("%s: %v", v.name, err)
				}
				for _, d := range docs {
					got[d.ID] = d.Body
				}
			}
			wall := time.Since(w0).Seconds()
			pg, cl := backendCPU(t, pids[i])-pg0, selfCPU()-cl0
			samples[i] = append(samples[i], sample{pg, cl, wall})
			if r == 0 {
				identical(t, v.name, want, got)
			}
		}
	}
	per1k := func(s float64) float64 { return s / float64(len(keys)) * 1000 }
	var b strings.Builder
	fmt.Fprintf(&b, "%d documents, batches of %d, %d rounds; medians per 1k documents\n", len(keys), batch, rounds)
	fmt.Fprintf(&b, "| variant | Postgres CPU-s | flusso CPU-s | both | wall s | identical |\n|---|---:|---:|---:|---:|---|\n")
	for i, v := range variants {
		med := func(f func(sample) float64) float64 {
			vs := make([]float64, len(samples[i]))
			for j, s := range samples[i] {
				vs[j] = f(s)
			}
			sort.Float64s(vs)
			return vs[len(vs)/2]
		}
		pg, cl := med(func(s sample) float64 { return s.pg }), med(func(s sample) float64 { return s.client })
		both := med(func(s sample) float64 { return s.pg + s.client })
		fmt.Fprintf(&b, "| %s | %.3f | %.3f | %.3f | %.3f | yes |\n", v.name, per1k(pg), per1k(cl), per1k(both),
			per1k(med(func(s sample) float64 { return s.wall })))
	}
	t.Log("\n" + b.String())
}

// renderVariant is one way of building the documents of a batch of keys.
type renderVariant struct {
	name    string
	session []string // run once on the variant's connection
	build   func(ctx context.Context, c *pgx.Conn, keys []string) ([]Doc, error)
}

func renderVariants(t *testing.T, x *Index) []renderVariant {
	vs := []renderVariant{
		{name: "sqlbuild", build: func(ctx context.Context, c *pgx.Conn, keys []string) ([]Doc, error) {
			return x.Build(ctx, c, keys)
		}},
	}
	// The statement is prepared once per connection; Postgres then plans it
	// for every call's keys (custom) or once for any keys (generic).
	for _, mode := range []string{"generic", "custom"} {
		vs = append(vs, renderVariant{name: "sqlbuild, " + mode + " plan", session: []string{"SET plan_cache_mode = force_" + mode + "_plan"}, build: vs[0].build})
	}
	vs = append(vs, renderVariant{name: "rendered in Go (prototype)", build: goRender})
	files, err := filepath.Glob("testdata/render/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sql := string(b)
		vs = append(vs, renderVariant{name: strings.TrimSuffix(filepath.Base(f), ".sql"),
			build: func(ctx context.Context, c *pgx.Conn, keys []string) ([]Doc, error) {
				var docs []Doc
				err := fetch(ctx, c, sql, x.build.with(keys), func(id string, body []byte) {
					docs = append(docs, Doc{ID: id, Body: body})
				})
				return docs, err
			}})
	}
	return vs
}

// identical fails unless got holds exactly the documents of want, byte for
// byte.
func identical(t *testing.T, name string, want, got map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d documents, the builder %d", name, len(got), len(want))
	}
	for id, w := range want {
		if g, ok := got[id]; !ok || !bytes.Equal(g, w) {
			t.Fatalf("%s: document %s differs from the builder's:\n got %s\nwant %s", name, id, g, w)
		}
	}
}

// backendCPU is the CPU time, in seconds, of the Postgres backend pid.
func backendCPU(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("reading the backend's CPU time (Postgres must run on this machine): %v", err)
	}
	// Fields count from after the command name, which may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// selfCPU is the CPU time of this process, every thread, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}
