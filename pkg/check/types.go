package check

import (
	"slices"
	"strings"

	"github.com/flusso/flusso/pkg/schema"
)

var (
	stringTypes  = []string{"text", "varchar", "bpchar", "name", "citext"}
	numericTypes = []string{"int2", "int4", "int8", "float4", "float8", "numeric", "money"}
	jsonTypes    = []string{"json", "jsonb"}
)

// accepted lists the Postgres base types each scalar kind reads, as the
// schema format documents them. An integer kind also reads narrower
// integers, and double reads float4: the value always fits.
var accepted = map[schema.Kind][]string{
	schema.Text:       stringTypes,
	schema.Identifier: stringTypes,
	schema.Keyword:    stringTypes,
	schema.Enum:       stringTypes, // and Postgres enums
	schema.UUID:       {"uuid"},
	schema.Boolean:    {"bool"},
	schema.Short:      {"int2"},
	schema.Integer:    {"int2", "int4"},
	schema.Long:       {"int2", "int4", "int8"},
	schema.Float:      {"float4"},
	schema.Double:     {"float4", "float8"},
	schema.Decimal:    {"numeric", "money"},
	schema.Date:       {"date"},
	schema.Timestamp:  {"timestamp", "timestamptz", "time", "timetz"},
	schema.Binary:     {"bytea"},
	schema.JSON:       jsonTypes,
}

// accepts reports whether a field of kind k (with its custom Postgres
// types) may read column c, and if not, what it would accept.
func accepts(k schema.Kind, custom []string, c column) (bool, string) {
	if k == schema.Custom {
		for _, want := range custom {
			w := canonicalType(want)
			if w == canonicalType(c.name) || w == canonicalType(c.base) || w == canonicalType(c.typ) {
				return true, ""
			}
		}
		return false, strings.Join(custom, ", ")
	}
	list, ok := accepted[k]
	if !ok {
		return true, "" // not a scalar kind: nothing to compare
	}
	if k == schema.Enum && c.enum {
		return true, ""
	}
	if slices.Contains(list, c.base) {
		return true, ""
	}
	want := strings.Join(list, ", ")
	if k == schema.Enum {
		want += " or an enum type"
	}
	return false, want
}

// aliases maps the SQL spellings of built-in types to their typname.
var aliases = map[string]string{
	"smallint": "int2", "integer": "int4", "int": "int4", "bigint": "int8",
	"real": "float4", "double precision": "float8", "float": "float8",
	"boolean": "bool", "character varying": "varchar", "character": "bpchar", "char": "bpchar",
	"decimal":                     "numeric",
	"timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz",
	"time without time zone": "time", "time with time zone": "timetz",
}

// canonicalType reduces a type name to its typname: lowercase, without
// modifiers or schema, aliases resolved.
func canonicalType(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if i, j := strings.IndexByte(s, '('), strings.IndexByte(s, ')'); i >= 0 && j > i {
		// "character varying(40)", "timestamp(3) with time zone"
		s = strings.TrimSpace(s[:i]) + s[j+1:]
	}
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.Trim(s, `"`)
	if a, ok := aliases[s]; ok {
		return a
	}
	return s
}

// keyClass groups types whose values can be compared for a join.
func keyClass(c column) string {
	switch {
	case slices.Contains([]string{"int2", "int4", "int8", "numeric"}, c.base):
		return "integer"
	case slices.Contains(stringTypes, c.base) || c.enum:
		return "string"
	}
	return c.base
}

// suggestOrder is the preference among the kinds that read a base type: the
// narrowest numeric kind, and text for strings (keyword and identifier read
// them too; which one fits is a matter of how the value is searched).
var suggestOrder = []schema.Kind{
	schema.Text, schema.UUID, schema.Boolean, schema.Short, schema.Integer, schema.Long,
	schema.Float, schema.Double, schema.Decimal, schema.Date, schema.Timestamp, schema.Binary, schema.JSON,
}

// Suggest returns the field kind for a column of base type base (a
// pg_type.typname; enum for a Postgres enum), the first in suggestOrder
// that check accepts for it, or custom when no built-in kind reads it. The
// designer and `flusso init` scaffold with it, so what they write passes check.
func Suggest(base string, enum bool) schema.Kind {
	if enum {
		return schema.Enum
	}
	for _, k := range suggestOrder {
		if ok, _ := accepts(k, nil, column{base: base}); ok {
			return k
		}
	}
	return schema.Custom
}
