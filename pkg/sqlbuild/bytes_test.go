package sqlbuild_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestDocumentBytes builds documents of every field kind and relation kind
// and compares them byte for byte with testdata/documents.golden: a
// document stored by a sink is compared by content hash, so a change in the
// bytes of the same content (key order, number or date notation, escaping)
// would rewrite every document of every index. The golden file was written
// by the builder of json_build_object objects (go test -update).
func TestDocumentBytes(t *testing.T) {
	long := strings.Repeat("n", 63) // the longest name a schema takes
	wide := ""
	for i := range 60 {
		wide += fmt.Sprintf("\t\t- constant: w%d\n\t\t\tvalue: %d\n", i, i)
	}
	// The shop's relations under a root filter and a soft delete, and again
	// where raw filter SQL keeps the query from taking joins.
	shopFields := shopSchema[strings.Index(shopSchema, "fields:"):]
	rawJoin := strings.Replace(shopFields, "filters: [{column: status, op: eq, value: paid}]\n\t\torder_by", "filters: [{raw: \"status = 'paid'\"}]\n\t\torder_by", 1)
	if rawJoin == shopFields {
		t.Fatal("the shop schema has no filtered join to make raw")
	}
	cases := []struct {
		name, ddl, schema string
		keys              []string
	}{
		{"kinds", kindsDDL + `INSERT INTO kinds (id, name, code, doc, seen_tz, seen, born, price, score) VALUES
			(3, E'quote " back \\ nl \n tab \t ctl \x01 é 😀 </script>', 'key"s', '{"k": "v\"x", "e": "é"}',
			'0044-03-15 23:59:59.000001 BC', '12345-06-07 08:09:10', '0001-01-01', 0.00, -1.5e-7);`, `version: 1
table: kinds
primary_key: id
fields:
	- integer: id
	- text: name
	- identifier: sku
		column: code
	- keyword: email
		transforms: [trim, lowercase]
	- keyword: email_or_none
		column: email
		default: none
	- keyword: letter
	- keyword: num_text
		column: num
	- enum: feeling
		variants: [sad, ok, happy]
	- uuid: uid
	- boolean: active
		default: false
	- short: small
	- integer: num
		default: -1
	- long: big
	- long: amount
		column: amount_text
	- float: ratio
	- double: score
	- decimal: price
	- decimal: balance
	- date: born
	- timestamp: seen
	- timestamp: seen_tz
	- timestamp: at_time
	- timestamp: born_at
		column: born
	- binary: blob
	- json: doc
	- json: raw_doc
	- custom: tags
		postgres: ["int[]"]
		opensearch: integer
	- constant: version
		value: 3
	- constant: source
		value: pg
	- constant: nothing
	- object: who
		fields:
			- text: name
			- object: inner
				fields:
					- integer: num
					- timestamp: seen_tz
	- map: translations
		values: text
	- geo: where
		lat: lat
		lon: lon
	- geo: point_json
	- geo: point_arr
	- geo: point_text
	- text: ` + long + `
		column: name
	- object: wide
		fields:
` + wide, []string{"1", "2", "3", "4"}},
		{"shop", shopDDL, shopSchema, []string{"1", "2", "3", "4"}},
		{"shop, soft delete and root filter", shopDDL + `UPDATE users SET deleted = true WHERE id = 2;`,
			"version: 1\ntable: users\nprimary_key: id\nsoft_delete: {column: deleted}\nfilters: [{column: email, op: like, value: '%@x'}]\n" + shopFields,
			[]string{"1", "2", "3", "4"}},
		{"shop, raw root filter", shopDDL,
			"version: 1\ntable: users\nprimary_key: id\nfilters: [{raw: \"email IS NOT NULL\"}]\n" + shopFields,
			[]string{"1", "2", "3"}},
		{"shop, raw filter on a join", shopDDL, "version: 1\ntable: users\nprimary_key: id\n" + rawJoin, []string{"1", "2", "3"}},
	}
	var got strings.Builder
	for _, c := range cases {
		pool := database(t, c.ddl)
		docs, err := index(t, pool, c.schema).Build(context.Background(), pool, c.keys)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, d := range docs {
			if d.Err != nil {
				t.Fatalf("%s: %v", c.name, d.Err)
			}
			fmt.Fprintf(&got, "%s\t%s\t%s\n", c.name, d.ID, d.Body)
		}
		pool.Close()
	}
	const golden = "testdata/documents.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	gotLines, wantLines := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gotLines), len(wantLines)) {
		g, w := line(gotLines, i), line(wantLines, i)
		if g != w {
			t.Errorf("line %d:\n got %s\nwant %s", i+1, g, w)
		}
	}
}

func line(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(none)"
}
