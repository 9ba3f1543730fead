package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/pkg/schema"
)

func fileText(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// richConfig writes a config of the generator's rich test schema into a
// fresh directory and returns its path.
func richConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "items.schema.yml"), fileText(t, "../../pkg/gogen/testdata/rich.schema.yml"))
	path := filepath.Join(dir, "flusso.toml")
	writeFile(t, path, "[source]\ntype = \"postgres\"\n\n[[index]]\nname = \"items\"\nschema = \"items.schema.yml\"\nenabled = true\n")
	return path
}

func TestGenGoHelp(t *testing.T) {
	code, stdout, _ := flusso(t, "gen", "go", "--help")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, v := range []string{"--config", "$FLUSSO_CONFIG", "--out", "$FLUSSO_GEN_OUT", "--check", "$FLUSSO_GEN_CHECK",
		"--package", "$FLUSSO_GEN_PACKAGE", "--sink", "$FLUSSO_GEN_SINK"} {
		if !strings.Contains(stdout, v) {
			t.Errorf("gen go --help does not show %s", v)
		}
	}
}

func TestGenGoUsage(t *testing.T) {
	cfg := richConfig(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no dir", []string{"--config", cfg}, "gen go needs --out DIR (FLUSSO_GEN_OUT), or --check DIR"},
		{"both dirs", []string{"--config", cfg, "--out", dir, "--check", dir}, "--out and --check exclude each other"},
		{"bad package", []string{"--config", cfg, "--out", dir, "--package", "a-b"}, `package name "a-b" is not a Go identifier`},
		{"unknown sink", []string{"--config", cfg, "--out", dir, "--package", "p", "--sink", "backup"}, `--sink: ` + cfg + `: no OpenSearch sink is named "backup"`},
		{"bad config", []string{"--config", filepath.Join(dir, "nope.toml"), "--out", dir}, "nope.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := flusso(t, append([]string{"gen", "go"}, tc.args...)...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d with %q", code, stderr, exitUsage, tc.want)
			}
		})
	}
}

// TestGenGoCheck is the drift check an application's CI runs: it fails
// naming the file once the schema changes, and passes once regenerated.
func TestGenGoCheck(t *testing.T) {
	cfg := richConfig(t)
	out := filepath.Join(t.TempDir(), "search")
	file := filepath.Join(out, "items.gen.go")

	code, _, stderr := flusso(t, "gen", "go", "--config", cfg, "--check", out)
	if code != exitFailure || !strings.Contains(stderr, file+": missing") {
		t.Fatalf("check before generating: exit %d, %q", code, stderr)
	}
	code, stdout, stderr := flusso(t, "gen", "go", "--config", cfg, "--out", out)
	if code != exitOK || stdout != "wrote "+file+"\n" {
		t.Fatalf("generate: exit %d, %q %q", code, stdout, stderr)
	}
	if !strings.Contains(fileText(t, file), "\npackage search\n") {
		t.Fatal("the package is not named after the directory")
	}
	if code, stdout, stderr := flusso(t, "gen", "go", "--config", cfg, "--check", out); code != exitOK || !strings.Contains(stdout, "up to date") {
		t.Fatalf("check after generating: exit %d, %q %q", code, stdout, stderr)
	}

	schemaFile := filepath.Join(filepath.Dir(cfg), "items.schema.yml")
	writeFile(t, schemaFile, strings.Replace(fileText(t, schemaFile), "  - identifier: sku\n", "  - keyword: sku\n", 1))
	code, _, stderr = flusso(t, "gen", "go", "--config", cfg, "--check", out)
	if code != exitFailure || !strings.Contains(stderr, file+": stale: made from items.schema.yml (schema hash ") {
		t.Fatalf("check after a schema change: exit %d, %q", code, stderr)
	}
	if code, _, stderr := flusso(t, "gen", "go", "--config", cfg, "--out", out); code != exitOK {
		t.Fatalf("regenerate: exit %d, %q", code, stderr)
	}
	if code, _, stderr := flusso(t, "gen", "go", "--config", cfg, "--check", out); code != exitOK {
		t.Fatalf("check after regenerating: exit %d, %q", code, stderr)
	}
}

