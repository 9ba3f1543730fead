package design

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/flusso/flusso/pkg/scaffold"
	"github.com/flusso/flusso/pkg/schema"
)

// TestModelRoundTrip: a model rendered to YAML and read back is the same
// model, keys in the same order, and strings that YAML would read as
// something else stay strings.
func TestModelRoundTrip(t *testing.T) {
	model := `{"version":1,"table":"users","primary_key":"id","fields":[` +
		`{"keyword":"id","column":"id"},` +
		`{"constant":"a","value":"123"},{"constant":"b","value":"true"},{"constant":"c","value":"null"},` +
		`{"constant":"d","value":12.5},{"constant":"e","value":7},{"constant":"f","value":null},{"constant":"g","value":false},` +
		`{"keyword":"yes","default":"no","transforms":["trim","lowercase"]},` +
		`{"keyword":"note","default":"a: b # c"},` +
		`{"has_many":"orders","table":"orders","foreign_key":"user_id","primary_key":"id",` +
		`"filters":[{"column":"status","op":"in","value":["paid","007"]}],"order_by":[{"column":"id","direction":"desc"}],` +
		`"fields":[{"integer":"id","options":{"fields":{"raw":{"type":"keyword"}}}}]}]}`
	doc, err := nodeOf(json.RawMessage(model))
	if err != nil {
		t.Fatal(err)
	}
	text, err := scaffold.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	back, err := modelOf(text)
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != model {
		t.Fatalf("model after YAML:\n%s\nwant\n%s\nYAML:\n%s", back, model, text)
	}
	ix, err := schema.Parse("m.yml", text)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	values := map[string]any{}
	for _, f := range ix.Fields {
		if f.Kind == schema.Constant {
			values[f.Name] = f.Value
		}
	}
	for name, want := range map[string]any{"a": "123", "b": "true", "c": "null", "d": 12.5, "e": int64(7), "f": nil, "g": false} {
		if values[name] != want {
			t.Errorf("constant %s = %#v, want %#v", name, values[name], want)
		}
	}
	if !strings.Contains(string(text), "    order_by: [{column: id, direction: desc}]\n") {
		t.Errorf("small maps are not on one line:\n%s", text)
	}
	for _, bad := range []string{`{"a":`, `[1] [2]`, strings.Repeat("[", 100) + strings.Repeat("]", 100)} {
		if _, err := nodeOf(json.RawMessage(bad)); err == nil {
			t.Errorf("model %.20s… is accepted", bad)
		}
	}
}

// TestSpans: a line lands on the innermost field that holds it.
func TestSpans(t *testing.T) {
	text := "version: 1\ntable: t\nfields:\n  - integer: a\n  - has_many: b\n    table: b\n    fields:\n      - integer: c\n      - keyword: d\n        required: true\n  - text: e\n"
	s := spansOf([]byte(text))
	for line, want := range map[int]string{1: "", 4: "0", 5: "1", 6: "1", 8: "1.0", 10: "1.1", 11: "2", 40: "2"} {
		if got := s.at(line); got != want {
			t.Errorf("line %d: %q, want %q", line, got, want)
		}
	}
}
