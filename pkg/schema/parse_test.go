package schema

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadEveryType(t *testing.T) {
	got, err := Load("testdata/every_type.schema.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Index{
		File:       "testdata/every_type.schema.yml",
		Version:    1,
		Table:      "products",
		Schema:     "catalog",
		PrimaryKey: "id",
		SoftDelete: &SoftDelete{
			Field: "archived",
			When:  []Filter{{Column: "archived_reason", Op: OpIsNotNull}},
		},
		Filters: []Filter{
			{Raw: "price > 0"},
			{Column: "status", Op: OpIn, Values: []any{"active", "draft"}},
		},
		Fields: []Field{
			{Name: "id", Kind: Long, Line: 19, Column: "id", Required: true},
			{Name: "title", Kind: Text, Line: 21, Column: "product_title", Required: true,
				Transforms: []Transform{Trim}, Options: map[string]any{"analyzer": "english"}},
			{Name: "sku", Kind: Identifier, Line: 26, Column: "sku"},
			{Name: "email", Kind: Keyword, Line: 27, Column: "email",
				Transforms: []Transform{Trim, Lowercase}, Default: "unknown@example.com"},
			{Name: "priority", Kind: Enum, Line: 30, Column: "priority", Variants: []string{"low", "medium", "high"}},
			{Name: "externalId", Kind: UUID, Line: 32, Column: "external_id"},
			{Name: "archived", Kind: Boolean, Line: 34, Column: "archived", Default: false},
			{Name: "rank", Kind: Short, Line: 36, Column: "rank"},
			{Name: "stock", Kind: Integer, Line: 37, Column: "stock", Default: int64(0)},
			{Name: "weight", Kind: Float, Line: 39, Column: "weight"},
			{Name: "rating", Kind: Double, Line: 40, Column: "rating", Default: 2.5},
			{Name: "price", Kind: Decimal, Line: 42, Column: "price"},
			{Name: "releasedOn", Kind: Date, Line: 43, Column: "released_on", Default: "2020-01-01"},
			{Name: "updatedAt", Kind: Timestamp, Line: 46, Column: "updated_at"},
			{Name: "thumbnail", Kind: Binary, Line: 48, Column: "thumbnail"},
			{Name: "attributes", Kind: JSON, Line: 49, Column: "attributes"},
			{Name: "exactPrice", Kind: Custom, Line: 50, Column: "price", PostgresTypes: []string{"numeric"},
				OpenSearchType: "scaled_float", Options: map[string]any{"scaling_factor": int64(100)}},
			{Name: "warehouse", Kind: Geo, Line: 55, Lat: "warehouse_lat", Lon: "warehouse_lon"},
			{Name: "origin", Kind: Geo, Line: 59, Column: "origin"},
			{Name: "names", Kind: Map, Line: 60, Column: "translated_names", Values: Keyword},
			{Name: "dimensions", Kind: Object, Line: 63, Options: map[string]any{"dynamic": false}, Fields: []Field{
				{Name: "width", Kind: Double, Line: 66, Column: "width"},
				{Name: "height", Kind: Double, Line: 67, Column: "height"},
			}},
			{Name: "brand", Kind: BelongsTo, Line: 68, Table: "brands", PrimaryKey: "id", Column: "brand_id", Required: true,
				Filters: []Filter{{Column: "visible", Op: OpEq, Values: []any{true}}},
				Fields:  []Field{{Name: "name", Kind: Keyword, Line: 76, Column: "name"}}},
			{Name: "manual", Kind: HasOne, Line: 77, Table: "manuals", ForeignKey: "product_id", PrimaryKey: "id",
				OrderBy: []OrderBy{{Column: "version", Direction: Desc}},
				Fields:  []Field{{Name: "body", Kind: Text, Line: 83, Column: "body"}}},
			{Name: "variants", Kind: HasMany, Line: 84, Table: "variants", ForeignKey: "product_id", PrimaryKey: "id",
				OrderBy: []OrderBy{{Column: "position", Direction: Asc}}, Limit: 50,
				Fields: []Field{
					{Name: "color", Kind: Keyword, Line: 91, Column: "color"},
					{Name: "stores", Kind: ManyToMany, Line: 92, Table: "stores", PrimaryKey: "id",
						Through: &Through{Table: "store_variants", LeftKey: "variant_id", RightKey: "store_id"},
						Filters: []Filter{{Column: "opened_on", Op: OpBetween, Values: []any{"2020-01-01", "2030-12-31"}}},
						Fields:  []Field{{Name: "city", Kind: Keyword, Line: 99, Column: "city"}}},
				}},
			{Name: "reviewCount", Kind: Count, Line: 100, Table: "reviews", ForeignKey: "product_id",
				Filters: []Filter{{Column: "rating", Op: OpGte, Values: []any{int64(3)}}}},
			{Name: "unitsSold", Kind: Sum, Line: 105, Table: "sales", ForeignKey: "product_id", Column: "units", ValueType: Long},
			{Name: "avgRating", Kind: Avg, Line: 110, Table: "reviews", ForeignKey: "product_id", Column: "rating"},
			{Name: "firstSale", Kind: Min, Line: 114, Table: "sales", ForeignKey: "product_id", Column: "sold_at", ValueType: Timestamp},
			{Name: "lastSale", Kind: Max, Line: 119, Table: "sales", ForeignKey: "product_id", Column: "sold_at", ValueType: Timestamp},
			{Name: "tagIds", Kind: IDs, Line: 124, Table: "tags",
				Through: &Through{Table: "product_tags", LeftKey: "product_id", RightKey: "tag_id"}, ElementType: Long},
			{Name: "source", Kind: Constant, Line: 128, Value: "catalog"},
			{Name: "nothing", Kind: Constant, Line: 130},
		},
	}
	if len(got.Fields) != len(want.Fields) {
		t.Fatalf("got %d fields, want %d", len(got.Fields), len(want.Fields))
	}
	for i := range want.Fields {
		if !reflect.DeepEqual(got.Fields[i], want.Fields[i]) {
			t.Errorf("fields[%d]:\n got %+v\nwant %+v", i, got.Fields[i], want.Fields[i])
		}
	}
	got.Fields, want.Fields = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("index:\n got %+v\nwant %+v", got, want)
	}

	// The file uses every type key, so no kind is left untested.
	used := map[Kind]bool{}
	var walk func([]Field)
	walk = func(fs []Field) {
		for _, f := range fs {
			used[f.Kind] = true
			walk(f.Fields)
		}
	}
	walk(want.Fields)
	ix, _ := Load("testdata/every_type.schema.yml")
	walk(ix.Fields)
	for _, k := range allKinds {
		if !used[k] {
			t.Errorf("testdata/every_type.schema.yml does not use %s", k)
		}
	}
}

func TestLoadTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*.schema.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		if _, err := Load(file); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	ix := mustParse(t, `version: 1
table: " Users "
primary_key: ID
fields:
  - keyword: eMail
  - belongs_to: Owner
    table: users
    primary_key: id
    fields: [{keyword: name}]
  - has_many: orders
    table: orders
    foreign_key: user_id
    primary_key: id
    order_by: [{column: placed_at}]
    fields: []
`)
	if ix.Schema != "public" || ix.Table != "users" || ix.PrimaryKey != "id" {
		t.Errorf("schema %q table %q primary_key %q, want public, users, id", ix.Schema, ix.Table, ix.PrimaryKey)
	}
	if f := ix.Fields[0]; f.Name != "eMail" || f.Column != "email" {
		t.Errorf("keyword: name %q column %q, want eMail, email", f.Name, f.Column)
	}
	if f := ix.Fields[1]; f.Column != "owner" {
		t.Errorf("belongs_to column %q, want owner", f.Column)
	}
	if f := ix.Fields[2]; f.OrderBy[0].Direction != Asc || f.Fields == nil {
		t.Errorf("has_many: direction %q fields %v, want asc and an empty list", f.OrderBy[0].Direction, f.Fields)
	}
}

// TestParseNullIsAbsent: an optional key left empty counts as absent, as
// with the original implementation.
func TestParseNullIsAbsent(t *testing.T) {
	ix := mustParse(t, `version: 1
table: users
schema:
doc_id: ~
fields:
  - keyword: email
    column:
    default: null
`)
	if ix.Schema != "public" || ix.Fields[0].Column != "email" || ix.Fields[0].Default != nil {
		t.Errorf("got schema %q column %q default %v", ix.Schema, ix.Fields[0].Column, ix.Fields[0].Default)
	}
}

