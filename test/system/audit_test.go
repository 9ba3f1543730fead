package system

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/flusso/flusso/bench/datagen"
	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// TestAuditRate measures `flusso audit --all` on the benchmark data set
// (FLUSSO_AUDIT_BENCH_USERS users, e.g. 50000; skipped when unset): its
// rate and peak RSS (VmHWM, sampled) as a process of its own, next to the rate of the build
// alone (the same keys walk and builds in one snapshot, without reading the
// sink). It prints figures; it asserts only that the audit found no drift.
func TestAuditRate(t *testing.T) {
	users, _ := strconv.Atoi(os.Getenv("FLUSSO_AUDIT_BENCH_USERS"))
	if users <= 0 {
		t.Skip("set FLUSSO_AUDIT_BENCH_USERS (e.g. 50000) to measure the audit rate")
	}
	ctx := context.Background()
	d := harness.NewDeployment(t, "SELECT 1")
	start := time.Now()
	if _, err := (datagen.Gen{Users: users, Seed: datagen.DefaultSeed}).Load(ctx, d.DB, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d users in %v", users, time.Since(start).Round(time.Second))
	body, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "bench", "schemas", "users.schema.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := d.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "users", Schema: string(body)}}})

	data := t.TempDir()
	p := harness.Launch(t, d.Options(cfg, data))
	p.Stages()
	start = time.Now()
	audit := func() (int, time.Duration, int64, time.Duration, string) {
		cmd := exec.Command(harness.Binary(t), "audit", "--config", filepath.Join(d.Dir, "flusso.toml"), "--slot", d.Slot())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Env = append(os.Environ(), "RUST_LOG=debug")
		began := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The child's rusage would count the test process's own peak (the
		// child shares its memory until exec), so its VmHWM is sampled.
		var peak int64
		sampled := make(chan struct{})
		stop := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				if kib := vmHWM(cmd.Process.Pid); kib > peak {
					peak = kib
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		err := cmd.Wait()
		took := time.Since(began)
		close(stop)
		<-sampled
		code := 0
		if err != nil {
			ee, ok := err.(*exec.ExitError)
			if !ok {
				t.Fatal(err)
			}
			code = ee.ExitCode()
		}
		cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return code, took, peak, cpu, out.String()
	}
	for {
		code, _, _, _, out := audit()
		if code == 0 {
			break
		}
		if time.Since(start) > 30*time.Minute {
			t.Fatalf("the backfill did not end: %s", out)
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("seeded in about %v", time.Since(start).Round(time.Second))
	p.StopClean() // the audit of a stopped deployment: nothing else competes for the cores

	ix, err := schema.Parse("users.schema.yml", body)
	if err != nil {
		t.Fatal(err)
	}
	// Alternated, since the machine's other load comes and goes.
	for round := 1; round <= 2; round++ {
		oneConn := buildAlone(t, d.DBURL, ix, 1)
		buildRate := buildAlone(t, d.DBURL, ix, 2)
		code, took, rss, cpu, out := audit()
		if code != 0 {
			t.Fatalf("audit: exit %d\n%s", code, out)
		}
		t.Log(out) // the report, and the debug log timing the sink's id scan
		rate := float64(users) / took.Seconds()
		t.Logf("round %d: build alone %.0f docs/s on 2 connections (%.0f on 1); audit --all %d docs in %v: %.0f docs/s (%.2f x the build rate on as many connections, %.2f x on 1), peak RSS %.0f MiB, audit process %.3f CPU-s per 1k docs",
			round, buildRate, oneConn, users, took.Round(time.Millisecond), rate, rate/buildRate, rate/oneConn, float64(rss)/1024, cpu.Seconds()/float64(users)*1000)
	}
}

// buildAlone walks the keys and builds every document in one snapshot, in
// batches of the audit's size on builders connections: on as many as the
// audit builds on (pkg/audit's builders, 2) it is the rate the audit is
// measured against, so that the ratio is the cost of reading and
// comparing; on one, the rate of the pipeline's builder on one connection.
func buildAlone(t *testing.T, dbURL string, ix *schema.Index, builders int) float64 {
	ctx := context.Background()
	x, err := sqlbuild.Compile("users", ix)
	if err != nil {
		t.Fatal(err)
	}
	begin := func() pgx.Tx {
		tx, err := testenv.Conn(t, dbURL).BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback(ctx) }) //nolint:errcheck // read-only
		return tx
	}
	tx := begin()
	var snapshot string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
		t.Fatal(err)
	}
	if err := x.Prepare(ctx, tx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var built atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan []string)
	for range builders {
		btx := begin()
		if _, err := btx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+snapshot+"'"); err != nil {
			t.Fatal(err)
		}
		g.Go(func() error {
			for keys := range batches {
				docs, err := x.Build(gctx, btx, keys)
				if err != nil {
					return err
				}
				built.Add(int64(len(docs)))
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(batches)
		return x.KeyPages(gctx, tx, 500, func(keys []string) error {
			select {
			case batches <- keys:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return float64(built.Load()) / time.Since(start).Seconds()
}

// vmHWM is the peak resident set of process pid in KiB, 0 once it is gone.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
