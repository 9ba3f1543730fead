package audit

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDiff(t *testing.T) {
	tests := []struct {
		name      string
		want, got string
		diffs     []FieldDiff
	}{
		{"member order", `{"a":1,"b":{"c":"x","d":[1,2]}}`, `{"b":{"d":[1,2],"c":"x"},"a":1}`, nil},
		{"number formatting", `{"a":1.5,"b":100,"c":0.1,"d":-0}`, `{"a":1.50,"b":1e2,"c":1E-1,"d":0}`, nil},
		{"big integers exactly", `{"a":9007199254740993}`, `{"a":9007199254740992}`,
			[]FieldDiff{{Path: "a", Want: json.RawMessage(`9007199254740993`), Got: json.RawMessage(`9007199254740992`)}}},
		{"changed value", `{"name":"renamed","n":1}`, `{"name":"old","n":1}`,
			[]FieldDiff{{Path: "name", Want: json.RawMessage(`"renamed"`), Got: json.RawMessage(`"old"`)}}},
		{"missing and extra fields", `{"a":1,"b":2}`, `{"b":2,"c":3}`,
			[]FieldDiff{{Path: "a", Want: json.RawMessage(`1`)}, {Path: "c", Got: json.RawMessage(`3`)}}},
		{"nested array element", `{"notes":[{"body":"x"},{"body":"y"}]}`, `{"notes":[{"body":"x"},{"body":"z"}]}`,
			[]FieldDiff{{Path: "notes[1].body", Want: json.RawMessage(`"y"`), Got: json.RawMessage(`"z"`)}}},
		{"array length", `{"tags":[1,2]}`, `{"tags":[1]}`,
			[]FieldDiff{{Path: "tags", Want: json.RawMessage(`[1,2]`), Got: json.RawMessage(`[1]`)}}},
		{"type differs", `{"a":"1"}`, `{"a":1}`,
			[]FieldDiff{{Path: "a", Want: json.RawMessage(`"1"`), Got: json.RawMessage(`1`)}}},
		{"null against absent", `{"a":null}`, `{}`, []FieldDiff{{Path: "a", Want: json.RawMessage(`null`)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Diff([]byte(tt.want), []byte(tt.got), -1)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.diffs) {
				t.Errorf("diff = %+v, want %+v", got, tt.diffs)
			}
			same, err := equal([]byte(tt.want), []byte(tt.got))
			if err != nil || same != (tt.diffs == nil) {
				t.Errorf("equal = %v, %v; want %v", same, err, tt.diffs == nil)
			}
		})
	}
	if _, err := Diff([]byte(`{"a":`), []byte(`{}`), -1); err == nil {
		t.Error("a broken document compared without error")
	}
}
