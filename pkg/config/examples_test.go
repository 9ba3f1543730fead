package config

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sink/opensearch"
)

// TestLoadSpecExample loads the complete example of the configuration
// reference, written the way configs for the original implementation are.
func TestLoadSpecExample(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "spec", "flusso.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.URL != (Value{Env: "DATABASE_URL"}) {
		t.Errorf("connection_url = %+v", cfg.Source.URL)
	}
	var sinks []string
	for _, s := range cfg.Sinks {
		sinks = append(sinks, s.Name+":"+s.Type)
	}
	if got := strings.Join(sinks, " "); got != "primary:opensearch audit:stdout" {
		t.Errorf("sinks = %s", got)
	}
	if cfg.Sinks[0].Password != (Value{Env: "OS_PASSWORD"}) || !cfg.Sinks[1].Pretty {
		t.Errorf("sinks = %+v", cfg.Sinks)
	}
	if len(cfg.Indexes) != 1 {
		t.Fatalf("indexes = %+v", cfg.Indexes)
	}
	ix := cfg.Indexes[0]
	if ix.Name != "users" || !ix.Enabled || ix.OnError != flow.Stop || ix.Schema == nil || ix.Schema.Table != "users" {
		t.Errorf("index = %+v", ix)
	}
}

func TestLoadFullExample(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "full", "flusso.toml"))
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		Name, Table string
		Enabled     bool
		OnError     flow.OnError
	}
	var indexes []got
	for _, ix := range cfg.Indexes {
		indexes = append(indexes, got{ix.Name, ix.Schema.Schema + "." + ix.Schema.Table, ix.Enabled, ix.OnError})
	}
	want := []got{
		{"products", "catalog.products", true, flow.Stop},   // its own on_error
		{"customers", "public.customers", false, flow.Skip}, // disabled, still loaded; the global on_error
	}
	if !reflect.DeepEqual(indexes, want) {
		t.Errorf("indexes = %+v, want %+v", indexes, want)
	}
	if cfg.Prefix != "staging_" || cfg.OnError != flow.Skip || cfg.Source.ManagePublication {
		t.Errorf("top level = %q %q %t", cfg.Prefix, cfg.OnError, cfg.Source.ManagePublication)
	}
	if s := cfg.Sinks[1]; s.Name != "replica" || s.URL.IsSet() || s.BatchSize != opensearch.DefaultBatchSize {
		t.Errorf("replica sink = %+v", s)
	}
}

func TestLoadReportsSchemaProblems(t *testing.T) {
	path := writeConfig(t, minimalSource+`
[[index]]
name = "users"
schema = "users.schema.yml"
enabled = true

[[index]]
name = "orders"
schema = "orders.schema.yml"
enabled = false
`, map[string]string{
		"users.schema.yml":  "version: 1\ntable: users\nfields:\n  - integer: id\n  - strng: name\n",
		"orders.schema.yml": "version: 2\ntable: orders\nfields:\n  - integer: id\n",
	})
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	var se *schema.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v holds no *schema.Error", err)
	}
	dir := filepath.Dir(path)
	for _, want := range []string{
		filepath.Join(dir, "users.schema.yml") + ":5: fields[1]",
		filepath.Join(dir, "orders.schema.yml") + ":1: version",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not report %q:\n%v", want, err)
		}
	}
}

// TestLockRoundTripWithSchemas checks that a lock gives back schemas that
// hash, map and build exactly as the files they came from.
func TestLockRoundTripWithSchemas(t *testing.T) {
	for _, file := range []string{"spec/flusso.toml", "full/flusso.toml"} {
		t.Run(file, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata", filepath.FromSlash(file)))
			if err != nil {
				t.Fatal(err)
			}
			data, err := MarshalLock(cfg)
			if err != nil {
				t.Fatal(err)
			}
			back, err := UnmarshalLock(data)
			if err != nil {
				t.Fatal(err)
			}
			for i, ix := range cfg.Indexes {
				got := back.Indexes[i].Schema
				if schema.Hash(got) != schema.Hash(ix.Schema) {
					t.Errorf("%s: hash %s after the lock, %s before", ix.Name, schema.Hash(got), schema.Hash(ix.Schema))
				}
				a, _ := json.Marshal(ix.Schema)
				b, _ := json.Marshal(got)
				if string(a) != string(b) {
					t.Errorf("%s: schema after the lock\n%s\nbefore\n%s", ix.Name, b, a)
				}
				if got.File != ix.SchemaPath {
					t.Errorf("%s: schema file %q in the lock, want the path as written %q", ix.Name, got.File, ix.SchemaPath)
				}
			}
			back.Path, back.Indexes = cfg.Path, cfg.Indexes
			if !reflect.DeepEqual(back, cfg) {
				t.Errorf("config after the lock:\n%+v\nbefore:\n%+v", back, cfg)
			}
		})
	}
}
