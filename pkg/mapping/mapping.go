// Package mapping derives an index's OpenSearch mapping and creation settings
// from its schema alone.
//
// Schemas written for the original Rust flusso must produce the same index
// body here, so the shapes below (analyzers, subfields) follow it key for
// key. The enum sort normalizers do not: the Rust one's char filter rewrote a
// variant inside any value (low2 sorted as 02).
package mapping

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/flusso/flusso/pkg/schema"
)

// Text analysis toolkits.
const (
	Builtin = "builtin"
	ICU     = "icu"
)

// Names of the analysis components every index defines.
const (
	CodeAnalyzer        = "flusso_code"
	TextAnalyzer        = "flusso_text"
	LowercaseNormalizer = "flusso_lowercase"

	wordDelimiter  = "flusso_word_delimiter"
	enumSortPrefix = "flusso_enumsort__"
)

// Subfield names.
const (
	KeywordSubfield          = "keyword"
	KeywordLowercaseSubfield = "keyword_lowercase"
	TextSubfield             = "text"
	SortSubfield             = "sort"
)

// ignoreAbove is the longest string a keyword subfield indexes, OpenSearch's
// own dynamic-mapping default.
const ignoreAbove = 256

// Options are the sink settings that shape a mapping.
type Options struct {
	TextAnalysis  string // Builtin (default when empty) or ICU
	AutoSubfields bool
}

// For returns the mapping of an index: `dynamic: strict` and one typed
// property per field.
func For(ix *schema.Index, opts Options) map[string]any {
	return map[string]any{
		"dynamic":    "strict",
		"properties": properties(ix.Fields, opts, ""),
	}
}

// Settings returns the settings an index is created with: shard counts,
// auto-refresh off for bulk seeding, and the analysis block. The index is
// needed because every enum with variants gets its own rank normalizer.
func Settings(ix *schema.Index, opts Options, shards, replicas int) map[string]any {
	return map[string]any{
		"index": map[string]any{
			"refresh_interval":   "-1",
			"number_of_shards":   shards,
			"number_of_replicas": replicas,
		},
		// Always defined, so an explicit `analyzer: flusso_text` option works
		// with auto_subfields off too.
		"analysis": analysis(ix, opts.TextAnalysis),
	}
}

func analysis(ix *schema.Index, toolkit string) map[string]any {
	fold := "asciifolding"
	text := map[string]any{
		"type":      "custom",
		"tokenizer": "standard",
		"filter":    []any{"lowercase", "asciifolding"},
	}
	normalize := []any{"lowercase", "asciifolding"}
	if toolkit == ICU {
		fold = "icu_folding"
		text = map[string]any{
			"type":      "custom",
			"tokenizer": "icu_tokenizer",
			"filter":    []any{"icu_normalizer", "icu_folding"},
		}
		// Normalizers only take per-character filters; icu_normalizer is
		// the ICU one that qualifies, and it lowercases as well as folds.
		normalize = []any{"icu_normalizer"}
	}

	normalizers := map[string]any{
		LowercaseNormalizer: map[string]any{"type": "custom", "filter": normalize},
	}
	out := map[string]any{
		"filter": map[string]any{
			// Splits C-01234 into c, 01234 and c01234 while keeping c-01234.
			wordDelimiter: map[string]any{
				"type":              "word_delimiter_graph",
				"catenate_all":      true,
				"preserve_original": true,
			},
		},
		"analyzer": map[string]any{
			CodeAnalyzer: map[string]any{
				"type":      "custom",
				"tokenizer": "whitespace",
				// flatten_graph must follow a graph filter at index time.
				"filter": []any{wordDelimiter, "flatten_graph", "lowercase", fold},
			},
			TextAnalyzer: text,
		},
		"normalizer": normalizers,
	}

	charFilters := map[string]any{}
	walkEnums(ix.Fields, "", func(path string, variants []string) {
		name := EnumSortNormalizer(path)
		var chain []any
		for i, rule := range rankRules(variants) {
			n := fmt.Sprintf("%s_%d", name, i)
			charFilters[n] = rule
			chain = append(chain, n)
		}
		normalizers[name] = map[string]any{"type": "custom", "char_filter": chain, "filter": []any{}}
	})
	if len(charFilters) > 0 {
		out["char_filter"] = charFilters
	}
	return out
}

