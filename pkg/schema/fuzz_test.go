package schema

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input makes Parse panic, every failure is an ErrorList of
// located messages, and every schema that loads hashes deterministically.
// Run it with `go test -fuzz FuzzParse ./pkg/schema`.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.schema.yml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(header + "  - has_many: a\n    table: x\n    column: y\n"))
	f.Add([]byte("version: 1\ntable: t\nfields: &f\n  - object: o\n    fields: *f\n"))
	f.Add([]byte("version: 1\ntable: t\nfilters: [{column: a, op: between, value: [1, 2]}]\nfields: []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := Parse("f.schema.yml", data)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %T is not a non-empty ErrorList: %v", err, err)
			}
			for _, e := range list {
				if e.File != "f.schema.yml" || e.Msg == "" {
					t.Fatalf("error without file or message: %#v", e)
				}
			}
			return
		}
		canonical := Canonical(ix)
		if !json.Valid(canonical) {
			t.Fatalf("canonical form is not JSON: %s", canonical)
		}
		again, err := Parse("other.schema.yml", data)
		if err != nil {
			t.Fatalf("second parse failed: %v", err)
		}
		if h, h2 := Hash(ix), Hash(again); h != h2 || len(h) != HashLen {
			t.Fatalf("hashes %q and %q of the same input", h, h2)
		}
	})
}
