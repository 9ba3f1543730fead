package sqlbuild_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

const kindsDDL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE kinds (
	id int PRIMARY KEY,
	name text, code varchar(20), email text, letter char(3), feeling mood, uid uuid,
	active boolean, small int2, num int4, big int8, ratio real, score float8,
	price numeric(10,2), balance money, amount_text text,
	born date, seen timestamp, seen_tz timestamptz, at_time time, blob bytea,
	doc jsonb, raw_doc json, tags int[],
	lat float8, lon numeric, point_json jsonb, point_arr jsonb, point_text text,
	translations jsonb
);
INSERT INTO kinds VALUES (
	1, 'Ada', 'C-01', '  ADA@X.IO ', 'ab', 'happy', '11111111-2222-3333-4444-555555555555',
	true, 7, 42, 9007199254740993, 15.87, 0.1,
	19.99, 42.5, '12',
	'2024-01-02', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.1+02', '03:04:05', '\x0102ff',
	'{"a": 1, "b": [true, null]}', '{"z": 1, "a": 2}', '{1,2}',
	45.5, 9.25, '{"lat": 1.5, "lon": 2.5}', '[2.5, 1.5]', '45.1,9.2',
	'{"en": "Hi", "it": "Ciao"}'
);
INSERT INTO kinds (id, lat) VALUES (2, 45.5);
`

// TestFieldKinds builds one field of each kind from a full row (1) and a row
// of NULLs (2).
func TestFieldKinds(t *testing.T) {
	pool := database(t, kindsDDL)
	tests := []struct {
		name   string
		fields string
		full   string // document of row 1
		empty  string // document of row 2
	}{
		{"text", "- text: name", `{"name":"Ada"}`, `{"name":null}`},
		{"identifier column", "- identifier: sku\n\tcolumn: code", `{"sku":"C-01"}`, `{"sku":null}`},
		{"keyword transforms", "- keyword: email\n\ttransforms: [trim, lowercase]", `{"email":"ada@x.io"}`, `{"email":null}`},
		{"keyword default", "- keyword: email\n\tdefault: none", `{"email":"  ADA@X.IO "}`, `{"email":"none"}`},
		{"keyword char padded", "- keyword: letter", `{"letter":"ab "}`, `{"letter":null}`},
		{"keyword of integer", "- keyword: num", `{"num":"42"}`, `{"num":null}`},
		{"enum of pg enum", "- enum: feeling\n\tvariants: [sad, ok, happy]", `{"feeling":"happy"}`, `{"feeling":null}`},
		{"enum default", "- enum: feeling\n\tdefault: ok", `{"feeling":"happy"}`, `{"feeling":"ok"}`},
		{"enum lowercase", "- enum: feeling\n\ttransforms: [lowercase]", `{"feeling":"happy"}`, `{"feeling":null}`},
		{"uuid", "- uuid: uid", `{"uid":"11111111-2222-3333-4444-555555555555"}`, `{"uid":null}`},
		{"boolean", "- boolean: active", `{"active":true}`, `{"active":null}`},
		{"boolean default", "- boolean: active\n\tdefault: false", `{"active":true}`, `{"active":false}`},
		{"short", "- short: small", `{"small":7}`, `{"small":null}`},
		{"integer", "- integer: num", `{"num":42}`, `{"num":null}`},
		{"integer default", "- integer: num\n\tdefault: -1", `{"num":42}`, `{"num":-1}`},
		{"long", "- long: big", `{"big":9007199254740993}`, `{"big":null}`},
		{"long of text", "- long: amount\n\tcolumn: amount_text", `{"amount":12}`, `{"amount":null}`},
		{"float", "- float: ratio", `{"ratio":15.87}`, `{"ratio":null}`},
		{"double", "- double: score", `{"score":0.1}`, `{"score":null}`},
		{"double default", "- double: score\n\tdefault: 2.5", `{"score":0.1}`, `{"score":2.5}`},
		{"decimal numeric", "- decimal: price", `{"price":19.99}`, `{"price":null}`},
		{"decimal money", "- decimal: balance", `{"balance":42.50}`, `{"balance":null}`},
		{"date", "- date: born", `{"born":"2024-01-02"}`, `{"born":null}`},
		{"date default", "- date: born\n\tdefault: 2000-01-01", `{"born":"2024-01-02"}`, `{"born":"2000-01-01"}`},
		{"timestamp", "- timestamp: seen", `{"seen":"2024-01-02T03:04:05.123456"}`, `{"seen":null}`},
		{"timestamp with time zone", "- timestamp: seen_tz", `{"seen_tz":"2024-01-02T01:04:05.1Z"}`, `{"seen_tz":null}`},
		{"timestamp of time", "- timestamp: at_time", `{"at_time":"1970-01-01T03:04:05"}`, `{"at_time":null}`},
		{"timestamp of date", "- timestamp: born", `{"born":"2024-01-02"}`, `{"born":null}`},
		{"binary", "- binary: blob", `{"blob":"AQL/"}`, `{"blob":null}`},
		{"json jsonb", "- json: doc", `{"doc":{"a":1,"b":[true,null]}}`, `{"doc":null}`},
		{"json json", "- json: raw_doc", `{"raw_doc":{"z":1,"a":2}}`, `{"raw_doc":null}`},
		{"custom numeric", "- custom: price\n\tpostgres: [numeric]\n\topensearch: scaled_float\n\toptions: {scaling_factor: 100}", `{"price":19.99}`, `{"price":null}`},
		{"custom array", "- custom: tags\n\tpostgres: [\"int[]\"]\n\topensearch: integer", `{"tags":[1,2]}`, `{"tags":null}`},
		{"constant number", "- constant: version\n\tvalue: 3", `{"version":3}`, `{"version":3}`},
		{"constant string", "- constant: source\n\tvalue: pg", `{"source":"pg"}`, `{"source":"pg"}`},
		{"constant bool", "- constant: live\n\tvalue: true", `{"live":true}`, `{"live":true}`},
		{"constant null", "- constant: nothing", `{"nothing":null}`, `{"nothing":null}`},
		{"object", "- object: who\n\tfields:\n\t\t- text: name\n\t\t- integer: num", `{"who":{"name":"Ada","num":42}}`, `{"who":{"name":null,"num":null}}`},
		{"map", "- map: translations\n\tvalues: text", `{"translations":{"en":"Hi","it":"Ciao"}}`, `{"translations":null}`},
		{"geo lat lon", "- geo: where\n\tlat: lat\n\tlon: lon", `{"where":{"lat":45.5,"lon":9.25}}`, `{"where":null}`},
		{"geo json object", "- geo: point_json", `{"point_json":{"lat":1.5,"lon":2.5}}`, `{"point_json":null}`},
		{"geo json array", "- geo: point_arr", `{"point_arr":[2.5,1.5]}`, `{"point_arr":null}`},
		{"geo text", "- geo: point_text", `{"point_text":"45.1,9.2"}`, `{"point_text":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := index(t, pool, "version: 1\ntable: kinds\nprimary_key: id\nfields:\n"+indent(tt.fields))
			got := build(t, pool, ix, "1", "2")
			assertDoc(t, got, "1", tt.full)
			assertDoc(t, got, "2", tt.empty)
		})
	}
}

