package sqlbuild

import (
	"encoding/json"
	"testing"
)

func TestCompact(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a" : 1, "b" : [1, 2]}`, `{"a":1,"b":[1,2]}`},
		{"{\n\t\"a\" :\r\n null }", `{"a":null}`},
		{`{"a b" : "c : d, e"}`, `{"a b":"c : d, e"}`},
		{`{"q" : "say \"hi , there\"", "n" : 1}`, `{"q":"say \"hi , there\"","n":1}`},
		{`{"s" : "back\\", "t" : " x "}`, `{"s":"back\\","t":" x "}`},
		{`["\u0022 ", "é , ü"]`, `["\u0022 ","é , ü"]`},
		{`{}`, `{}`},
		{``, ``},
	}
	for _, tt := range tests {
		got := string(compact([]byte(tt.in)))
		if got != tt.want {
			t.Errorf("compact(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if tt.in != "" && !json.Valid([]byte(got)) {
			t.Errorf("compact(%q) = %q is not valid JSON", tt.in, got)
		}
	}
}
