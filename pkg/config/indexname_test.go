package config

import (
	"net/http"
	"strings"
	"testing"

	"github.com/flusso/flusso/internal/testenv"
)

// TestValidateIndexName feeds names OpenSearch refuses and names it takes,
// and checks that the real OpenSearch agrees with each verdict: what is
// refused here fails there, what passes here is created there.
func TestValidateIndexName(t *testing.T) {
	base := testenv.OpenSearch(t)
	p := testenv.IndexPrefix(t) // names that may be created start with it
	tests := []struct {
		name string
		want string // part of the error; "" accepts
	}{
		{p + "users", ""},
		{p + "a.b-c_d", ""},
		{p + strings.Repeat("x", 255-len(p)), ""},
		{"_" + p, `must not start with '_'`},
		{"-" + p, `must not start with '-'`},
		{"+" + p, `contains '+'`},
		{p + "Users", "must be lowercase"},
		{".", `"." is reserved`},
		{"..", `".." is reserved`},
		{p + strings.Repeat("x", 256-len(p)), "256 bytes long, more than the 255 allowed"},
		{p + `a\b`, `contains '\\'`},
		{p + "a/b", `contains '/'`},
		{p + "a*b", `contains '*'`},
		{p + "a?b", `contains '?'`},
		{p + `a"b`, `contains '"'`},
		{p + "a<b", `contains '<'`},
		{p + "a>b", `contains '>'`},
		{p + "a|b", `contains '|'`},
		{p + "a b", `contains ' '`},
		{p + "a,b", `contains ','`},
		{p + "a#b", `contains '#'`},
		{p + "a:b", `contains ':'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateIndexName(tt.name)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one saying %s", err, tt.want)
			}
			if status := createIndex(t, base, tt.name); (status == http.StatusOK) != (tt.want == "") {
				t.Errorf("OpenSearch answered %d to creating it", status)
			}
		})
	}
}

// createIndex asks OpenSearch to create the index and returns its status.
func createIndex(t *testing.T, base, name string) int {
	t.Helper()
	status, _ := testenv.OpenSearchRequest(t, http.MethodPut, base+"/"+pathEscape(name),
		`{"settings":{"number_of_shards":1,"number_of_replicas":0}}`)
	return status
}

// pathEscape escapes every byte but letters and digits, so each name
// reaches OpenSearch as one path segment, exactly as given.
func pathEscape(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
		}
	}
	return b.String()
}

// TestCheckPrefix: a prefix given at run time is checked on its own and
// with every index name behind it.
func TestCheckPrefix(t *testing.T) {
	cfg := &Config{Path: "flusso.toml", Indexes: []Index{{Name: "users"}, {Name: "_audit"}}}
	tests := []struct {
		prefix string
		want   string // the error; "" accepts
	}{
		{"", `index[1] of flusso.toml: OpenSearch refuses the index name "_audit": it must not start with '_'`},
		{"dev_", ""},
		{"7_", ""},
		{"Dev_", `index prefix "Dev_" must be lowercase`},
		{"_dev", `index prefix "_dev" must start with a letter or digit`},
		{"-dev", `index prefix "-dev" must start with a letter or digit`},
		{"a b", `index prefix "a b" contains ' ', which OpenSearch forbids in index names`},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			err := cfg.CheckPrefix(tt.prefix)
			if got := errString(err); got != tt.want {
				t.Errorf("CheckPrefix(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestLoadPrefixedIndexName: with a prefix before it, a name starting with _
// is a valid OpenSearch name.
func TestLoadPrefixedIndexName(t *testing.T) {
	cfg, err := Load(writeConfig(t, "prefix = \"dev_\"\n"+minimalSource+"[[index]]\nname = \"_users\"\nschema = \"u.yml\"\nenabled = true\n",
		map[string]string{"u.yml": "version: 1\ntable: users\nfields:\n  - integer: id\n"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Indexes[0].Name != "_users" {
		t.Errorf("indexes = %+v", cfg.Indexes)
	}
}
