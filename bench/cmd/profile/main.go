// Command profile runs the whole flusso pipeline in this process (as
// `flusso run` does with the embedded NATS) against an already seeded
// benchmark database, with a CPU profile over the backfill and, if asked,
// over a live phase of root and child updates, so that `go tool pprof`
// shows where flusso's own time goes. The flusso binary has no pprof
// endpoint; this is the way in.
//
//	go run ./bench/cmd/benchgen -users 50000          # once
//	go run ./bench/cmd/profile -out bench/results/tmp  # then
//	go tool pprof -top bench/results/tmp/backfill.cpu.pprof
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/bench/datagen"
	"github.com/flusso/flusso/internal/run"
	"github.com/flusso/flusso/pkg/config"
)

func main() {
	log.SetFlags(0)
	db := flag.String("db", "postgres://flusso:flusso@127.0.0.1:54329/bench_flusso?sslmode=disable", "seeded benchmark database")
	osURL := flag.String("opensearch", envOr("FLUSSO_TEST_OPENSEARCH_URL", "http://127.0.0.1:59200"), "OpenSearch URL")
	schemaPath := flag.String("schema", "bench/schemas/users.schema.yml", "index schema")
	out := flag.String("out", "bench/results/tmp", "directory of the profiles")
	users := flag.Int("users", datagen.QuickUsers, "users in the database (for the live workload's keys)")
	liveRate := flag.Int("live-rate", 0, "changes/s of a profiled live phase after the backfill (0: none)")
	liveSecs := flag.Int("live-secs", 30, "seconds of the live phase")
	flag.Parse()
	if err := profile(*db, *osURL, *schemaPath, *out, *users, *liveRate, time.Duration(*liveSecs)*time.Second); err != nil {
		log.Fatalf("profile: %v", err)
	}
}

func profile(db, osURL, schemaPath, out string, users, liveRate int, liveFor time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "flusso-profile")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	schemaBytes, err := os.ReadFile(schemaPath)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "users.schema.yml"), schemaBytes, 0o644); err != nil {
		return err
	}
	const prefix, slot = "bench_prof_", "bench_prof"
	toml := fmt.Sprintf("[source]\ntype = \"postgres\"\nconnection_url = %q\n\n[sinks.primary]\ntype = \"opensearch\"\nurl = %q\nnumber_of_replicas = 0\nrefresh_interval = \"1s\"\n\n[[index]]\nname = \"users\"\nschema = \"users.schema.yml\"\nenabled = true\n", db, osURL)
	if err := os.WriteFile(filepath.Join(dir, "flusso.toml"), []byte(toml), 0o644); err != nil {
		return err
	}
	cfg, err := config.Load(filepath.Join(dir, "flusso.toml"))
	if err != nil {
		return err
	}
	drop(osURL, prefix)
	defer drop(osURL, prefix)
	defer dropSlot(db, slot)

	backfillProf := filepath.Join(out, "backfill.cpu.pprof")
	f, err := os.Create(backfillProf)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	start := time.Now()
	stopPeak := watchPeakHeap(filepath.Join(out, "backfill.peak-heap.pprof"))
	done := make(chan error, 1)
	go func() {
		done <- run.Run(ctx, run.Options{
			Config: cfg, Slot: slot, Publication: "bench", ManagePublication: true, QueueCapacity: 1024,
			LagPoll: time.Second, IndexPrefix: prefix, DataDir: filepath.Join(dir, "data"), Version: "profile",
		})
	}()
	for !seeded(osURL, prefix) {
		select {
		case err := <-done:
			return fmt.Errorf("pipeline ended: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	pprof.StopCPUProfile()
	f.Close()
	stopPeak()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	log.Printf("backfill seeded in %.1fs; heap in use %d MB, Go runtime total %d MB", time.Since(start).Seconds(), ms.HeapInuse>>20, ms.Sys>>20)
	writeHeap(filepath.Join(out, "backfill.heap.pprof"))
	top(backfillProf)

	if liveRate > 0 {
		liveProf := filepath.Join(out, "live.cpu.pprof")
		f, err := os.Create(liveProf)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		n, err := load(ctx, db, datagen.Gen{Users: users, Seed: datagen.DefaultSeed}, liveRate, liveFor)
		pprof.StopCPUProfile()
		f.Close()
		if err != nil {
			return err
		}
		log.Printf("live: %d changes in %s", n, liveFor)
		top(liveProf)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	return nil
}

// load applies the benchmark's live workload at rate changes/s, five per
// transaction, for d.
func load(ctx context.Context, db string, g datagen.Gen, rate int, d time.Duration) (int, error) {
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	w := g.Workload(99)
	start, n := time.Now(), 0
	for time.Since(start) < d {
		if due := int(time.Since(start).Seconds() * float64(rate)); n+5 <= due {
			b := &pgx.Batch{}
			for range 5 {
				c := w.Next()
				b.Queue(c.SQL, c.Args...)
			}
			if err := pool.SendBatch(ctx, b).Close(); err != nil {
				return n, err
			}
			n += 5
			continue
		}
		time.Sleep(time.Millisecond)
	}
	return n, nil
}

func top(prof string) {
	cmd := exec.Command("go", "tool", "pprof", "-top", "-nodecount=35", prof)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	_ = cmd.Run()
	cmd = exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=35", prof)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	_ = cmd.Run()
}

func writeHeap(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.WriteHeapProfile(f)
}

func seeded(osURL, prefix string) bool {
	resp, err := http.Get(osURL + "/" + prefix + "flusso_meta/_doc/users")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var out struct {
		Source struct {
			Seeded bool `json:"seeded"`
		} `json:"_source"`
	}
	return json.NewDecoder(resp.Body).Decode(&out) == nil && out.Source.Seeded
}

func drop(osURL, prefix string) {
	req, _ := http.NewRequest(http.MethodDelete, osURL+"/"+prefix+"*?expand_wildcards=all", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

func dropSlot(db, slot string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	for range 50 {
		if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// watchPeakHeap writes a heap profile whenever the heap in use reaches a new
// high (checked twice a second), so the file ends up showing what the heap
// held at its peak, which is what bounds the process's RSS.
func watchPeakHeap(path string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var peak uint64
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				log.Printf("peak heap in use during the backfill: %d MB (profile %s)", peak>>20, path)
				return
			case <-tick.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak {
				peak = ms.HeapInuse
				writeHeap(path)
			}
		}
	}()
	return func() { close(done); <-finished }
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
