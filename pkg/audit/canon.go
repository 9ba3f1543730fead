package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strconv"
)

// FieldDiff is one path where the stored document differs from the one
// Postgres builds. Want or Got is absent when the field is missing on that
// side.
type FieldDiff struct {
	Path string          `json:"path"`
	Want json.RawMessage `json:"want,omitempty"`
	Got  json.RawMessage `json:"got,omitempty"`
}

// decode parses a document for comparison, keeping numbers as written.
func decode(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// Diff compares two documents by content: object members in any order,
// numbers by value (1.50 equals 1.5, 1e2 equals 100). It returns the paths
// that differ, at most limit of them (limit < 0: all); none when equal.
func Diff(want, got []byte, limit int) ([]FieldDiff, error) {
	w, err := decode(want)
	if err != nil {
		return nil, fmt.Errorf("decoding the built document: %w", err)
	}
	g, err := decode(got)
	if err != nil {
		return nil, fmt.Errorf("decoding the stored document: %w", err)
	}
	var out []FieldDiff
	walk("", w, g, func(path string, a, b any, hasA, hasB bool) bool {
		fd := FieldDiff{Path: path}
		if hasA {
			fd.Want = encode(a)
		}
		if hasB {
			fd.Got = encode(b)
		}
		out = append(out, fd)
		return limit < 0 || len(out) < limit
	})
	return out, nil
}

// equal reports whether two documents have the same content (see Diff).
func equal(want, got []byte) (bool, error) {
	d, err := Diff(want, got, 1)
	return len(d) == 0, err
}

// walk calls report for each path where a and b differ, until it returns
// false; it reports whether to go on.
func walk(path string, a, b any, report func(path string, a, b any, hasA, hasB bool) bool) bool {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			return report(path, a, b, true, true)
		}
		keys := make([]string, 0, len(av)+len(bv))
		for k := range av {
			keys = append(keys, k)
		}
		for k := range bv {
			if _, ok := av[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			x, inA := av[k]
			y, inB := bv[k]
			p := join(path, k)
			var goOn bool
			if inA && inB {
				goOn = walk(p, x, y, report)
			} else {
				goOn = report(p, x, y, inA, inB)
			}
			if !goOn {
				return false
			}
		}
		return true
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return report(path, a, b, true, true)
		}
		for i := range av {
			if !walk(path+"["+strconv.Itoa(i)+"]", av[i], bv[i], report) {
				return false
			}
		}
		return true
	case json.Number:
		bv, ok := b.(json.Number)
		if ok && sameNumber(av, bv) {
			return true
		}
		return report(path, a, b, true, true)
	default: // string, bool, nil
		if a == b {
			return true
		}
		return report(path, a, b, true, true)
	}
}

// sameNumber compares two JSON numbers by value.
func sameNumber(a, b json.Number) bool {
	if a == b {
		return true
	}
	x, okX := new(big.Rat).SetString(string(a))
	y, okY := new(big.Rat).SetString(string(b))
	return okX && okY && x.Cmp(y) == 0
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func encode(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(strconv.Quote(fmt.Sprint(v)))
	}
	return b
}
