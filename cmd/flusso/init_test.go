package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flusso/flusso/internal/design/demodb"
)

// TestInitWritesASchemaThatChecks: `flusso init` writes a starting schema
// that loads and that `flusso check` passes against the database, and
// refuses what it cannot do with an error naming the cause.
func TestInitWritesASchemaThatChecks(t *testing.T) {
	cfg := demodb.Deployment(t, demodb.Database(t))
	dir := filepath.Dir(cfg)
	file := filepath.Join(dir, "schemas", "customers.schema.yml")

	code, out, errOut := flusso(t, "init", "--config", cfg, "--table", "users", "--depth", "2", "--out", file)
	if code != exitOK {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	hint := "[[index]]\nname = \"users\"\nschema = \"schemas/customers.schema.yml\"\nenabled = true\n"
	if !strings.Contains(out, "wrote "+file) || !strings.Contains(out, hint) {
		t.Errorf("init output:\n%s", out)
	}
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- has_many: orders", "- has_many: order_items", "- many_to_many: tags", "soft_delete: {column: deleted_at}"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("the schema lacks %q:\n%s", want, text)
		}
	}
	// Added as the output says (under another name: users exists), it checks clean.
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("\n" + strings.Replace(hint, `"users"`, `"customers"`, 1))
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := flusso(t, "check", "--config", cfg); code != exitOK || !strings.Contains(out, "index customers: every column matches") {
		t.Errorf("check of the written schema: exit %d\n%s%s", code, out, errOut)
	}
	// Written to stdout, depth 0: the columns only.
	code, out, _ = flusso(t, "init", "--config", cfg, "--table", "products", "--depth", "0", "--out", "-")
	if code != exitOK || !strings.HasPrefix(out, "version: 1\ntable: products\nprimary_key: id\nfields:\n  - integer: id\n  - text: sku\n    required: true\n") || strings.Contains(out, "belongs_to") {
		t.Errorf("init --out -: exit %d\n%s", code, out)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"exists", []string{"--table", "users"}, filepath.Join(dir, "schemas", "users.schema.yml") + " exists: pass --force to overwrite it"},
		{"typo", []string{"--table", "user", "--out", "-"}, `--table (FLUSSO_INIT_TABLE): table public.user does not exist; did you mean "users"?`},
		{"bad ident", []string{"--table", "us-ers", "--out", "-"}, `--table (FLUSSO_INIT_TABLE): "us-ers" is not a valid Postgres identifier`},
		{"depth", []string{"--table", "users", "--depth", "-1", "--out", "-"}, "--depth (FLUSSO_INIT_DEPTH) must be between 0 and 8, not -1"},
		{"no table", []string{}, `Required flag "table" not set`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := flusso(t, append([]string{"init", "--config", cfg}, tc.args...)...)
			if code != exitUsage || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant %q", code, errOut, tc.want)
			}
		})
	}
	code, _, _ = flusso(t, "init", "--config", cfg, "--table", "users", "--force")
	if code != exitOK {
		t.Errorf("--force: exit %d", code)
	}
}

// TestDesignAndInitHelp: every flag names its FLUSSO_* variable.
func TestDesignAndInitHelp(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"init":   {"FLUSSO_CONFIG", "FLUSSO_INIT_TABLE", "FLUSSO_INIT_SCHEMA", "FLUSSO_INIT_DEPTH", "FLUSSO_INIT_OUT", "FLUSSO_INIT_FORCE"},
		"design": {"FLUSSO_CONFIG", "FLUSSO_DESIGN_ADDRESS"},
	} {
		code, out, _ := flusso(t, cmd, "--help")
		if code != exitOK {
			t.Fatalf("%s --help: exit %d", cmd, code)
		}
		for _, f := range flags {
			if !strings.Contains(out, "$"+f) {
				t.Errorf("%s --help lacks %s:\n%s", cmd, f, out)
			}
		}
	}
	if code, _, errOut := flusso(t, "design", "--address", "nowhere"); code != exitUsage || !strings.Contains(errOut, "--address (FLUSSO_DESIGN_ADDRESS)") {
		t.Errorf("design --address nowhere: exit %d %s", code, errOut)
	}
}