// TestWideObject checks objects of more fields than one function call takes.
func TestWideObject(t *testing.T) {
	pool := database(t, kindsDDL)
	fields, want := "", "{"
	for i := range 120 {
		n := strconv.Itoa(i)
		fields += "\t- constant: c" + n + "\n\t\tvalue: " + n + "\n"
		want += `"c` + n + `":` + n + ","
	}
	ix := index(t, pool, "version: 1\ntable: kinds\nprimary_key: id\nfields:\n"+fields+"\t- text: name\n")
	assertDoc(t, build(t, pool, ix, "1"), "1", want+`"name":"Ada"}`)
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		def  schema.Index
		want string
	}{
		{"no primary key", schema.Index{Table: "t"}, "primary_key"},
		{"no table", schema.Index{PrimaryKey: "id"}, "root table"},
		{"unknown kind", schema.Index{Table: "t", PrimaryKey: "id", Fields: []schema.Field{{Name: "x", Kind: "vector"}}}, `field x: unknown field type "vector"`},
		{"join without primary key", schema.Index{Table: "t", PrimaryKey: "id", Fields: []schema.Field{
			{Name: "o", Kind: schema.HasMany, Table: "o", ForeignKey: "t_id"}}}, "field o: a join needs primary_key"},
		{"aggregate with both keys", schema.Index{Table: "t", PrimaryKey: "id", Fields: []schema.Field{
			{Name: "n", Kind: schema.Count, Table: "o", ForeignKey: "t_id", Through: &schema.Through{Table: "j", LeftKey: "l", RightKey: "r"}}}}, "exactly one of foreign_key and through"},
		{"soft delete of an unknown field", schema.Index{Table: "t", PrimaryKey: "id", SoftDelete: &schema.SoftDelete{Field: "gone"}}, `soft_delete field "gone"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sqlbuild.Compile("ix", &tt.def)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), `index "ix": `) {
				t.Errorf("Compile: %v, want an error naming the index and %q", err, tt.want)
			}
		})
	}
}

func indent(s string) string {
	out := "\t"
	for _, r := range s {
		out += string(r)
		if r == '\n' {
			out += "\t"
		}
	}
	return out
}

func TestPrepareErrors(t *testing.T) {
	pool := database(t, shopDDL)
	tests := []struct {
		name, fields, want string
	}{
		{"missing column", "- integer: nope", `index "test": field nope: table "users" has no column "nope"`},
		{"missing nested column", "- has_many: orders\n\ttable: orders\n\tforeign_key: user_id\n\tprimary_key: id\n\tfields:\n\t\t- decimal: totl",
			`index "test": field orders.totl: table "orders" has no column "totl"`},
		{"missing table", "- count: n\n\ttable: nothing\n\tforeign_key: user_id", `index "test": table public.nothing does not exist`},
		{"ids of a table without primary key", "- ids: tags\n\ttable: user_tags\n\tforeign_key: user_id\n\telement_type: long",
			`index "test": field tags: table "user_tags" has a composite primary key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			def, err := schema.Parse("test.schema.yml", []byte(strings.ReplaceAll(
				"version: 1\ntable: users\nprimary_key: id\nfields:\n"+indent(tt.fields), "\t", "  ")))
			if err != nil {
				t.Fatal(err)
			}
			ix, err := sqlbuild.Compile("test", def)
			if err != nil {
				t.Fatal(err)
			}
			if err := ix.Prepare(context.Background(), pool); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Prepare: %v, want %s", err, tt.want)
			}
		})
	}
}
