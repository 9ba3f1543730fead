// Command ceiling measures, on an already seeded benchmark database, how
// fast pkg/sqlbuild builds every document and how fast OpenSearch indexes
// those documents when they are bulk-indexed raw. make bench runs the same
// code inside the harness; this command is for looking at one of them
// alone.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/bench/ceiling"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

func main() {
	log.SetFlags(0)
	db := flag.String("db", "postgres://flusso:flusso@127.0.0.1:54329/bench_flusso?sslmode=disable", "seeded benchmark database (go run ./bench/cmd/benchgen)")
	osURL := flag.String("opensearch", envOr("FLUSSO_TEST_OPENSEARCH_URL", "http://127.0.0.1:59200"), "OpenSearch URL")
	schemaPath := flag.String("schema", "bench/schemas/users.schema.yml", "index schema")
	index := flag.String("index", "bench_ceiling_users", "index to bulk into (recreated, then deleted)")
	workers := flag.Int("workers", 2, "build goroutines")
	chunk := flag.Int("chunk", 250, "keys per build statement")
	batch := flag.Int("batch", 1000, "documents per bulk request")
	conc := flag.String("concurrency", "1,2", "bulk requests in flight, one measurement each")
	flag.Parse()

	ctx := context.Background()
	sch, err := schema.Load(*schemaPath)
	if err != nil {
		log.Fatal(err)
	}
	ix, err := sqlbuild.Compile("users", sch)
	if err != nil {
		log.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, *db)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	dir, err := os.MkdirTemp("", "flusso-ceiling")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	docs := filepath.Join(dir, "docs.tsv")
	br, err := ceiling.Build(ctx, pool, ix, *workers, *chunk, docs)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("build: %d docs, %.0f MB, %.1f s: %.0f docs/s", br.Docs, float64(br.Bytes)/(1<<20), br.Took.Seconds(), br.DocsPerSec)
	for _, c := range strings.Split(*conc, ",") {
		n := 0
		for _, ch := range c {
			n = n*10 + int(ch-'0')
		}
		for _, overwrite := range []bool{false, true} {
			r, err := ceiling.Bulk(ctx, *osURL, *index, sch, 0, *batch, n, docs, overwrite)
			if err != nil {
				log.Fatal(err)
			}
			log.Printf("bulk, %d in flight, overwrite %v: %d docs, %.1f s: %.0f docs/s", n, overwrite, r.Docs, r.Took.Seconds(), r.DocsPerSec)
		}
	}
	ceiling.Drop(ctx, *osURL, *index)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
