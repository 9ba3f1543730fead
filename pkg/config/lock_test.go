package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sink/opensearch"
)

// lockFixture is a config with every kind of value a lock must carry,
// schema included, built by hand so the lock is tested on its own.
func lockFixture() *Config {
	return &Config{
		Path: "/home/dev/project/flusso.toml",
		Source: Source{
			Type:              Postgres,
			Parts:             &ConnParts{Host: "db", Port: 5432, User: "flusso", Password: Value{Env: "PGPASSWORD"}, Database: "app"},
			ManagePublication: true,
		},
		Sinks: []Sink{
			{Name: "primary", Type: OpenSearch, URL: Value{Literal: "https://os:9200"}, Username: Value{Literal: "flusso"}, Password: Value{Env: "OS_PASSWORD"},
				TLSVerify: true, BatchSize: 1000, MaxBytes: opensearch.DefaultMaxBytes, TimeoutSecs: 30, MaxRetries: 3,
				NumberOfShards: 1, NumberOfReplicas: 1, RefreshInterval: "10s", TextAnalysis: "builtin", AutoSubfields: true},
			{Name: "audit", Type: Stdout, Pretty: true},
		},
		Indexes: []Index{{
			Name: "users", SchemaPath: "schemas/users.schema.yml", Enabled: true, OnError: flow.Skip,
			Schema: &schema.Index{
				File: "/home/dev/project/schemas/users.schema.yml", Version: 1, Table: "users", Schema: "public", PrimaryKey: "id",
				SoftDelete: &schema.SoftDelete{Column: "deleted_at"},
				Filters:    []schema.Filter{{Column: "tenant", Op: schema.OpIn, Values: []any{int64(3), int64(300), "x", 1.5, true}}},
				Fields: []schema.Field{
					{Name: "id", Kind: schema.Long, Line: 4, Column: "id", Required: true},
					{Name: "price", Kind: schema.Custom, Line: 6, Column: "price", PostgresTypes: []string{"numeric"}, OpenSearchType: "scaled_float",
						Options: map[string]any{"scaling_factor": 100, "meta": map[string]any{"unit": "EUR", "big": 70000, "list": []any{1, "a"}}}},
					{Name: "status", Kind: schema.Enum, Line: 9, Column: "status", Variants: []string{"low", "high"}, Default: "low"},
					{Name: "orders", Kind: schema.HasMany, Line: 11, Table: "orders", PrimaryKey: "id", ForeignKey: "user_id", Limit: 10,
						OrderBy: []schema.OrderBy{{Column: "id", Direction: schema.Desc}},
						Fields:  []schema.Field{{Name: "total", Kind: schema.Double, Line: 17, Column: "total"}}},
					{Name: "kind", Kind: schema.Constant, Line: 19, Value: int64(-7)},
				},
			},
		}},
		OnError: flow.Stop,
		Prefix:  "dev_",
		Server:  Server{PublicAddress: DefaultPublicAddress, PrivateAddress: DefaultPrivateAddress},
	}
}

