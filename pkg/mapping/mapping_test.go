package mapping

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/flusso/flusso/pkg/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// everyType loads a schema using every field type, with the siblings that
// shape the mapping.
func everyType(t *testing.T) *schema.Index {
	t.Helper()
	ix, err := schema.Load(filepath.Join("testdata", "every_type.schema.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestGolden(t *testing.T) {
	tests := []struct {
		golden string
		opts   Options
	}{
		{"builtin_auto.json", Options{TextAnalysis: Builtin, AutoSubfields: true}},
		{"builtin_bare.json", Options{TextAnalysis: Builtin, AutoSubfields: false}},
		{"icu_auto.json", Options{TextAnalysis: ICU, AutoSubfields: true}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			ix := everyType(t)
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(map[string]any{
				"settings": Settings(ix, tt.opts, 1, 1),
				"mappings": For(ix, tt.opts),
			}); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("body differs from %s (run with -update after checking the change):\n%s", path, got)
			}
		})
	}
}

func TestProperty(t *testing.T) {
	auto := Options{AutoSubfields: true}
	bare := Options{}
	tests := []struct {
		name  string
		field schema.Field
		opts  Options
		want  string
	}{
		{"text auto", schema.Field{Kind: schema.Text}, auto,
			`{"analyzer":"flusso_text","fields":{"keyword":{"ignore_above":256,"type":"keyword"},"keyword_lowercase":{"ignore_above":256,"normalizer":"flusso_lowercase","type":"keyword"}},"type":"text"}`},
		{"text bare", schema.Field{Kind: schema.Text}, bare, `{"type":"text"}`},
		{"identifier bare keeps its analyzer", schema.Field{Kind: schema.Identifier}, bare,
			`{"analyzer":"flusso_code","type":"text"}`},
		{"keyword auto", schema.Field{Kind: schema.Keyword}, auto,
			`{"fields":{"keyword_lowercase":{"ignore_above":256,"normalizer":"flusso_lowercase","type":"keyword"},"text":{"analyzer":"flusso_code","type":"text"}},"type":"keyword"}`},
		{"uuid gets keyword subfields", schema.Field{Kind: schema.UUID}, auto,
			`{"fields":{"keyword_lowercase":{"ignore_above":256,"normalizer":"flusso_lowercase","type":"keyword"},"text":{"analyzer":"flusso_code","type":"text"}},"type":"keyword"}`},
		{"options fields replace auto subfields", schema.Field{Kind: schema.Keyword,
			Options: map[string]any{"fields": map[string]any{}}}, auto, `{"fields":{},"type":"keyword"}`},
		{"options analyzer keeps auto subfields", schema.Field{Kind: schema.Text,
			Options: map[string]any{"analyzer": "english"}}, auto,
			`{"analyzer":"english","fields":{"keyword":{"ignore_above":256,"type":"keyword"},"keyword_lowercase":{"ignore_above":256,"normalizer":"flusso_lowercase","type":"keyword"}},"type":"text"}`},
		{"enum variants bare", schema.Field{Name: "p", Kind: schema.Enum, Variants: []string{"a", "b"}}, bare,
			`{"fields":{"sort":{"ignore_above":256,"normalizer":"flusso_enumsort__p","type":"keyword"}},"type":"keyword"}`},
		{"map", schema.Field{Kind: schema.Map, Values: schema.Long}, auto, `{"dynamic":true,"type":"object"}`},
		{"map explicit dynamic wins", schema.Field{Kind: schema.Map, Values: schema.Long,
			Options: map[string]any{"dynamic": "false"}}, auto, `{"dynamic":"false","type":"object"}`},
		{"json", schema.Field{Kind: schema.JSON}, auto, `{"dynamic":true,"type":"object"}`},
		{"geo", schema.Field{Kind: schema.Geo, Column: "pos"}, auto, `{"type":"geo_point"}`},
		{"custom text gets text subfields", schema.Field{Kind: schema.Custom, OpenSearchType: "text"}, auto,
			`{"analyzer":"flusso_text","fields":{"keyword":{"ignore_above":256,"type":"keyword"},"keyword_lowercase":{"ignore_above":256,"normalizer":"flusso_lowercase","type":"keyword"}},"type":"text"}`},
		{"count", schema.Field{Kind: schema.Count}, auto, `{"type":"long"}`},
		{"avg", schema.Field{Kind: schema.Avg}, auto, `{"type":"double"}`},
		{"max of date", schema.Field{Kind: schema.Max, ValueType: schema.Date}, auto, `{"type":"date"}`},
		{"ids of long", schema.Field{Kind: schema.IDs, ElementType: schema.Long}, auto, `{"type":"long"}`},
		{"empty object", schema.Field{Kind: schema.Object}, auto, `{"type":"object"}`},
		{"has_many", schema.Field{Kind: schema.HasMany, Fields: []schema.Field{{Name: "n", Kind: schema.Integer}}}, auto,
			`{"properties":{"n":{"type":"integer"}},"type":"nested"}`},
		{"belongs_to", schema.Field{Kind: schema.BelongsTo, Fields: []schema.Field{{Name: "n", Kind: schema.Integer}}}, auto,
			`{"properties":{"n":{"type":"integer"}},"type":"object"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(property(&tt.field, tt.opts, tt.field.Name))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestConstantType(t *testing.T) {
	tests := []struct {
		value any
		want  string
	}{
		{nil, "keyword"},
		{"x", "keyword"},
		{true, "boolean"},
		{3, "long"},
		{int64(3), "long"},
		{uint8(3), "long"},
		{uint64(1 << 63), "double"},
		{1.5, "double"},
		{float32(1), "double"},
		{json.Number("4"), "long"},
		{json.Number("4.5"), "double"},
		{[]any{}, "keyword"},
		{[]any{1, 2}, "long"},
		{map[string]any{"a": 1}, "object"},
	}
	for _, tt := range tests {
		if got := constantType(tt.value); got != tt.want {
			t.Errorf("constantType(%#v) = %s, want %s", tt.value, got, tt.want)
		}
	}
}

func TestRankRules(t *testing.T) {
	rule := func(pattern, replacement string) any {
		return map[string]any{"type": "pattern_replace", "pattern": pattern, "replacement": replacement}
	}
	var twelve []string
	for _, v := range "abcdefghijkl" {
		twelve = append(twelve, string(v))
	}
	tests := []struct {
		name     string
		variants []string
		want     []any
	}{
		{"one", []string{"only"}, []any{rule(`\Aonly\z`, "\x000"), rule(`\A\z`, "\x01")}},
		{"pattern characters quoted", []string{`a.b*c\d`, "é ü"}, []any{rule(`\Aa\.b\*c\\d\z`, "\x000"), rule(`\Aé\ ü\z`, "\x001"), rule(`\A\z`, "\x01")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rankRules(tt.variants)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("rankRules = %q\nwant %q", got, tt.want)
			}
		})
	}
	// Ranks of one width, so 10 sorts after 09.
	got := rankRules(twelve)
	if !reflect.DeepEqual(got[0], rule(`\Aa\z`, "\x0000")) || !reflect.DeepEqual(got[11], rule(`\Al\z`, "\x0011")) {
		t.Errorf("rankRules(twelve) = %q", got)
	}
}

func TestEnumSortNormalizer(t *testing.T) {
	if got := EnumSortNormalizer("variants.state"); got != "flusso_enumsort__variants_state" {
		t.Errorf("got %s", got)
	}
}
