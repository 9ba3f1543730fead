package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
)

// HashLen is the length of a schema hash in hex digits: the same shape as
// the original implementation's, so index names keep their form
// ({logical}_{hash}_{gen}).
const HashLen = 8

// Hash names the structure of ix: the first HashLen lowercase hex digits
// of the SHA-256 of its canonical JSON (see docs/schema-hash.md). It
// depends only on the parsed model, so comments, key order, layout and
// spelled-out defaults do not move it, and everything that shapes the
// documents or the mapping does.
func Hash(ix *Index) string {
	sum := sha256.Sum256(Canonical(ix))
	return hex.EncodeToString(sum[:])[:HashLen]
}

// Canonical renders the JSON that Hash digests: the model as a tree of
// objects with members sorted and zero values left out, serialized as RFC
// 8785 (JCS) prescribes. docs/schema-hash.md specifies it member by member.
func Canonical(ix *Index) []byte {
	root := obj{
		"version": int64(ix.Version),
		"table":   ix.Table,
		"schema":  ix.Schema,
		"fields":  fieldList(ix.Fields), // present even when empty
	}
	root.str("primary_key", ix.PrimaryKey)
	if sd := ix.SoftDelete; sd != nil {
		m := obj{}
		m.str("column", sd.Column)
		m.str("field", sd.Field)
		m.list("when", filterList(sd.When))
		root["soft_delete"] = m
	}
	root.list("filters", filterList(ix.Filters))
	var b []byte
	return appendJSON(b, root)
}

// obj is a JSON object under construction; its setters leave out zero
// values, so an unset attribute and an attribute left at its zero value
// hash alike.
type obj map[string]any

func (o obj) str(k, v string) {
	if v != "" {
		o[k] = v
	}
}

func (o obj) list(k string, v []any) {
	if len(v) > 0 {
		o[k] = v
	}
}

func fieldList(fields []Field) []any {
	out := make([]any, len(fields))
	for i := range fields {
		out[i] = fieldObj(&fields[i])
	}
	return out
}

func fieldObj(f *Field) obj {
	o := obj{"name": f.Name, "kind": string(f.Kind)}
	if f.Required {
		o["required"] = true
	}
	o.str("column", f.Column)
	if len(f.Options) > 0 {
		o["options"] = f.Options
	}
	o.list("transforms", stringList(f.Transforms))
	if f.Default != nil {
		o["default"] = f.Default
	}
	o.list("variants", stringList(f.Variants))
	o.list("postgres", stringList(f.PostgresTypes))
	o.str("opensearch", f.OpenSearchType)
	o.str("lat", f.Lat)
	o.str("lon", f.Lon)
	o.str("values", string(f.Values))
	if f.Value != nil {
		o["value"] = f.Value
	}
	o.list("fields", fieldList(f.Fields))
	o.str("table", f.Table)
	o.str("primary_key", f.PrimaryKey)
	o.str("foreign_key", f.ForeignKey)
	if t := f.Through; t != nil {
		o["through"] = obj{"table": t.Table, "left_key": t.LeftKey, "right_key": t.RightKey}
	}
	o.list("filters", filterList(f.Filters))
	if len(f.OrderBy) > 0 {
		terms := make([]any, len(f.OrderBy))
		for i, ob := range f.OrderBy {
			terms[i] = obj{"column": ob.Column, "direction": string(ob.Direction)}
		}
		o["order_by"] = terms
	}
	if f.Limit != 0 {
		o["limit"] = int64(f.Limit)
	}
	o.str("value_type", string(f.ValueType))
	o.str("element_type", string(f.ElementType))
	return o
}

func filterList(filters []Filter) []any {
	out := make([]any, len(filters))
	for i, f := range filters {
		o := obj{}
		o.str("raw", f.Raw)
		o.str("column", f.Column)
		o.str("op", string(f.Op))
		if len(f.Values) > 0 {
			o["values"] = f.Values
		}
		out[i] = o
	}
	return out
}

func stringList[S ~string](list []S) []any {
	out := make([]any, len(list))
	for i, s := range list {
		out[i] = string(s)
	}
	return out
}

// appendJSON serializes v per RFC 8785: no whitespace, object members
// sorted by the UTF-16 code units of their names, numbers in the shortest
// form that round-trips, strings escaping only what JSON requires.
func appendJSON(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case string:
		return appendString(b, v)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case float64:
		return appendFloat(b, v)
	case []any:
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, x)
		}
		return append(b, ']')
	case obj:
		return appendObject(b, v)
	case map[string]any:
		return appendObject(b, v)
	}
	// The loader only produces the types above. A model built by hand may
	// hold others (an int32 option); take them as JSON would.
	var x any
	if data, err := json.Marshal(v); err == nil && json.Unmarshal(data, &x) == nil {
		return appendJSON(b, x)
	}
	return appendString(b, fmt.Sprint(v))
}

func appendObject(b []byte, m map[string]any) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int {
		return slices.Compare(utf16.Encode([]rune(x)), utf16.Encode([]rune(y)))
	})
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendJSON(b, m[k])
	}
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xf])
		default:
			b = append(b, string(r)...)
		}
	}
	return append(b, '"')
}

// appendFloat writes f as ECMAScript's Number.prototype.toString does,
// which RFC 8785 adopts: integral values without a fraction, exponents
// only below 1e-6 and from 1e21 on.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...) // as JSON.stringify; the loader rejects them
	}
	if f == 0 {
		return append(b, '0') // also for -0
	}
	abs := math.Abs(f)
	if abs >= 1e-6 && abs < 1e21 {
		return strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	s := strconv.FormatFloat(f, 'e', -1, 64)
	// Go writes e-07 and e+21; ECMAScript writes e-7 and e+21.
	mant, exp, _ := strings.Cut(s, "e")
	b = append(b, mant...)
	b = append(b, 'e', exp[0])
	return append(b, strings.TrimLeft(exp[1:], "0")...)
}
