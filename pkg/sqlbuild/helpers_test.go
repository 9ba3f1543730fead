package sqlbuild_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// database returns a pool on a fresh database where ddl has run.
func database(t testing.TB, ddl string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(pool.Close)
	exec(t, pool, ddl)
	return pool
}

func exec(t testing.TB, pool *pgxpool.Pool, sql string) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// index parses a schema file's content, compiles and prepares it.
func index(t testing.TB, pool *pgxpool.Pool, yaml string) *sqlbuild.Index {
	t.Helper()
	def, err := schema.Parse("test.schema.yml", []byte(strings.ReplaceAll(yaml, "\t", "  ")))
	if err != nil {
		t.Fatalf("parsing schema: %v", err)
	}
	ix, err := sqlbuild.Compile("test", def)
	if err != nil {
		t.Fatalf("compiling: %v", err)
	}
	if err := ix.Prepare(context.Background(), pool); err != nil {
		t.Fatalf("preparing: %v", err)
	}
	return ix
}

// build builds one document per key and returns their bodies by key; a
// tombstone is "null".
func build(t testing.TB, pool *pgxpool.Pool, ix *sqlbuild.Index, keys ...string) map[string]string {
	t.Helper()
	docs, err := ix.Build(context.Background(), pool, keys)
	if err != nil {
		t.Fatalf("building %v: %v", keys, err)
	}
	out := map[string]string{}
	for _, d := range docs {
		if d.Err != nil {
			t.Fatalf("document %s: %v", d.ID, d.Err)
		}
		out[d.ID] = "null"
		if d.Body != nil {
			out[d.ID] = canonical(t, string(d.Body))
		}
	}
	return out
}

// canonical re-encodes JSON with sorted keys and numbers as written.
func canonical(t testing.TB, s string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("invalid JSON %s: %v", s, err)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(b.String())
}

// assertDoc compares a built document with the expected JSON.
func assertDoc(t testing.TB, got map[string]string, key, want string) {
	t.Helper()
	if w := canonical(t, want); got[key] != w {
		t.Errorf("document %s:\n got %s\nwant %s", key, got[key], w)
	}
}
