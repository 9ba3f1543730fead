package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flusso/flusso/pkg/mapping"
	"github.com/flusso/flusso/pkg/schema"
)

// pgsyncSchema is the PGSync equivalent of bench/schemas/users.schema.yml:
// the same tree of relations, labelled like flusso's fields, with flusso's
// own mapping (nested to-many joins, the same analyzers) so that OpenSearch
// does the same work for both. PGSync has no aggregates, so its documents
// lack the four aggregate fields: that makes its job lighter, not heavier.
func pgsyncSchema(ix *schema.Index, database, index string) ([]byte, error) {
	opts := mapping.Options{TextAnalysis: mapping.Builtin, AutoSubfields: true}
	props := mapping.For(ix, opts)["properties"].(map[string]any)
	for _, agg := range []string{"order_count", "total_spent", "avg_order", "last_order_at"} {
		delete(props, agg)
	}
	settings := mapping.Settings(ix, opts, 1, 0)
	setting := map[string]any{
		"number_of_shards":   1,
		"number_of_replicas": 0,
		"refresh_interval":   "1s",
		"analysis":           settings["analysis"],
	}
	rel := func(typ string, extra ...any) map[string]any {
		r := map[string]any{"variant": "object", "type": typ}
		for i := 0; i+1 < len(extra); i += 2 {
			r[extra[i].(string)] = extra[i+1]
		}
		return r
	}
	doc := []map[string]any{{
		"database": database,
		"index":    index,
		"setting":  setting,
		"mapping":  props,
		"nodes": map[string]any{
			"table":   "users",
			"columns": []string{"id", "email", "name", "country", "score", "probe", "created_at"},
			"children": []any{
				map[string]any{
					"table": "profiles", "label": "profile",
					"columns":      []string{"bio", "city", "birthday"},
					"relationship": rel("one_to_one"),
				},
				map[string]any{
					"table": "orders", "label": "orders",
					"columns":      []string{"id", "status", "total", "created_at"},
					"relationship": rel("one_to_many"),
					"children": []any{map[string]any{
						"table": "order_items", "label": "items",
						"columns":      []string{"id", "quantity", "unit_price"},
						"relationship": rel("one_to_many"),
						"children": []any{map[string]any{
							"table": "products", "label": "product",
							"columns":      []string{"id", "name", "price"},
							"relationship": rel("one_to_one"),
							"children": []any{map[string]any{
								"table": "categories", "label": "category",
								"columns":      []string{"name"},
								"relationship": rel("one_to_one"),
							}},
						}},
					}},
				},
				map[string]any{
					"table": "tags", "label": "tags",
					"columns":      []string{"id", "name"},
					"relationship": rel("one_to_many", "through_tables", []string{"user_tags"}),
				},
			},
		},
	}}
	return json.MarshalIndent(doc, "", "  ")
}

// pgsyncIndex is PGSync's index.
const pgsyncIndex = "bench_pgsync_users"

// pgsyncEnv is PGSync's environment: everything it reads comes from here.
func (h *harness) pgsyncEnv() []string {
	u := h.pgURL
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	pass, _ := u.User.Password()
	return []string{
		"PG_HOST=" + u.Hostname(), "PG_PORT=" + port, "PG_USER=" + u.User.Username(), "PG_PASSWORD=" + pass,
		"PG_SSLMODE=disable",
		"OPENSEARCH=true", "ELASTICSEARCH=false", "ELASTICSEARCH_URL=" + h.osURL,
		"REDIS_HOST=127.0.0.1", "REDIS_PORT=" + strconv.Itoa(h.redisPort),
		"CHECKPOINT_PATH=" + h.work,
		"LOG_INTERVAL=5",
		// Defaults otherwise, as a user would run it.
	}
}

func (h *harness) pgsyncBin(name string) string { return filepath.Join(h.venv, "bin", name) }