// TestReadSide seeds the demo shop and the rich test schema through a real
// pipeline, generates their code with `flusso gen go`, and runs an
// application built from it (testdata/readside) against the indexes. Every
// document must decode strictly into the generated types and encode back
// to what is stored; the typed queries must find what Postgres holds.
func TestReadSide(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a pipeline and builds a module")
	}
	var seed []string
	for _, line := range strings.Split(fileText(t, "../../deploy/demo/seed.sql"), "\n") {
		if !strings.HasPrefix(line, `\`) { // psql meta-commands
			seed = append(seed, line)
		}
	}
	d := harness.NewDeployment(t, strings.Join(seed, "\n")+fileText(t, "../../pkg/gogen/testdata/rich.sql"))
	schemas := map[string]string{
		"users":    fileText(t, "../../deploy/demo/schemas/users.schema.yml"),
		"products": fileText(t, "../../deploy/demo/schemas/products.schema.yml"),
		"items":    fileText(t, "../../pkg/gogen/testdata/rich.schema.yml"),
	}
	c := harness.Config{}
	for _, name := range []string{"users", "products", "items"} {
		c.Indexes = append(c.Indexes, harness.Index{Name: name, Schema: schemas[name]})
	}
	cfg := d.WriteConfig(c)
	harness.Launch(t, d.Options(cfg, t.TempDir()))
	for _, name := range []string{"users", "products", "items"} {
		d.Converge(name, schemas[name], 2*time.Minute)
	}

	mod := t.TempDir()
	if code, _, stderr := flusso(t, "gen", "go", "--config", cfg.Path, "--out", filepath.Join(mod, "gen")); code != exitOK {
		t.Fatalf("gen go: exit %d: %s", code, stderr)
	}
	query, err := filepath.Abs("../../query")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(mod, "go.mod"), "module example.com/app\n\ngo 1.26\n\nrequire github.com/flusso/flusso/query v0.0.0\n\nreplace github.com/flusso/flusso/query => "+query+"\n")
	writeFile(t, filepath.Join(mod, "go.sum"), fileText(t, filepath.Join(query, "go.sum")))
	writeFile(t, filepath.Join(mod, "main.go"), fileText(t, "testdata/readside/main.go"))
	vet := exec.Command("go", "vet", "./...")
	vet.Dir = mod
	vet.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if b, err := vet.CombinedOutput(); err != nil {
		t.Fatalf("go vet: %v\n%s", err, b)
	}
	app := exec.Command("go", "run", ".")
	app.Dir = mod
	app.Env = append(vet.Env, "PRIMARY_OPENSEARCH_URL="+d.OpenSearch, "FLUSSO_INDEX_PREFIX="+d.Prefix)
	var stderr strings.Builder
	app.Stderr = &stderr
	stdout, err := app.Output()
	if err != nil {
		t.Fatalf("the application failed: %v\n%s", err, stderr.String())
	}
	var got map[string]any
	if err := json.Unmarshal(stdout, &got); err != nil {
		t.Fatalf("the application's output: %v\n%s", err, stdout)
	}

	ids := func(where, order string) string {
		return "SELECT coalesce(json_agg(id::text ORDER BY " + order + "), '[]') FROM items WHERE " + where
	}
	byID := func(where string) string { return ids(where, "id") }
	want := map[string]string{
		"all users":                       "SELECT json_agg(id::text ORDER BY id) FROM users WHERE deleted_at IS NULL",
		"all products":                    "SELECT json_agg(id::text ORDER BY id) FROM products",
		"all items":                       byID("true"),
		"term priority high":              byID("priority = 'high'"),
		"terms id 1 2 3 99":               byID("id IN (1, 2, 3, 99)"),
		"range stock 100..200":            byID("stock >= 100 AND stock < 200"),
		"range released":                  byID("released > '2024-01-10' AND released <= '2024-01-20'"),
		"exists sku":                      byID("sku IS NOT NULL"),
		"match name hammer":               byID(`name ~* '\mhammer\M'`),
		"bool garden not stock < 100":     byID(`name ~* '\mgarden\M' AND (stock IS NULL OR stock >= 100)`),
		"nested live variant price >= 20": byID("EXISTS (SELECT FROM variants v WHERE v.item_id = items.id AND v.state = 'live' AND v.price >= 20)"),
		"nested review stars 5":           byID("EXISTS (SELECT FROM variants v JOIN reviews r ON r.variant_id = v.id WHERE v.item_id = items.id AND r.stars = 5)"),
		// Variants in their declared order, then other values as they
		// are, then none.
		"sort priority":  ids("true", `priority IS NULL, CASE priority WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 ELSE 3 END, priority COLLATE "C", id`),
		"sort name desc": ids("true", `name COLLATE "C" DESC, id`),
		"sort max variant price desc": ids("true",
			"(SELECT max(price) FROM variants WHERE item_id = items.id) DESC NULLS LAST, id"),
		"users who ordered an espresso": `SELECT json_agg(id::text ORDER BY id) FROM users u WHERE deleted_at IS NULL AND EXISTS (
			SELECT FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id
			WHERE o.user_id = u.id AND p.name ~* '\mespresso\M')`,
		"count stock >= 100": "SELECT count(*) FROM items WHERE stock >= 100",
		"get 1": `SELECT json_build_object('found', true, 'name', i.name, 'brand', json_build_object('id', b.id, 'name', b.name))
			FROM items i JOIN brands b ON b.id = i.brand_id WHERE i.id = 1`,
		"get 999": "SELECT 'false'::json",
		"terms agg kind": `SELECT json_agg(json_build_object('Key', kind, 'DocCount', n) ORDER BY n DESC, kind)
			FROM (SELECT kind, count(*) AS n FROM items WHERE kind IS NOT NULL GROUP BY kind) k`,
		"stats agg stock": "SELECT json_build_array(count(stock), min(stock), max(stock), sum(stock)) FROM items",
		"nested agg variant states": `SELECT json_build_object('elements', (SELECT count(*) FROM variants),
			'states', json_agg(json_build_object('Key', state, 'DocCount', n) ORDER BY n DESC, state))
			FROM (SELECT state, count(*) AS n FROM variants GROUP BY state) s`,
	}
	for key, sql := range want {
		var raw []byte
		if err := d.DB.QueryRow(context.Background(), sql).Scan(&raw); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		var w any
		if err := json.Unmarshal(raw, &w); err != nil {
			t.Fatal(err)
		}
		if list, ok := w.([]any); ok && len(list) == 0 && key != "all items" {
			t.Errorf("%s: Postgres finds nothing: the check would pass vacuously", key)
		}
		if !reflect.DeepEqual(got[key], w) {
			t.Errorf("%s:\n got %v\nwant %v", key, got[key], w)
		}
	}

	// The demo's program, built from its committed generated code, reads
	// the same schemas.
	demo := exec.Command("go", "run", ".")
	demo.Dir = "../../deploy/demo/search"
	demo.Env = append(os.Environ(), "PRIMARY_OPENSEARCH_URL="+d.OpenSearch, "FLUSSO_INDEX_PREFIX="+d.Prefix)
	b, err := demo.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "customers who ordered an espresso maker") || !strings.Contains(string(b), "product 1: SKU-") {
		t.Errorf("the demo's search program: %v\n%s", err, b)
	}
	t.Logf("the demo's search program:\n%s", b)

	// The guide shows item 1 as the pipeline writes it.
	stored, err := harness.Get(context.Background(), d.OpenSearch, d.Prefix+"items", []string{"1"})
	if err != nil {
		t.Fatal(err)
	}
	page := fileText(t, guideDir+"/schemas.md")
	_, block, _ := strings.Cut(page, "<!-- document: items 1 -->\n```json\n")
	block, _, _ = strings.Cut(block, "```")
	var shown, item1 any
	if err := json.Unmarshal([]byte(block), &shown); err != nil {
		t.Errorf("schemas.md: the document of item 1: %v", err)
	}
	if err := json.Unmarshal(stored["1"], &item1); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shown, item1) {
		var pretty bytes.Buffer
		_ = json.Indent(&pretty, stored["1"], "", "  ")
		t.Errorf("schemas.md shows item 1 otherwise than it is stored:\n%s", pretty.String())
	}

	hash := schema.Hash(cfg.Indexes[2].Schema)
	mm, _ := got["mismatch"].(map[string]any)
	if msg, _ := mm["message"].(string); !reflect.DeepEqual(mm["served"], []any{hash}) ||
		!strings.Contains(msg, "this code was generated from schema hash 0000beef of index items, but the deployment serves schema hash "+hash) {
		t.Errorf("the mismatch: %v", mm)
	}
	np, _ := got["no prefix"].(map[string]any)
	if msg, _ := np["message"].(string); np["served"] != nil ||
		!strings.Contains(msg, "no index items_"+hash+": ") || !strings.Contains(msg, `serves no version of it under the prefix ""`) {
		t.Errorf("without the prefix: %v", np)
	}
}
