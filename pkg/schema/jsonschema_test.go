package schema

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// compileJSONSchema compiles JSONSchema, which also checks it against the
// draft-07 meta-schema.
func compileJSONSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	if err := c.AddResource("index.schema.yml", yamlToJSON(t, JSONSchema)); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("index.schema.yml")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// yamlToJSON reads YAML as a JSON value, keeping dates and timestamps the
// strings they are written as (an editor's YAML server does the same).
func yamlToJSON(t *testing.T, src []byte) any {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal(src, &n); err != nil {
		t.Fatal(err)
	}
	p := &parser{file: "t", budget: maxNodes}
	v, ok := p.value(n.Content[0], "", 0)
	if !ok {
		t.Fatal(p.errs)
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestJSONSchemaAcceptsTestdata(t *testing.T) {
	sch := compileJSONSchema(t)
	files, _ := filepath.Glob("testdata/*.schema.yml")
	for _, file := range files {
		if err := sch.Validate(yamlToJSON(t, readFile(t, file))); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}

// TestJSONSchemaRejects: the rules a JSON Schema can state, it states.
func TestJSONSchemaRejects(t *testing.T) {
	sch := compileJSONSchema(t)
	for name, src := range map[string]string{
		"version 2":                "version: 2\ntable: t\nfields: []\n",
		"no table":                 "version: 1\nfields: []\n",
		"unknown top-level key":    "version: 1\ntable: t\ntabel: x\nfields: []\n",
		"doc_id":                   "version: 1\ntable: t\ndoc_id: uid\nfields: []\n",
		"bad identifier":           "version: 1\ntable: 1t\nfields: []\n",
		"soft_delete both":         "version: 1\ntable: t\nsoft_delete: {column: a, field: b}\nfields: []\n",
		"no type key":              header + "  - column: a\n",
		"two type keys":            header + "  - keyword: a\n    text: b\n",
		"unknown sibling":          header + "  - keyword: a\n    analyzer: x\n",
		"variants on keyword":      header + "  - keyword: a\n    variants: [x]\n",
		"default a list":           header + "  - keyword: a\n    default: [x]\n",
		"unknown transform":        header + "  - keyword: a\n    transforms: [upper]\n",
		"custom without postgres":  header + "  - custom: a\n    opensearch: double\n",
		"geo lat and column":       header + "  - geo: a\n    lat: x\n    lon: y\n    column: z\n",
		"geo lat alone":            header + "  - geo: a\n    lat: x\n",
		"map of booleans":          header + "  - map: a\n    values: boolean\n",
		"object without fields":    header + "  - object: a\n",
		"has_many with column":     header + "  - has_many: a\n    table: x\n    column: y\n    primary_key: id\n    fields: []\n",
		"required on has_many":     header + "  - has_many: a\n    table: x\n    foreign_key: y\n    primary_key: id\n    required: true\n    fields: []\n",
		"order_by on belongs_to":   header + "  - belongs_to: a\n    table: x\n    primary_key: id\n    order_by: [{column: id}]\n    fields: []\n",
		"limit on has_one":         header + "  - has_one: a\n    table: x\n    foreign_key: y\n    primary_key: id\n    limit: 1\n    fields: []\n",
		"limit zero":               header + "  - has_many: a\n    table: x\n    foreign_key: y\n    primary_key: id\n    limit: 0\n    fields: []\n",
		"through without key":      header + "  - many_to_many: a\n    table: x\n    primary_key: id\n    through: {table: j, left_key: l}\n    fields: []\n",
		"aggregate with both keys": header + "  - count: a\n    table: x\n    foreign_key: y\n    through: {table: j, left_key: l, right_key: r}\n",
		"count with column":        header + "  - count: a\n    table: x\n    foreign_key: y\n    column: z\n",
		"sum without value_type":   header + "  - sum: a\n    table: x\n    foreign_key: y\n    column: z\n",
		"ids element_type integer": header + "  - ids: a\n    table: x\n    foreign_key: y\n    element_type: integer\n",
		"element_type on max":      header + "  - max: a\n    table: x\n    foreign_key: y\n    column: z\n    value_type: long\n    element_type: long\n",
		"is_null with value":       "version: 1\ntable: t\nfilters: [{column: a, op: is_null, value: 1}]\nfields: []\n",
		"eq with a list":           "version: 1\ntable: t\nfilters: [{column: a, op: eq, value: [1]}]\nfields: []\n",
		"in with a scalar":         "version: 1\ntable: t\nfilters: [{column: a, op: in, value: 1}]\nfields: []\n",
		"between with three":       "version: 1\ntable: t\nfilters: [{column: a, op: between, value: [1, 2, 3]}]\nfields: []\n",
		"raw with column":          "version: 1\ntable: t\nfilters: [{raw: x, column: a}]\nfields: []\n",
	} {
		// Each of these fails to load, too.
		if _, err := Parse("t.schema.yml", []byte(src)); err == nil {
			t.Errorf("%s: the loader accepts it", name)
		}
		if err := sch.Validate(yamlToJSON(t, []byte(src))); err == nil {
			t.Errorf("%s: the JSON Schema accepts it", name)
		}
	}
}

// TestJSONSchemaKeys: the JSON Schema offers every type key and every
// sibling to an editor.
func TestJSONSchemaKeys(t *testing.T) {
	var doc struct {
		Definitions struct {
			Field struct {
				Properties map[string]any
				OneOf      []struct{ Required []string } `yaml:"oneOf"`
			}
		}
	}
	if err := yaml.Unmarshal(JSONSchema, &doc); err != nil {
		t.Fatal(err)
	}
	field := doc.Definitions.Field
	var exactlyOne []string
	for _, alt := range field.OneOf {
		exactlyOne = append(exactlyOne, alt.Required...)
	}
	for _, k := range allKinds {
		if field.Properties[string(k)] == nil {
			t.Errorf("type key %s is not a property of a field", k)
		}
		if !slices.Contains(exactlyOne, string(k)) {
			t.Errorf("type key %s is not in the exactly-one-type-key list", k)
		}
	}
	for _, key := range siblingKeys {
		if field.Properties[key] == nil {
			t.Errorf("sibling %s is not a property of a field", key)
		}
	}
	if n := len(field.Properties); n != len(allKinds)+len(siblingKeys) {
		t.Errorf("a field has %d properties, want %d type keys and %d siblings", n, len(allKinds), len(siblingKeys))
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