func TestLockRoundTrip(t *testing.T) {
	data, err := MarshalLock(lockFixture())
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalLock(data)
	if err != nil {
		t.Fatal(err)
	}

	// What comes back: paths made portable, integers in interface values as
	// int64, everything else as it went in.
	want := lockFixture()
	want.Path = "flusso.toml"
	s := want.Indexes[0].Schema
	s.File = "schemas/users.schema.yml"
	s.Fields[1].Options = map[string]any{"scaling_factor": int64(100), "meta": map[string]any{"unit": "EUR", "big": int64(70000), "list": []any{int64(1), "a"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
		if !reflect.DeepEqual(got.Indexes[0].Schema, want.Indexes[0].Schema) {
			t.Errorf("schema:\n got %+v\nwant %+v", got.Indexes[0].Schema, want.Indexes[0].Schema)
		}
	}

	again, err := MarshalLock(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Error("a decoded lock does not encode to the same bytes")
	}
}

func TestLockIsDeterministic(t *testing.T) {
	first, err := MarshalLock(lockFixture())
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // map order is random: any instability shows in a few runs
		cfg := lockFixture()
		cfg.Path = "/elsewhere/flusso.toml"
		cfg.Indexes[0].Schema.File = "/elsewhere/schemas/users.schema.yml"
		b, err := MarshalLock(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, first) {
			t.Fatal("the same config built in another directory gives other bytes")
		}
	}
}

// TestLockKeepsSecretsOut builds a lock with every reserved and referenced
// variable set and checks none of their values reaches the bytes.
func TestLockKeepsSecretsOut(t *testing.T) {
	secrets := map[string]string{
		"DATABASE_URL":                "postgres://leak-database-url@h/db",
		"PGPASSWORD":                  "leak-pg-password",
		"OS_PASSWORD":                 "leak-os-password",
		"OS_USER":                     "leak-os-user",
		"PRIMARY_OPENSEARCH_URL":      "https://leak-reserved-url:9200",
		"PRIMARY_OPENSEARCH_USERNAME": "leak-reserved-user",
		"PRIMARY_OPENSEARCH_PASSWORD": "leak-reserved-password",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	path := writeConfig(t, `
[source]
type = "postgres"
[source.connection_url]
database = "app"
password = { env = "PGPASSWORD" }

[sinks.primary]
type = "opensearch"
url = "https://literal-in-file:9200"
username = { env = "OS_USER" }
password = { env = "OS_PASSWORD" }

[sinks.secondary]
type = "opensearch"
url = "https://other:9200"
password = "literal-password-in-file"
`, nil)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(t.TempDir(), "flusso.lock")
	if err := WriteLock(lock, cfg); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(lock)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range secrets {
		if bytes.Contains(data, []byte(v)) {
			t.Errorf("the value of %s is in the lock", name)
		}
	}
	// What the file says travels as written: names of variables, literals.
	for _, s := range []string{"PGPASSWORD", "OS_USER", "OS_PASSWORD", "https://literal-in-file:9200", "literal-password-in-file"} {
		if !bytes.Contains(data, []byte(s)) {
			t.Errorf("%q is missing from the lock", s)
		}
	}
}

func TestReadLockRejects(t *testing.T) {
	good, err := MarshalLock(lockFixture())
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)-3] ^= 0xff
	newer := encodeLockFile(t, lockFile{Format: lockFormat, Version: LockVersion + 1, Digest: "x", Config: []byte{0xc0}})
	other := encodeLockFile(t, map[string]any{"format": "something.else", "version": 1})
	unknownField := lockBody(t, map[string]any{"source": map[string]any{"type": "postgres"}, "from_the_future": true})

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a flusso.lock file (build one with flusso build)"},
		{"text", []byte("[source]\ntype = \"postgres\"\n"), "not a flusso.lock file (build one with flusso build)"},
		{"json", []byte(`{"format":"flusso.lock"}`), "not a flusso.lock file (build one with flusso build)"},
		{"random", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1000), "not a flusso.lock file (build one with flusso build)"},
		{"other msgpack", other, "not a flusso.lock file (build one with flusso build)"},
		{"truncated", good[:len(good)/2], "not a flusso.lock file (build one with flusso build)"},
		{"flipped byte", flipped, "lock is corrupt: its content does not match its digest; rebuild it with flusso build"},
		{"newer version", newer, "lock format version 2 is not supported by this flusso (it reads version 1); rebuild the lock with flusso build"},
		{"unknown field", unknownField, "lock is corrupt: msgpack: unknown field \"from_the_future\"; rebuild it with flusso build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "flusso.lock")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadLock(path)
			want := "read lock " + path + ": " + tt.want
			if errText(err) != want {
				t.Errorf("error:\n got %s\nwant %s", errText(err), want)
			}
		})
	}

	_, err = ReadLock(filepath.Join(t.TempDir(), "missing.lock"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing lock: error %v is not fs.ErrNotExist", err)
	}
}

func encodeLockFile(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lockBody wraps an arbitrary config body in a valid header.
func lockBody(t *testing.T, body any) []byte {
	t.Helper()
	b := encodeLockFile(t, body)
	return encodeLockFile(t, lockFile{Format: lockFormat, Version: LockVersion, Digest: digestOf(b), Config: b})
}

func TestCheckLock(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, minimalSource, nil)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(dir, "flusso.lock")

	if err := CheckLock(lock, cfg); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing lock: error %v is not fs.ErrNotExist", err)
	}
	if err := WriteLock(lock, cfg); err != nil {
		t.Fatal(err)
	}
	if err := CheckLock(lock, cfg); err != nil {
		t.Errorf("fresh lock: %v", err)
	}

	if err := os.WriteFile(path, []byte(minimalSource+"manage_publication = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	err = CheckLock(lock, changed)
	if !errors.Is(err, ErrStaleLock) || !strings.Contains(err.Error(), "it was not built from the current flusso.toml") {
		t.Errorf("changed config: error %v, want a stale lock", err)
	}
}

// TestWriteLockMode: the lock may hold literal secrets, so it is written
// for its owner only, also over a lock that others could read.
func TestWriteLockMode(t *testing.T) {
	cfg, err := Load(writeConfig(t, minimalSource, nil))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		existing os.FileMode // 0: no lock yet
	}{
		{"new lock", 0},
		{"over a 0644 lock", 0o644},
		{"over a 0666 lock", 0o666},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lock := filepath.Join(t.TempDir(), "flusso.lock")
			if tt.existing != 0 {
				if err := os.WriteFile(lock, []byte("old"), tt.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(lock, tt.existing); err != nil { // past the umask
					t.Fatal(err)
				}
			}
			if err := WriteLock(lock, cfg); err != nil {
				t.Fatal(err)
			}
			info, err := os.Stat(lock)
			if err != nil {
				t.Fatal(err)
			}
			if got := info.Mode().Perm(); got != 0o600 {
				t.Errorf("lock mode %v, want -rw-------", got)
			}
		})
	}
}
