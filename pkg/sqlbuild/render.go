package sqlbuild

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/flusso/flusso/pkg/schema"
)

// expr is an SQL expression and its type.
type expr struct {
	sql string
	t   pgType
}

func cast(e expr, t pgType) expr { return expr{sql: "(" + e.sql + ")::" + t.name, t: t} }

// declared converts e to the Postgres type the field kind stands for, leaving
// it alone when it already renders as that kind. A value that does not
// convert fails the statement with a data exception, which Build reports as
// the document's error.
func declared(k schema.Kind, e expr) expr {
	f := e.t.fam
	switch k {
	case schema.Text, schema.Identifier, schema.Keyword, schema.Enum:
		if f == famString || f == famEnum || f == famUUID {
			return e
		}
		return cast(e, tText)
	case schema.UUID:
		if f == famUUID {
			return e
		}
		return cast(e, tUUID)
	case schema.Boolean:
		if f == famBool {
			return e
		}
		return cast(e, tBool)
	case schema.Short:
		return narrowInt(e, tInt2)
	case schema.Integer:
		return narrowInt(e, tInt4)
	case schema.Long:
		return narrowInt(e, tInt8)
	case schema.Float:
		return number(e, tFloat4)
	case schema.Double, schema.Decimal:
		return number(e, tFloat8)
	case schema.Date:
		if f == famDate || f == famTimestamp || f == famTimestampTZ {
			return e
		}
		return cast(e, tDate)
	case schema.Timestamp:
		switch f {
		case famTimestamp, famTimestampTZ, famDate:
			return e
		case famTime:
			return onEpochDay(e)
		}
		return cast(e, tTimestampTZ)
	case schema.Binary:
		if f == famBytea {
			return e
		}
		return cast(e, tBytea)
	case schema.JSON:
		if f == famString {
			return cast(e, tJSONB)
		}
		return e
	}
	return e // custom: the value as JSON of its own type
}

// onEpochDay puts a time of day on 1970-01-01: an OpenSearch date field
// refuses a time without a date. A timetz keeps its offset, so it renders in
// UTC like any timestamptz.
func onEpochDay(e expr) expr {
	t := builtin("timestamp without time zone", "timestamp")
	if e.t.base == "timetz" {
		t = tTimestampTZ
	}
	return expr{sql: "(DATE '1970-01-01' + " + e.sql + ")", t: t}
}

// narrowInt keeps integers no wider than t and casts anything else to t, so
// a value out of t's range is an error rather than a number OpenSearch
// rejects.
func narrowInt(e expr, t pgType) expr {
	if e.t.fam == famInt && intWidth(e.t.base) <= intWidth(t.base) {
		return e
	}
	return cast(e, t)
}

// number keeps every numeric type as it is (numeric keeps its digits) and
// casts anything else to t.
func number(e expr, t pgType) expr {
	switch e.t.fam {
	case famInt, famFloat, famNumeric:
		return e
	case famMoney:
		return cast(e, tNumeric)
	}
	return cast(e, t)
}

// natural renders e as the JSON OpenSearch accepts for its type. Values
// OpenSearch would reject (non-finite numbers, infinite dates) raise a data
// exception instead of reaching the sink.
func natural(e expr) string {
	switch e.t.fam {
	case famFloat, famNumeric:
		// x - x is 0 for every finite number and NaN for NaN and ±Infinity.
		return fmt.Sprintf("CASE WHEN %[1]s - %[1]s <> 0 THEN %[2]s ELSE %[1]s END", e.sql, raise("non-finite number", e, e.t))
	case famMoney:
		return cast(e, tNumeric).sql
	case famDate, famTimestamp:
		// json renders timestamps as ISO 8601 with a T (2024-01-02T03:04:05.123456).
		return fmt.Sprintf("CASE WHEN isfinite(%[1]s) THEN %[1]s ELSE %[2]s END", e.sql, raise("infinite date", e, e.t))
	case famTimestampTZ:
		// In UTC with Z whatever the session's TimeZone, so a document does
		// not depend on the connection that built it.
		return fmt.Sprintf("CASE WHEN isfinite(%[1]s) THEN (to_json((%[1]s) AT TIME ZONE 'UTC') #>> '{}') || 'Z' ELSE (%[2]s)::text END",
			e.sql, raise("infinite date", e, e.t))
	case famBytea:
		// encode wraps base64 every 76 characters.
		return fmt.Sprintf("translate(encode(%s, 'base64'), E'\\n', '')", e.sql)
	}
	return e.sql
}

// raise is an expression of type t that fails with a data exception naming
// the value. It depends on the value so the planner cannot fold it.
func raise(what string, e expr, t pgType) string {
	return fmt.Sprintf("(%s || (%s)::text)::%s", quoteLiteral("flusso: "+what+": "), e.sql, t.name)
}

// transformed applies string transforms; they work on the text form.
func transformed(e expr, ts []schema.Transform) expr {
	if len(ts) == 0 {
		return e
	}
	if e.t.base != "text" && e.t.base != "varchar" {
		e = cast(e, tText)
	}
	for _, t := range ts {
		switch t {
		case schema.Lowercase:
			e.sql = "lower(" + e.sql + ")"
		case schema.Trim:
			e.sql = "btrim(" + e.sql + ")"
		}
	}
	e.t = tText
	return e
}

// isStringKind reports whether k renders as a JSON string.
func isStringKind(k schema.Kind) bool {
	switch k {
	case schema.Text, schema.Identifier, schema.Keyword, schema.Enum, schema.UUID:
		return true
	}
	return false
}

// scalarText is the text form of a schema scalar (a default or a filter
// operand) for binding as a text parameter.
func scalarText(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return "", fmt.Errorf("non-finite number %v", v)
		}
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("%v (%T) is not a scalar", v, v)
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