// EnumSortNormalizer names the normalizer (and its char filter) backing the
// `.sort` subfield of the enum at a dotted field path.
func EnumSortNormalizer(path string) string {
	var b strings.Builder
	b.WriteString(enumSortPrefix)
	for _, r := range path {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// rankRules are the char filters, applied in order, that give an enum value
// its sort key. A whole value equal to a variant becomes NUL and the
// variant's rank, zero-padded to one width; any other value stays as it is,
// except the empty one, which becomes \x01. Keys sort byte-wise, so the
// variants come first in their order, then every other value in its own
// order: Postgres text holds no NUL, so only "" would sort before a rank.
// (A mapping char filter would also rewrite a variant inside a longer value:
// low2 would sort as 02.)
func rankRules(variants []string) []any {
	width := len(strconv.Itoa(max(len(variants)-1, 0)))
	rules := make([]any, 0, len(variants)+1)
	add := func(pattern, replacement string) {
		rules = append(rules, map[string]any{"type": "pattern_replace", "pattern": pattern, "replacement": replacement})
	}
	for i, v := range variants {
		add(`\A`+quoteRegexp(v)+`\z`, fmt.Sprintf("\x00%0*d", width, i))
	}
	add(`\A\z`, "\x01")
	return rules
}

// quoteRegexp makes s a literal Java regular expression (the pattern
// language of pattern_replace): a backslash before an ASCII character that
// is not a letter or digit takes it literally, and every other character
// has no meaning of its own.
func quoteRegexp(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 128 && !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// walkEnums calls fn with the dotted path and variants of every enum that
// declares variants, at any depth.
func walkEnums(fields []schema.Field, prefix string, fn func(path string, variants []string)) {
	for _, f := range fields {
		path := join(prefix, f.Name)
		if f.Kind == schema.Enum && len(f.Variants) > 0 {
			fn(path, f.Variants)
		}
		walkEnums(f.Fields, path, fn)
	}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func properties(fields []schema.Field, opts Options, prefix string) map[string]any {
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		out[f.Name] = property(&f, opts, join(prefix, f.Name))
	}
	return out
}

// property builds one field's mapping: the derived type, the auto shape of
// a string field, the enum rank subfield, then the field's options key by
// key over all of it.
func property(f *schema.Field, opts Options, path string) map[string]any {
	typ := Type(f)
	p := map[string]any{"type": typ}

	children := f.Fields
	if !hasChildren(f.Kind) {
		children = nil
	}
	if opts.AutoSubfields && len(children) == 0 {
		switch typ {
		case "text":
			p["analyzer"] = TextAnalyzer
			p["fields"] = map[string]any{
				KeywordSubfield:          map[string]any{"type": "keyword", "ignore_above": ignoreAbove},
				KeywordLowercaseSubfield: lowercaseSubfield(),
			}
		case "keyword":
			p["fields"] = map[string]any{
				TextSubfield:             map[string]any{"type": "text", "analyzer": CodeAnalyzer},
				KeywordLowercaseSubfield: lowercaseSubfield(),
			}
		}
	}

	// The rank subfield is how an enum sorts, not an optional enrichment,
	// so it is there with auto_subfields off too.
	if f.Kind == schema.Enum && len(f.Variants) > 0 {
		fields, ok := p["fields"].(map[string]any)
		if !ok {
			fields = map[string]any{}
			p["fields"] = fields
		}
		fields[SortSubfield] = map[string]any{
			"type":         "keyword",
			"normalizer":   EnumSortNormalizer(path),
			"ignore_above": ignoreAbove,
		}
	}

	switch f.Kind {
	case schema.Identifier:
		p["analyzer"] = CodeAnalyzer
	case schema.Map, schema.JSON:
		// Their keys are the data's, not the schema's: accepted despite the
		// index's dynamic: strict (which would refuse any non-empty object).
		p["dynamic"] = true
	}
	for k, v := range f.Options {
		p[k] = v
	}

	if len(children) > 0 {
		p["properties"] = properties(children, opts, path)
	}
	return p
}

func lowercaseSubfield() map[string]any {
	return map[string]any{"type": "keyword", "normalizer": LowercaseNormalizer, "ignore_above": ignoreAbove}
}

func hasChildren(k schema.Kind) bool { return k == schema.Object || k.IsJoin() }

// Type is the OpenSearch type of a field.
func Type(f *schema.Field) string {
	switch {
	case f.Kind == schema.Custom:
		return f.OpenSearchType
	case f.Kind == schema.Object, f.Kind == schema.Map, f.Kind == schema.BelongsTo, f.Kind == schema.HasOne:
		return "object"
	case f.Kind.IsToMany():
		return "nested"
	case f.Kind == schema.Geo:
		return "geo_point"
	case f.Kind == schema.Count:
		return "long"
	case f.Kind == schema.Avg:
		return "double"
	case f.Kind == schema.Sum, f.Kind == schema.Min, f.Kind == schema.Max:
		if f.ValueType == "" {
			return "double"
		}
		return scalarType(f.ValueType)
	case f.Kind == schema.IDs:
		return scalarType(f.ElementType)
	case f.Kind == schema.Constant:
		return constantType(f.Value)
	}
	return scalarType(f.Kind)
}

// scalarType maps a scalar kind to its OpenSearch type.
func scalarType(k schema.Kind) string {
	switch k {
	case schema.Text, schema.Identifier:
		return "text"
	case schema.Keyword, schema.Enum, schema.UUID:
		return "keyword"
	case schema.Decimal:
		return "double"
	case schema.Date, schema.Timestamp:
		return "date"
	case schema.JSON:
		return "object"
	}
	// boolean, short, integer, long, float, double and binary are named
	// the same on both sides.
	return string(k)
}

// constantType is the type a constant's value implies, as the schema file
// states it: integers are long, other numbers double, strings (dates
// included) and null keyword, a list its first item's type.
func constantType(v any) string {
	switch v := v.(type) {
	case nil, string:
		return "keyword"
	case bool:
		return "boolean"
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return "long"
		}
		return "double"
	case []byte:
		return "binary"
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "long"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if rv.Uint() <= 1<<63-1 {
			return "long"
		}
		return "double"
	case reflect.Float32, reflect.Float64:
		return "double"
	case reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		if rv.Len() == 0 {
			return "keyword"
		}
		return constantType(rv.Index(0).Interface())
	}
	// Anything else (a decoded timestamp, say) renders as a string.
	return "keyword"
}
