package opensearch

import (
	"encoding/json"
	"strings"
	"testing"
)

var validCases = []string{
	``, ` `, `{}`, ` { } `, `[]`, `[ ]`, `{"a":1}`, `{"a" : 1, "b" : [1, 2.5, -3e10, 0, -0.0, 1E+2, 1e-2]}`,
	`"x"`, `"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"`, `"\u00g0"`, `"\u00"`, `"\x"`, `"a` + "\n" + `b"`, `"a` + "\x1f" + `"`, "\"\xff\xfe\"",
	`true`, `false`, `null`, `nul`, `truex`, `tru`, `True`, `-`, `-0`, `01`, `1.`, `.5`, `1e`, `1e+`, `+1`, `-a`, `0x10`,
	`{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a"}`, `{"a":}`, `{1:2}`, `{"a":1 "b":2}`, `[1 2]`, `[1}`, `{"a":1]`, `{"a":[}`,
	`{} {}`, `{}x`, `[[[[]]]]`, `[[[[]]]`, `[{"a":[{"b":{}}]}]`, "\t\r\n{\n}\n", `"`, `"\`, `"\u12`, `{"a":1`, `[`, `{`, `{"a`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
	strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
}

func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	for _, c := range validCases {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%.60q) = %v, json.Valid says %v", c, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Errorf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}
