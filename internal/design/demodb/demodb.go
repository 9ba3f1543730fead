// Package demodb gives tests of the designer and the scaffolding the demo
// shop (deploy/demo/seed.sql) in a fresh database of the dev cluster, with
// a copy of the demo deployment's flusso.toml and schemas pointing at it.
package demodb

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/flusso/flusso/internal/testenv"
)

// psqlMeta matches the psql commands of seed.sql (\set …), which are not SQL.
var psqlMeta = regexp.MustCompile(`(?m)^\\.*$`)

// Database creates a database loaded with the demo shop and returns its URL.
func Database(t testing.TB) string {
	t.Helper()
	url := testenv.Postgres(t)
	seed, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "deploy", "demo", "seed.sql"))
	if err != nil {
		t.Fatalf("demodb: reading the seed: %v", err)
	}
	conn := testenv.Conn(t, url)
	if _, err := conn.Exec(context.Background(), psqlMeta.ReplaceAllString(string(seed), "")); err != nil {
		t.Fatalf("demodb: loading deploy/demo/seed.sql: %v", err)
	}
	return url
}

// Deployment copies the demo's flusso.toml and schemas into a fresh
// directory, with the source pointing at the demo database dbURL, and
// returns the config's path.
func Deployment(t testing.TB, dbURL string) string {
	t.Helper()
	src := filepath.Join(testenv.RepoRoot(t), "deploy", "demo")
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(src, "flusso.toml"))
	if err != nil {
		t.Fatalf("demodb: %v", err)
	}
	re := regexp.MustCompile(`(?m)^connection_url = .*$`)
	if !re.Match(cfg) {
		t.Fatal("demodb: deploy/demo/flusso.toml has no connection_url line")
	}
	cfg = re.ReplaceAll(cfg, []byte("connection_url = "+strconv.Quote(dbURL)))
	if err := os.WriteFile(filepath.Join(dir, "flusso.toml"), cfg, 0o644); err != nil {
		t.Fatalf("demodb: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "schemas"), 0o755); err != nil {
		t.Fatalf("demodb: %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(src, "schemas"))
	if err != nil {
		t.Fatalf("demodb: %v", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, "schemas", e.Name()))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "schemas", e.Name()), b, 0o644)
		}
		if err != nil {
			t.Fatalf("demodb: %v", err)
		}
	}
	return filepath.Join(dir, "flusso.toml")
}
