// Command benchgen creates the benchmark database and fills it with the
// seeded data set (see bench/datagen). make bench does this itself; this
// command is for preparing a database by hand.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/bench/datagen"
)

func main() {
	log.SetFlags(0)
	admin := flag.String("admin", envOr("FLUSSO_TEST_PG_URL", "postgres://flusso:flusso@127.0.0.1:54329/postgres?sslmode=disable"), "admin URL of the cluster")
	db := flag.String("db", "bench_flusso", "database to (re)create")
	users := flag.Int("users", datagen.QuickUsers, "users")
	seed := flag.Uint64("seed", datagen.DefaultSeed, "seed")
	flag.Parse()
	if err := run(*admin, *db, datagen.Gen{Users: *users, Seed: *seed}); err != nil {
		log.Fatalf("benchgen: %v", err)
	}
}

func run(admin, db string, g datagen.Gen) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	name := pgx.Identifier{db}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping %s (drop its replication slots first): %w", db, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return err
	}
	u.Path = "/" + db
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		return err
	}
	defer pool.Close()
	st, err := g.Load(ctx, pool, func(table string, rows int64) { log.Printf("%-12s %10d rows", table, rows) })
	if err != nil {
		return err
	}
	log.Printf("%d rows in %s, indexes and keys in %s: %s", st.Rows, st.Copy, st.PostLoad, u.Redacted())
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
