package main

import (
	"os"
	"testing"

	"github.com/flusso/flusso/pkg/schema"
)

func TestRustSchema(t *testing.T) {
	src, err := os.ReadFile("../../schemas/users.schema.yml")
	if err != nil {
		t.Fatal(err)
	}
	notNull := map[string]map[string]bool{"users": {"id": true, "email": true}, "products": {"name": true}, "orders": {"total": true}}
	out, err := rustSchema(src, notNull)
	if err != nil {
		t.Fatal(err)
	}
	// Still a schema this flusso reads, with required on its leaves.
	ix, err := schema.Parse("users.schema.yml", out)
	if err != nil {
		t.Fatalf("the Rust schema does not parse: %v\n%s", err, out)
	}
	required := map[string]bool{}
	var walk func(prefix string, fs []schema.Field)
	walk = func(prefix string, fs []schema.Field) {
		for _, f := range fs {
			required[prefix+f.Name] = f.Required
			walk(prefix+f.Name+".", f.Fields)
		}
	}
	walk("", ix.Fields)
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"id", true},                        // the root key, NOT NULL
		{"email", true},                     // a NOT NULL column
		{"name", false},                     // a nullable column
		{"profile.bio", false},              // a leaf of a join
		{"orders.items.product.name", true}, // NOT NULL, three joins down
		{"orders.items.product.category.name", false},
		{"orders.total", true},
		{"total_spent", false}, // an aggregate: no column of its own
	} {
		if got, ok := required[tt.path]; !ok || got != tt.want {
			t.Errorf("%s: required %v (present %v), want %v", tt.path, got, ok, tt.want)
		}
	}
}

func TestMismatch(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		same     bool
	}{
		{`7: want {"a":1,"b":{"c":[1,2]}}, got {"a":1,"b":{"c":[1,3]}}`, `7: b.c[1]: want 2, got 3`, false},
		{`7: want {"a":1}, got {"a":1,"z":true}`, `7: z: not expected, got true`, false},
		{`7: want {"a":1,"d":"x"}, got {"a":1}`, `7: d: want "x", missing`, false},
		{`7: want {"a":[1]}, got {"a":[1,2]}`, `7: a: want [1], got [1,2]`, false},
		{`7: want {"t":["2020-07-15T22:50:51Z"]}, got {"t":["2020-07-15T22:50:51+00:00"]}`, `7: same values`, true},
		{`7: want {"t":"2020-07-15T22:50:51Z"}, got {"t":"2020-07-15T22:50:52+00:00"}`, `7: t: want "2020-07-15T22:50:51Z", got "2020-07-15T22:50:52Z"`, false},
	} {
		if got, same := mismatch(tt.in); got != tt.want || same != tt.same {
			t.Errorf("mismatch(%s) = %s, %v; want %s, %v", tt.in, got, same, tt.want, tt.same)
		}
	}
}
