package gogen

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/mapping"
	"github.com/flusso/flusso/pkg/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The demo's committed code (deploy/demo/search/shop) is its golden file:
// the demo program is built from it, so this also fails when it is stale.
const demoCode = "../../deploy/demo/search/shop"

func generate(t *testing.T, cfgPath, pkg string) []File {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := MappingOptions(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(cfg, Options{Package: pkg, Mapping: m})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct{ config, pkg, dir string }{
		{"../../deploy/demo/flusso.toml", "shop", demoCode},
		{"testdata/flusso.toml", "rich", "testdata/golden"},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			files := generate(t, tc.config, tc.pkg)
			if *update {
				if err := Write(tc.dir, files); err != nil {
					t.Fatal(err)
				}
			}
			problems, err := Drift(tc.dir, files)
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) > 0 {
				t.Fatalf("the generated code differs from the golden files (go test ./pkg/gogen -run TestGolden -update rewrites them):\n%s", strings.Join(problems, "\n"))
			}
			again := generate(t, tc.config, tc.pkg)
			for i := range files {
				if string(files[i].Content) != string(again[i].Content) {
					t.Fatalf("%s: two runs generate different code", files[i].Name)
				}
			}
		})
	}
}

// TestCompiles builds and vets the code generated for the demo and the
// rich schema in a module of their own that uses the query module, as an
// application would.
func TestCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module")
	}
	dir := t.TempDir()
	query, err := filepath.Abs("../../query")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/app\n\ngo 1.26\n\nrequire github.com/flusso/flusso/query v0.0.0\n\nreplace github.com/flusso/flusso/query => "+query+"\n")
	sum, err := os.ReadFile(filepath.Join(query, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	write("go.sum", string(sum))
	for _, tc := range []struct{ config, pkg string }{
		{"../../deploy/demo/flusso.toml", "shop"},
		{"testdata/flusso.toml", "rich"},
	} {
		if err := Write(filepath.Join(dir, tc.pkg), generate(t, tc.config, tc.pkg)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "vet", "-mod=mod", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go vet of the generated code: %v\n%s", err, out)
	}
	// The demo's program is built from its committed code (see TestGolden).
	cmd = exec.Command("go", "vet", ".")
	cmd.Dir = filepath.Dir(demoCode)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go vet of the demo's search program: %v\n%s", err, out)
	}
}

func TestCollisions(t *testing.T) {
	for _, tc := range []struct{ name, fields, want string }{
		{"fields of one object", "  - keyword: user_id\n  - keyword: userID\n", "field user_id and field userID both become the Go identifier ItemsFieldUserID"},
		{"a path and a subfield", "  - text: name\n  - keyword: name_keyword\n", "subfield name.keyword and field name_keyword both become the Go identifier ItemsFieldNameKeyword"},
		{"two variants", "  - enum: kind\n    variants: [in-stock, in_stock]\n", `variant "in-stock" of kind and variant "in_stock" of kind both become the Go identifier ItemsKindInStock`},
		{"a nested type and the document", "  - object: doc\n    fields:\n      - keyword: a\n", "the document type and object doc both become the Go identifier ItemsDoc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix, err := schema.Parse("items.schema.yml", []byte("version: 1\ntable: items\nfields:\n"+tc.fields))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Index("items", "items.schema.yml", ix, Options{Package: "p", Mapping: mapping.Options{AutoSubfields: true}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestPackageName(t *testing.T) {
	cfg, err := config.Load("testdata/flusso.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(cfg, Options{Package: "func"}); err == nil || !strings.Contains(err.Error(), `package name "func" is not a Go identifier`) {
		t.Fatalf("got %v", err)
	}
	dir := filepath.Join(t.TempDir(), "my-search")
	if got, err := PackageOf(dir); err != nil || got != "mysearch" {
		t.Fatalf("PackageOf a new directory: %q, %v", got, err)
	}
	if err := Write(dir, generate(t, "testdata/flusso.toml", "other")); err != nil {
		t.Fatal(err)
	}
	if got, err := PackageOf(dir); err != nil || got != "other" {
		t.Fatalf("PackageOf a directory of generated code: %q, %v", got, err)
	}
}

// TestDrift changes a schema: the check names the stale file and what it
// was made from; regenerated, it passes; an index removed from the config
// leaves a file the check reports and Write removes.
func TestDrift(t *testing.T) {
	dir := t.TempDir()
	cfgDir := t.TempDir()
	body, err := os.ReadFile("testdata/rich.schema.yml")
	if err != nil {
		t.Fatal(err)
	}
	writeCfg := func(schemaBody string, indexes ...string) string {
		t.Helper()
		toml := "[source]\ntype = \"postgres\"\n"
		for _, ix := range indexes {
			toml += "[[index]]\nname = \"" + ix + "\"\nschema = \"rich.schema.yml\"\nenabled = true\n"
		}
		if err := os.WriteFile(filepath.Join(cfgDir, "rich.schema.yml"), []byte(schemaBody), 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(cfgDir, "flusso.toml")
		if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	check := func(cfg string) []string {
		t.Helper()
		problems, err := Drift(dir, generate(t, cfg, "p"))
		if err != nil {
			t.Fatal(err)
		}
		return problems
	}

	cfg := writeCfg(string(body), "items", "more")
	if got := check(cfg); len(got) != 2 || !strings.HasSuffix(got[0], "items.gen.go: missing") {
		t.Fatalf("before any generation: %q", got)
	}
	if err := Write(dir, generate(t, cfg, "p")); err != nil {
		t.Fatal(err)
	}
	if got := check(cfg); len(got) != 0 {
		t.Fatalf("just generated: %q", got)
	}

	changed := strings.Replace(string(body), "  - identifier: sku\n", "  - keyword: sku\n", 1)
	cfg = writeCfg(changed, "items", "more")
	got := check(cfg)
	if len(got) != 2 || !strings.Contains(got[0], filepath.Join(dir, "items.gen.go")+": stale: made from rich.schema.yml (schema hash ") ||
		!strings.Contains(got[0], "the schemas now give rich.schema.yml (schema hash ") {
		t.Fatalf("after a schema change: %q", got)
	}
	if err := Write(dir, generate(t, cfg, "p")); err != nil {
		t.Fatal(err)
	}
	if got := check(cfg); len(got) != 0 {
		t.Fatalf("regenerated: %q", got)
	}

	cfg = writeCfg(changed, "items")
	if got := check(cfg); len(got) != 1 || !strings.Contains(got[0], "more.gen.go: generated for an index the config no longer has") {
		t.Fatalf("after removing an index: %q", got)
	}
	if err := Write(dir, generate(t, cfg, "p")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "more.gen.go")); !os.IsNotExist(err) {
		t.Fatalf("the file of the removed index is still there: %v", err)
	}
	if got := check(cfg); len(got) != 0 {
		t.Fatalf("regenerated without the removed index: %q", got)
	}
}