func TestParseFilters(t *testing.T) {
	ix := mustParse(t, `version: 1
table: t
filters:
  - { raw: "a > 1" }
  - { column: a, op: is_null }
  - { column: a, op: is_not_null }
  - { column: a, op: eq, value: x }
  - { column: a, op: neq, value: 1 }
  - { column: a, op: lt, value: 1.5 }
  - { column: a, op: lte, value: true }
  - { column: a, op: gt, value: 2020-01-01 }
  - { column: a, op: gte, value: "2" }
  - { column: a, op: like, value: "x%" }
  - { column: a, op: ilike, value: "x%" }
  - { column: a, op: in, value: [1, 2] }
  - { column: a, op: not_in, value: [a] }
  - { column: a, op: between, value: [1, 9] }
fields: []
`)
	want := []Filter{
		{Raw: "a > 1"},
		{Column: "a", Op: OpIsNull},
		{Column: "a", Op: OpIsNotNull},
		{Column: "a", Op: OpEq, Values: []any{"x"}},
		{Column: "a", Op: OpNeq, Values: []any{int64(1)}},
		{Column: "a", Op: OpLt, Values: []any{1.5}},
		{Column: "a", Op: OpLte, Values: []any{true}},
		{Column: "a", Op: OpGt, Values: []any{"2020-01-01"}},
		{Column: "a", Op: OpGte, Values: []any{"2"}},
		{Column: "a", Op: OpLike, Values: []any{"x%"}},
		{Column: "a", Op: OpIlike, Values: []any{"x%"}},
		{Column: "a", Op: OpIn, Values: []any{int64(1), int64(2)}},
		{Column: "a", Op: OpNotIn, Values: []any{"a"}},
		{Column: "a", Op: OpBetween, Values: []any{int64(1), int64(9)}},
	}
	if !reflect.DeepEqual(ix.Filters, want) {
		t.Errorf("got  %#v\nwant %#v", ix.Filters, want)
	}
}

func TestParseAliases(t *testing.T) {
	ix := mustParse(t, `version: 1
table: t
primary_key: id
fields:
  - count: a
    table: a
    foreign_key: t_id
    filters: [&active { column: active, op: eq, value: true }]
  - count: b
    table: b
    foreign_key: t_id
    filters: [*active]
`)
	if !reflect.DeepEqual(ix.Fields[0].Filters, ix.Fields[1].Filters) {
		t.Errorf("alias: got %v, want %v", ix.Fields[1].Filters, ix.Fields[0].Filters)
	}
}

func mustParse(t *testing.T, src string) *Index {
	t.Helper()
	ix, err := Parse("t.schema.yml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.schema.yml")
	if err := os.WriteFile(big, []byte("version: 1\n"+strings.Repeat("# padding\n", 1<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{filepath.Join(dir, "missing.schema.yml"), dir + "/missing.schema.yml: cannot read the schema: no such file or directory"},
		{dir, dir + ": cannot read the schema: is a directory"},
		{big, big + ": file is 10.0 MiB; a schema file may be at most 1 MiB (is this the right file?)"},
	} {
		_, err := Load(tc.path)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Load(%s):\n got %v\nwant %s", tc.path, err, tc.want)
		}
	}
	_, err := Load(filepath.Join(dir, "missing.schema.yml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v does not wrap os.ErrNotExist", err)
	}
}