// pgsyncVersion is the installed PGSync's version.
func (h *harness) pgsyncVersion() string {
	out, err := exec.Command(h.pgsyncBin("python"), "-c", "import importlib.metadata as m; print(m.version('pgsync'))").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func redisVersion() string {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return "unknown"
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return strings.TrimSpace(string(out))
}

type pgsyncResult struct {
	Version          string        `json:"version"`
	Redis            string        `json:"redis_version"`
	BootstrapSeconds float64       `json:"bootstrap_seconds"`
	Backfill         *backfillRes  `json:"backfill,omitempty"`
	Live             []*liveResult `json:"live,omitempty"`
	Error            string        `json:"error,omitempty"`
	SchemaFile       string        `json:"schema_file"`
}

// runPGSync seeds and follows the PGSync copy of the database.
func (h *harness) runPGSync(ctx context.Context) (*pgsyncResult, error) {
	res := &pgsyncResult{Version: h.pgsyncVersion(), Redis: redisVersion()}
	const index = pgsyncIndex
	if err := h.search.drop(ctx, index); err != nil {
		return res, err
	}
	doc, err := pgsyncSchema(h.schema, h.pgsyncDB, index)
	if err != nil {
		return res, err
	}
	res.SchemaFile = filepath.Join(h.work, "pgsync-schema.json")
	if err := os.WriteFile(res.SchemaFile, doc, 0o644); err != nil {
		return res, err
	}
	if h.repo != "" {
		// The committed reference copy, for readers of the benchmark.
		_ = os.WriteFile(filepath.Join(h.repo, "bench", "pgsync", "schema.json"), append(doc, '\n'), 0o644)
	}

	redis, err := startProc("redis", "redis", filepath.Join(h.work, "redis.log"), nil,
		"redis-server", "--port", strconv.Itoa(h.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err != nil {
		return res, err
	}
	defer redis.stop(10 * time.Second)
	time.Sleep(500 * time.Millisecond)
	env := h.pgsyncEnv()

	h.logf("pgsync: bootstrap")
	start := time.Now()
	boot, err := startProc("pgsync-bootstrap", "bootstrap", filepath.Join(h.work, "pgsync-bootstrap.log"), env,
		h.pgsyncBin("bootstrap"), "--config", res.SchemaFile)
	if err != nil {
		return res, err
	}
	if err := boot.wait(10 * time.Minute); err != nil {
		return res, fmt.Errorf("pgsync bootstrap: %w\n%s", err, boot.tail(20))
	}
	res.BootstrapSeconds = time.Since(start).Seconds()

	// Backfill: one pass of `pgsync` without --daemon syncs everything and
	// exits. /proc is gone once it exits, so it is sampled as it runs.
	h.logf("pgsync: backfill of %d users", h.users)
	svc := services(h.pgsyncDB)
	start = time.Now()
	once, err := startProc("pgsync", "pgsync", filepath.Join(h.work, "pgsync-backfill.log"), env,
		h.pgsyncBin("pgsync"), "--config", res.SchemaFile)
	if err != nil {
		return res, err
	}
	bf := &backfillRes{System: "pgsync"}
	var last usage
	var curve []point
	tick := time.NewTicker(500 * time.Millisecond)
	for done := false; !done; {
		select {
		case <-once.done:
			done = true
		case <-tick.C:
			if u := once.sample(); u.CPUSeconds > 0 {
				last.CPUSeconds = max(last.CPUSeconds, u.CPUSeconds)
				last.PeakRSSMB = max(last.PeakRSSMB, u.PeakRSSMB)
				last.RSSMB = u.RSSMB
			}
			if n, err := h.search.indexed(ctx, index); err == nil {
				curve = append(curve, point{time.Since(start).Seconds(), float64(n)})
			}
		case <-ctx.Done():
			once.stop(10 * time.Second)
			return res, ctx.Err()
		}
	}
	tick.Stop()
	took := time.Since(start)
	if once.err != nil {
		return res, fmt.Errorf("pgsync: %w\n%s", once.err, once.tail(20))
	}
	if _, _, err := h.search.do(ctx, "POST", "/"+index+"/_refresh", nil); err != nil {
		return res, err
	}
	n, err := h.search.count(ctx, index)
	if err != nil {
		return res, err
	}
	bf.Docs, bf.Seconds = n, took.Seconds()
	bf.DocsPerSec = float64(n) / bf.Seconds
	bf.Curve = append(curve, point{bf.Seconds, float64(n)})
	bf.CPU = map[string]usage{"pgsync": last}
	bf.CPUPer1kDocs = last.CPUSeconds / float64(max(n, 1)) * 1000
	bf.PeakRSSMB = map[string]float64{"pgsync": last.PeakRSSMB}
	bf.ServiceCPU = servicesDelta(services(h.pgsyncDB), svc)
	bf.LoadAvg = loadavg()
	res.Backfill = bf
	h.logf("pgsync: backfill %d docs in %.1fs (%.0f docs/s)", n, bf.Seconds, bf.DocsPerSec)
	if n != int64(h.users) {
		return res, fmt.Errorf("pgsync indexed %d documents, expected %d", n, h.users)
	}

	if len(h.pgsyncRates) == 0 {
		return res, nil
	}
	daemon, err := startProc("pgsync", "pgsync", filepath.Join(h.work, "pgsync-daemon.log"), env,
		h.pgsyncBin("pgsync"), "--config", res.SchemaFile, "--daemon")
	if err != nil {
		return res, err
	}
	defer daemon.stop(20 * time.Second)
	procs := group{daemon, redis}
	// Wait until it caught up with its checkpoint and follows changes.
	if err := h.waitLive(ctx, procs, h.pgsyncPool, index); err != nil {
		return res, err
	}
	res.Live, err = h.liveSeries(ctx, "pgsync", h.pgsyncRates, 100, false, "", h.pgsyncPool, h.pgsyncDB, index, procs)
	if err != nil {
		return res, err
	}
	return res, nil
}
