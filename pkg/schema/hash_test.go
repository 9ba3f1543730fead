package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
)

const hashBase = `version: 1
table: users
primary_key: id
soft_delete: {column: deleted}
fields:
  - keyword: email
    required: true
    transforms: [trim, lowercase]
    options: {ignore_above: 256, boost: 1}
  - has_many: orders
    table: orders
    foreign_key: user_id
    primary_key: id
    order_by: [{column: id}]
    filters: [{column: status, op: in, value: [paid, sent]}]
    fields:
      - double: total
`

func hashOf(t *testing.T, src string) string {
	t.Helper()
	ix, err := Parse("h.schema.yml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return Hash(ix)
}

// TestHashStable: what does not change the documents or the mapping does
// not change the hash.
func TestHashStable(t *testing.T) {
	want := hashOf(t, hashBase)
	for name, src := range map[string]string{
		"comments and blank lines": "# users\n\n" + strings.ReplaceAll(hashBase, "primary_key: id\n", "primary_key: id # the key\n\n"),
		"reordered keys": `fields:
  - required: true
    options: {boost: 1.0, ignore_above: 256}
    transforms: [trim, lowercase]
    keyword: email
  - fields:
      - double: total
    filters: [{value: [paid, sent], op: in, column: status}]
    order_by: [{column: id}]
    primary_key: id
    foreign_key: user_id
    table: orders
    has_many: orders
soft_delete: {column: deleted}
primary_key: id
table: users
version: 1
`,
		"block style and quoting": `version: 1
table: "users"
primary_key: 'id'
soft_delete:
  column: deleted
fields:
  - keyword: "email"
    required: true
    transforms:
      - trim
      - lowercase
    options:
      ignore_above: 256
      boost: 1
  - has_many: orders
    table: orders
    foreign_key: user_id
    primary_key: id
    order_by:
      - column: id
    filters:
      - column: status
        op: in
        value:
          - paid
          - sent
    fields:
      - double: total
`,
		"defaults spelled out": strings.NewReplacer(
			"table: users\n", "table: users\nschema: public\ndoc_id:\n",
			"required: true\n", "required: true\n    column: email\n",
			"{column: id}", "{column: id, direction: asc}",
			"- double: total\n", "- double: total\n        column: total\n        required: false\n",
		).Replace(hashBase),
		"identifiers in other case": strings.NewReplacer("table: users", "table: Users", "user_id", "USER_ID").Replace(hashBase),
		"anchors":                   strings.NewReplacer("primary_key: id\nsoft", "primary_key: &pk id\nsoft", "    primary_key: id\n", "    primary_key: *pk\n").Replace(hashBase),
	} {
		if got := hashOf(t, src); got != want {
			t.Errorf("%s: hash %s, want %s", name, got, want)
		}
	}

	// Nor do the file name and lines, which the model keeps for messages.
	a, _ := Parse("a.schema.yml", []byte(hashBase))
	b, _ := Parse("elsewhere/b.schema.yml", []byte("\n\n\n"+hashBase))
	if Hash(a) != Hash(b) {
		t.Errorf("file and lines moved the hash: %s, %s", Hash(a), Hash(b))
	}
}

// TestHashChanges: each change that shapes the documents or the mapping
// gives a hash of its own.
func TestHashChanges(t *testing.T) {
	seen := map[string]string{hashOf(t, hashBase): "base"}
	for name, change := range map[string][2]string{
		"table":            {"table: users", "table: members"},
		"schema":           {"table: users", "table: users\nschema: crm"},
		"primary key":      {"primary_key: id\nsoft", "primary_key: uid\nsoft"},
		"soft delete":      {"soft_delete: {column: deleted}", "soft_delete: {column: removed}"},
		"no soft delete":   {"soft_delete: {column: deleted}\n", ""},
		"root filter":      {"fields:\n  - keyword", "filters: [{raw: \"id > 0\"}]\nfields:\n  - keyword"},
		"field name":       {"keyword: email", "keyword: mail\n    column: email"},
		"field type":       {"keyword: email", "text: email"},
		"required":         {"required: true\n", "required: false\n"},
		"column":           {"required: true\n", "required: true\n    column: mail\n"},
		"option value":     {"ignore_above: 256", "ignore_above: 512"},
		"transform order":  {"[trim, lowercase]", "[lowercase, trim]"},
		"filter value":     {"[paid, sent]", "[paid]"},
		"filter op":        {"op: in", "op: not_in"},
		"order direction":  {"{column: id}", "{column: id, direction: desc}"},
		"limit":            {"order_by: [{column: id}]", "order_by: [{column: id}]\n    limit: 5"},
		"foreign key":      {"foreign_key: user_id", "foreign_key: owner_id"},
		"nested field":     {"- double: total", "- float: total"},
		"added field":      {"      - double: total\n", "      - double: total\n      - keyword: status\n"},
		"field order":      {"  - keyword: email", "  - long: id\n  - keyword: email"},
		"default":          {"required: true\n", "required: true\n    default: none\n"},
		"default type":     {"required: true\n", "required: true\n    default: \"1\"\n"},
		"default a number": {"required: true\n", "required: true\n    default: 1\n"},
	} {
		src := strings.Replace(hashBase, change[0], change[1], 1)
		if src == hashBase {
			t.Fatalf("%s: %q is not in the base schema", name, change[0])
		}
		h := hashOf(t, src)
		if other, dup := seen[h]; dup {
			t.Errorf("%s: hash %s, the same as %s", name, h, other)
		}
		seen[h] = name
	}
}

func TestHashFormat(t *testing.T) {
	for _, file := range []string{"testdata/every_type.schema.yml", "testdata/users.schema.yml", "testdata/minimal.schema.yml"} {
		ix, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		if h := Hash(ix); !regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(h) {
			t.Errorf("%s: hash %q is not 8 lowercase hex digits", file, h)
		}
	}
}

// TestHashDocExample checks the worked example of docs/schema-hash.md, so
// the document and the code cannot drift apart.
func TestHashDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/schema-hash.md")
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := strings.Cut(string(doc), "## Worked example")
	if !ok {
		t.Fatal("docs/schema-hash.md has no worked example")
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```.*?```json\n(.*?)\n```.*?\n`(\\w{64})`.*?\nHash: `(\\w+)`").FindStringSubmatch(example)
	if m == nil {
		t.Fatal("the worked example lacks the yaml input, the json bytes, the digest or the Hash: line")
	}
	input, canonical, digest, hash := m[1], m[2], m[3], m[4]
	ix, err := Parse("example.schema.yml", []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(Canonical(ix)); got != canonical {
		t.Errorf("canonical bytes:\n got %s\nwant %s", got, canonical)
	}
	sum := sha256.Sum256([]byte(canonical))
	if got := hex.EncodeToString(sum[:]); got != digest {
		t.Errorf("SHA-256 of the documented bytes is %s, the document says %s", got, digest)
	}
	if got := Hash(ix); got != hash {
		t.Errorf("hash %s, the document says %s", got, hash)
	}
}

func TestCanonicalJSON(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{int64(-5), `-5`},
		{1.0, `1`},
		{0.5, `0.5`},
		{-0.0, `0`},
		{1e21, `1e+21`},
		{1e20, `100000000000000000000`},
		{123456789012345680000.0, `123456789012345680000`},
		{1e-7, `1e-7`},
		{0.000001, `0.000001`},
		{5e-324, `5e-324`},
		{1.7976931348623157e308, `1.7976931348623157e+308`},
		{"a\"b\\c\n\t\x01\x1f", `"a\"b\\c\n\t\u0001\u001f"`},
		{"é €<>&\u2028", "\"é €<>&\u2028\""},
		{map[string]any{"b": 1.5, "a": []any{true, nil, "x"}}, `{"a":[true,null,"x"],"b":1.5}`},
		// Members sort by UTF-16 code units: U+1F600 (a surrogate pair,
		// 0xD83D…) before U+E000, unlike in UTF-8 byte order.
		{map[string]any{"\ue000": 1, "\U0001F600": 2, "Z": 3, "a": 4}, "{\"Z\":3,\"a\":4,\"\U0001F600\":2,\"\ue000\":1}"},
		{int32(7), `7`}, // not produced by the loader; taken as JSON would
	} {
		if got := string(appendJSON(nil, tc.in)); got != tc.want {
			t.Errorf("%#v: got %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestHashYAMLNumbers(t *testing.T) {
	one := hashOf(t, "version: 1\ntable: t\nfields:\n  - constant: c\n    value: 1000\n")
	for _, v := range []string{"1e3", "1000.0", "0x3e8", "0o1750"} {
		if got := hashOf(t, "version: 1\ntable: t\nfields:\n  - constant: c\n    value: "+v+"\n"); got != one {
			t.Errorf("value %s: hash %s, want %s as for 1000", v, got, one)
		}
	}
}
