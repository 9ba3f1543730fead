package schema

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// header takes lines 1-4, so the first field item is on line 5.
const header = "version: 1\ntable: t\nprimary_key: id\nfields:\n"

// TestParseRules has one failing schema per validation rule. want is the
// whole message (file:line: path: cause) of one of the reported errors.
func TestParseRules(t *testing.T) {
	long := strings.Repeat("a", 64)
	for _, tc := range []struct {
		name, src, want string
	}{
		// Top level.
		{"version missing", "table: t\nfields: []\n",
			"t.schema.yml:1: missing version: add `version: 1`"},
		{"version not 1", "version: 2\ntable: t\nfields: []\n",
			"t.schema.yml:1: version: unsupported version 2: only 1 is accepted"},
		{"version a string", "version: \"1\"\ntable: t\nfields: []\n",
			`t.schema.yml:1: version: must be an integer, not the string "1"`},
		{"table missing", "version: 1\nfields: []\n",
			"t.schema.yml:1: missing table: the root table, e.g. `table: users`"},
		{"fields missing", "version: 1\ntable: t\n",
			"t.schema.yml:1: missing fields: the list of document fields"},
		{"fields not a list", "version: 1\ntable: t\nfields: {}\n",
			"t.schema.yml:3: fields: must be a list of fields, not a mapping"},
		{"unknown key with suggestion", "version: 1\ntable: t\ntabel: u\nfields: []\n",
			`t.schema.yml:3: unknown key "tabel"; did you mean "table"?`},
		{"unknown key", "version: 1\ntable: t\nindex: u\nfields: []\n",
			`t.schema.yml:3: unknown key "index" (a schema takes version, table, schema, primary_key, doc_id, soft_delete, filters, fields)`},
		{"duplicate key", "version: 1\ntable: t\ntable: u\nfields: []\n",
			`t.schema.yml:3: duplicate key "table" (first at line 2)`},
		{"doc_id", "version: 1\ntable: t\ndoc_id: uid\nfields: []\n",
			"t.schema.yml:3: doc_id: not supported: the document _id is always the value of primary_key; remove doc_id"},
		{"table not an identifier", "version: 1\ntable: 1users\nfields: []\n",
			`t.schema.yml:2: table: "1users" is not a valid Postgres identifier: use letters, digits and _, not starting with a digit, at most 63 characters`},
		{"table with a dash", "version: 1\ntable: user-data\nfields: []\n",
			`t.schema.yml:2: table: "user-data" is not a valid Postgres identifier`},
		{"table too long", "version: 1\ntable: " + long + "\nfields: []\n",
			`t.schema.yml:2: table: "` + long + `" is not a valid Postgres identifier`},
		{"schema not an identifier", "version: 1\ntable: t\nschema: my schema\nfields: []\n",
			`t.schema.yml:3: schema: "my schema" is not a valid Postgres identifier`},
		{"table a list", "version: 1\ntable: [a]\nfields: []\n",
			"t.schema.yml:2: table: must be a string, not a list"},

		// Field items.
		{"item not a mapping", header + "  - email\n",
			"t.schema.yml:5: fields[0]: must be a mapping like `keyword: email`, not the string \"email\""},
		{"no type key", header + "  - column: email\n",
			"t.schema.yml:5: fields[0]: has no type key: a field starts with its type, like `keyword: email` (types: text, identifier, keyword,"},
		{"mistyped type key", header + "  - keywrd: email\n",
			`t.schema.yml:5: fields[0]: has no type key: a field starts with its type, like ` + "`keyword: email`" + `; "keywrd" is not a type, did you mean "keyword"?`},
		{"two type keys", header + "  - keyword: email\n    text: body\n",
			"t.schema.yml:6: fields[0]: has two type keys, keyword and text: a field takes exactly one"},
		{"field name with a space", header + "  - keyword: e mail\n",
			`t.schema.yml:5: fields[0].keyword: "e mail" is not a valid field name: use letters, digits and _, not starting with a digit, at most 63 characters`},
		{"field name starting with a digit", header + "  - keyword: 2fa\n",
			`t.schema.yml:5: fields[0].keyword: "2fa" is not a valid field name`},
		{"field name too long", header + "  - keyword: " + long + "\n",
			`t.schema.yml:5: fields[0].keyword: "` + long + `" is not a valid field name`},
		{"field name missing", header + "  - keyword:\n",
			"t.schema.yml:5: fields[0].keyword: must be a string, not null"},
		{"duplicate field name", header + "  - keyword: email\n  - text: email\n",
			`t.schema.yml:6: fields[1]: duplicate field name "email" (also at line 5)`},
		{"field names are case sensitive", header + "  - keyword: Email\n  - keyword: email\n  - keyword: email\n",
			`t.schema.yml:7: fields[2]: duplicate field name "email" (also at line 6)`},
		{"unknown sibling", header + "  - keyword: email\n    analyzer: english\n",
			`t.schema.yml:6: fields[0]: unknown key "analyzer" (keyword takes required, column, options, transforms, default)`},
		{"mistyped sibling", header + "  - keyword: email\n    colum: mail\n",
			`t.schema.yml:6: fields[0]: unknown key "colum"; did you mean "column"?`},
		{"required not a boolean", header + "  - keyword: email\n    required: yes\n",
			`t.schema.yml:6: fields[0].email.required: must be true or false, not the string "yes"`},
		{"column not an identifier", header + "  - keyword: email\n    column: E-Mail\n",
			`t.schema.yml:6: fields[0].email.column: "E-Mail" is not a valid Postgres identifier`},
		{"options not a mapping", header + "  - keyword: email\n    options: [a]\n",
			"t.schema.yml:6: fields[0].email.options: must be a mapping of OpenSearch mapping parameters, not a list"},

		// Scalars.
		{"unknown transform", header + "  - keyword: email\n    transforms: [upper]\n",
			`t.schema.yml:6: fields[0].email.transforms[0]: unknown transform "upper" (transforms are lowercase and trim)`},
		{"transforms not a list", header + "  - keyword: email\n    transforms: trim\n",
			`t.schema.yml:6: fields[0].email.transforms: must be a list like [trim, lowercase], not the string "trim"`},
		{"transforms on geo", header + "  - geo: loc\n    transforms: [trim]\n",
			"t.schema.yml:6: fields[0]: geo does not take transforms (only scalar types take it)"},
		{"default a list", header + "  - keyword: email\n    default: [a]\n",
			"t.schema.yml:6: fields[0].email.default: must be a scalar (string, number, bool or date), not a list"},
		{"default a mapping", header + "  - keyword: email\n    default: {a: 1}\n",
			"t.schema.yml:6: fields[0].email.default: must be a scalar (string, number, bool or date), not a mapping"},
		{"default on a join", header + "  - has_one: p\n    table: p\n    foreign_key: t_id\n    primary_key: id\n    default: x\n    fields: []\n",
			"t.schema.yml:9: fields[0]: has_one does not take default (only scalar types take it)"},
		{"variants on keyword", header + "  - keyword: level\n    variants: [low, high]\n",
			"t.schema.yml:6: fields[0]: keyword does not take variants (only enum takes it)"},
		{"variants empty", header + "  - enum: level\n    variants: []\n",
			"t.schema.yml:6: fields[0].level.variants: must list at least one value"},
		{"variants repeated", header + "  - enum: level\n    variants: [low, low]\n",
			`t.schema.yml:6: fields[0].level.variants[1]: duplicate variant "low"`},
		{"custom without postgres", header + "  - custom: price\n    opensearch: scaled_float\n",
			"t.schema.yml:5: fields[0]: custom needs postgres: the Postgres types it accepts, e.g. [numeric]"},
		{"custom without opensearch", header + "  - custom: price\n    postgres: [numeric]\n",
			"t.schema.yml:5: fields[0]: custom needs opensearch: the OpenSearch type to map it as, e.g. scaled_float"},
		{"custom with no postgres types", header + "  - custom: price\n    postgres: []\n    opensearch: double\n",
			"t.schema.yml:6: fields[0].price.postgres: must list at least one Postgres type"},
		{"postgres on text", header + "  - text: body\n    postgres: [text]\n",
			"t.schema.yml:6: fields[0]: text does not take postgres (only custom takes it)"},

		// Geo and map.
		{"geo lat and column", header + "  - geo: loc\n    lat: a\n    lon: b\n    column: c\n",
			"t.schema.yml:5: fields[0]: geo takes lat and lon, or column, not both"},
		{"geo lat alone", header + "  - geo: loc\n    lat: a\n",
			"t.schema.yml:5: fields[0]: geo needs both lat and lon (or a single column holding the point)"},
		{"lat on keyword", header + "  - keyword: loc\n    lat: a\n",
			"t.schema.yml:6: fields[0]: keyword does not take lat (only geo takes it)"},
		{"map without values", header + "  - map: names\n",
			"t.schema.yml:5: fields[0]: map needs values: the type of every value, e.g. keyword"},
		{"map of booleans", header + "  - map: names\n    values: boolean\n",
			"t.schema.yml:6: fields[0].names.values: map values cannot be boolean: use text, identifier, keyword, enum, uuid, a numeric type, date or timestamp"},
		{"map of binary", header + "  - map: names\n    values: binary\n",
			"t.schema.yml:6: fields[0].names.values: map values cannot be binary"},
		{"map of json", header + "  - map: names\n    values: json\n",
			"t.schema.yml:6: fields[0].names.values: map values cannot be json"},
		{"map of geo", header + "  - map: names\n    values: geo\n",
			"t.schema.yml:6: fields[0].names.values: map values cannot be geo"},
		{"map of custom", header + "  - map: names\n    values: custom\n",
			"t.schema.yml:6: fields[0].names.values: map values cannot be custom"},
		{"map of nonsense", header + "  - map: names\n    values: strings\n",
			`t.schema.yml:6: fields[0].names.values: "strings" is not a type`},
		{"values on keyword", header + "  - keyword: names\n    values: keyword\n",
			"t.schema.yml:6: fields[0]: keyword does not take values (only map takes it)"},

		// Object and constant.
		{"object without fields", header + "  - object: account\n",
			"t.schema.yml:5: fields[0]: object needs fields: the list of its fields"},
		{"required on object", header + "  - object: account\n    required: true\n    fields: []\n",
			"t.schema.yml:6: fields[0]: object does not take required: an object is always present"},
		{"fields on keyword", header + "  - keyword: account\n    fields: []\n",
			"t.schema.yml:6: fields[0]: keyword does not take fields (only object and joins take it)"},
		{"value on keyword", header + "  - keyword: source\n    value: x\n",
			"t.schema.yml:6: fields[0]: keyword does not take value (only constant takes it)"},
		{"constant not finite", header + "  - constant: c\n    value: {a: [1, .nan]}\n",
			"t.schema.yml:6: fields[0].c.value.a[1]: .nan is not a finite number"},
		{"required on constant", header + "  - constant: c\n    value: 1\n    required: true\n",
			"t.schema.yml:7: fields[0]: constant does not take required (only scalars, geo, map, belongs_to and has_one take it)"},

		// Joins.
		{"has_many with column", header + "  - has_many: orders\n    table: orders\n    column: user_id\n    primary_key: id\n    fields: []\n",
			"t.schema.yml:7: fields[0]: has_many takes foreign_key, not column"},
		{"has_one with through", header + "  - has_one: p\n    table: p\n    through: {table: j, left_key: a, right_key: b}\n    primary_key: id\n    fields: []\n",
			"t.schema.yml:7: fields[0]: has_one takes foreign_key, not through"},
		{"belongs_to with foreign_key", header + "  - belongs_to: owner\n    table: users\n    foreign_key: owner_id\n    primary_key: id\n    fields: []\n",
			"t.schema.yml:7: fields[0]: belongs_to takes column, not foreign_key"},
		{"many_to_many with foreign_key", header + "  - many_to_many: tags\n    table: tags\n    foreign_key: t_id\n    primary_key: id\n    fields: []\n",
			"t.schema.yml:7: fields[0]: many_to_many takes through, not foreign_key"},
		{"nested join with the wrong key", header + "  - keyword: a\n  - keyword: b\n  - keyword: c\n  - has_many: orders\n    table: orders\n    foreign_key: user_id\n    primary_key: id\n    fields:\n      - double: total\n      - has_many: lines\n        table: order_lines\n        column: order_id\n        primary_key: id\n        fields: []\n",
			"t.schema.yml:16: fields[3].orders.fields[1]: has_many takes foreign_key, not column"},
		{"has_many without foreign_key", header + "  - has_many: orders\n    table: orders\n    primary_key: id\n    fields: []\n",
			"t.schema.yml:5: fields[0]: has_many needs foreign_key: the related table's column pointing back at this row"},
		{"has_one without foreign_key", header + "  - has_one: p\n    table: p\n    primary_key: id\n    fields: []\n",
			"t.schema.yml:5: fields[0]: has_one needs foreign_key: the related table's column pointing back at this row"},
		{"many_to_many without through", header + "  - many_to_many: tags\n    table: tags\n    primary_key: id\n    fields: []\n",
			"t.schema.yml:5: fields[0]: many_to_many needs through: the junction table, as {table, left_key, right_key}"},
		{"join without table", header + "  - belongs_to: owner\n    primary_key: id\n    fields: []\n",
			"t.schema.yml:5: fields[0]: belongs_to needs table: the related table"},
		{"join without primary_key", header + "  - belongs_to: owner\n    table: users\n    fields: []\n",
			"t.schema.yml:5: fields[0]: belongs_to needs primary_key: the related table's primary key column"},
		{"join without fields", header + "  - belongs_to: owner\n    table: users\n    primary_key: id\n",
			"t.schema.yml:5: fields[0]: belongs_to needs fields: the list of fields read from the related table"},
		{"through without right_key", header + "  - many_to_many: tags\n    table: tags\n    primary_key: id\n    through: {table: j, left_key: a}\n    fields: []\n",
			"t.schema.yml:8: fields[0].tags.through: missing right_key: the junction's column pointing at the related row"},
		{"through with an unknown key", header + "  - many_to_many: tags\n    table: tags\n    primary_key: id\n    through: {table: j, left_key: a, right_key: b, schema: s}\n    fields: []\n",
			`t.schema.yml:8: fields[0].tags.through: unknown key "schema" (through takes table, left_key, right_key)`},
		{"required on has_many", header + "  - has_many: orders\n    table: orders\n    foreign_key: user_id\n    primary_key: id\n    required: true\n    fields: []\n",
			"t.schema.yml:9: fields[0]: has_many does not take required: a to-many join is never null, it is [] when nothing matches"},
		{"required on many_to_many", header + "  - many_to_many: tags\n    table: tags\n    primary_key: id\n    through: {table: j, left_key: a, right_key: b}\n    required: false\n    fields: []\n",
			"t.schema.yml:9: fields[0]: many_to_many does not take required: a to-many join is never null"},
		{"order_by on belongs_to", header + "  - belongs_to: owner\n    table: users\n    primary_key: id\n    order_by: [{column: id}]\n    fields: []\n",
			"t.schema.yml:8: fields[0]: belongs_to does not take order_by: it points at exactly one row"},
		{"limit on has_one", header + "  - has_one: p\n    table: p\n    foreign_key: t_id\n    primary_key: id\n    limit: 1\n    fields: []\n",
			"t.schema.yml:9: fields[0]: has_one does not take limit: a to-one join yields one row (limit is for has_many and many_to_many)"},
		{"limit on belongs_to", header + "  - belongs_to: owner\n    table: users\n    primary_key: id\n    limit: 1\n    fields: []\n",
			"t.schema.yml:8: fields[0]: belongs_to does not take limit"},
		{"limit zero", header + "  - has_many: orders\n    table: orders\n    foreign_key: user_id\n    primary_key: id\n    limit: 0\n    fields: []\n",
			"t.schema.yml:9: fields[0].orders.limit: must be at least 1, not 0"},
		{"limit not an integer", header + "  - has_many: orders\n    table: orders\n    foreign_key: user_id\n    primary_key: id\n    limit: ten\n    fields: []\n",
			`t.schema.yml:9: fields[0].orders.limit: must be an integer, not the string "ten"`},
		{"order_by without column", header + "  - has_many: orders\n    table: orders\n    foreign_key: user_id\n    primary_key: id\n    order_by: [{direction: asc}]\n    fields: []\n",
			"t.schema.yml:9: fields[0].orders.order_by[0]: missing column: the column to order by"},
		{"order_by direction", header + "  - has_many: orders\n    table: orders\n    foreign_key: user_id\n    primary_key: id\n    order_by: [{column: id, direction: up}]\n    fields: []\n",
			`t.schema.yml:9: fields[0].orders.order_by[0].direction: must be asc or desc, not "up"`},
		{"table on keyword", header + "  - keyword: a\n    table: x\n",
			"t.schema.yml:6: fields[0]: keyword does not take table (only joins and aggregates take it)"},

		// Aggregates.
		{"aggregate without table", header + "  - count: n\n    foreign_key: t_id\n",
			"t.schema.yml:5: fields[0]: count needs table: the related table"},
		{"aggregate without key", header + "  - count: n\n    table: orders\n",
			"t.schema.yml:5: fields[0]: count needs foreign_key (the related table's column pointing back at this row) or through (a junction table)"},
		{"aggregate with both keys", header + "  - count: n\n    table: orders\n    foreign_key: t_id\n    through: {table: j, left_key: a, right_key: b}\n",
			"t.schema.yml:8: fields[0]: count takes foreign_key or through, not both"},
		{"sum without column", header + "  - sum: total\n    table: orders\n    foreign_key: t_id\n    value_type: double\n",
			"t.schema.yml:5: fields[0]: sum needs column: the related table's column to aggregate"},
		{"max without value_type", header + "  - max: last\n    table: orders\n    foreign_key: t_id\n    column: placed_at\n",
			"t.schema.yml:5: fields[0]: max needs value_type: the type of the result, e.g. double"},
		{"avg without column", header + "  - avg: mean\n    table: orders\n    foreign_key: t_id\n",
			"t.schema.yml:5: fields[0]: avg needs column: the related table's column to average"},
		{"avg with value_type", header + "  - avg: mean\n    table: orders\n    foreign_key: t_id\n    column: total\n    value_type: double\n",
			"t.schema.yml:9: fields[0]: avg does not take value_type: its result is always a double"},
		{"count with column", header + "  - count: n\n    table: orders\n    foreign_key: t_id\n    column: id\n",
			"t.schema.yml:8: fields[0]: count does not take column: it counts the related rows"},
		{"count with value_type", header + "  - count: n\n    table: orders\n    foreign_key: t_id\n    value_type: long\n",
			"t.schema.yml:8: fields[0]: count does not take value_type: its result is always a long"},
		{"ids without element_type", header + "  - ids: tagIds\n    table: tags\n    foreign_key: t_id\n",
			"t.schema.yml:5: fields[0]: ids needs element_type: long or keyword, the type of the related primary key"},
		{"ids element_type integer", header + "  - ids: tagIds\n    table: tags\n    foreign_key: t_id\n    element_type: integer\n",
			`t.schema.yml:8: fields[0].tagIds.element_type: must be long or keyword, not "integer"`},
		{"ids with column", header + "  - ids: tagIds\n    table: tags\n    foreign_key: t_id\n    element_type: long\n    column: id\n",
			"t.schema.yml:9: fields[0]: ids does not take column: it collects the related table's primary key"},
		{"ids with value_type", header + "  - ids: tagIds\n    table: tags\n    foreign_key: t_id\n    value_type: long\n",
			"t.schema.yml:8: fields[0]: ids takes element_type, not value_type"},
		{"element_type on sum", header + "  - sum: total\n    table: orders\n    foreign_key: t_id\n    column: total\n    value_type: double\n    element_type: long\n",
			"t.schema.yml:10: fields[0]: sum does not take element_type (only ids takes it)"},
		{"value_type custom", header + "  - min: first\n    table: orders\n    foreign_key: t_id\n    column: total\n    value_type: custom\n",
			`t.schema.yml:9: fields[0].first.value_type: "custom" is not a scalar type`},
		{"required on aggregate", header + "  - count: n\n    table: orders\n    foreign_key: t_id\n    required: true\n",
			"t.schema.yml:8: fields[0]: count does not take required: an aggregate's nullability follows from its op"},
		{"primary_key on aggregate", header + "  - count: n\n    table: orders\n    foreign_key: t_id\n    primary_key: id\n",
			"t.schema.yml:8: fields[0]: count does not take primary_key (only joins take it)"},

		// The root primary key.
		{"join without the root primary_key", "version: 1\ntable: t\nfields:\n  - keyword: a\n  - has_many: orders\n    table: orders\n    foreign_key: t_id\n    primary_key: id\n    fields: []\n",
			"t.schema.yml:5: fields[1]: has_many orders reads another table, which needs the root table's primary key: add `primary_key: <column>` at the top level"},
		{"aggregate in an object without the root primary_key", "version: 1\ntable: t\nfields:\n  - object: stats\n    fields:\n      - count: n\n        table: orders\n        foreign_key: t_id\n",
			"t.schema.yml:6: fields[0].stats.fields[0]: count n reads another table, which needs the root table's primary key"},

		// soft_delete.
		{"soft_delete both", "version: 1\ntable: t\nsoft_delete: {column: deleted, field: deleted}\nfields: [{boolean: deleted}]\n",
			"t.schema.yml:3: soft_delete: takes column or field, not both"},
		{"soft_delete neither", "version: 1\ntable: t\nsoft_delete: {when: [{column: a, op: is_null}]}\nfields: []\n",
			"t.schema.yml:3: soft_delete: needs column (a column of the root table) or field (a top-level document field)"},
		{"soft_delete unknown field", "version: 1\ntable: t\nsoft_delete: {field: deleted}\nfields: [{boolean: removed}]\n",
			`t.schema.yml:3: soft_delete.field: no top-level field is named "deleted"`},
		{"soft_delete nested field", "version: 1\ntable: t\nsoft_delete: {field: deleted}\nfields: [{object: o, fields: [{boolean: deleted}]}]\n",
			`t.schema.yml:3: soft_delete.field: no top-level field is named "deleted"`},
		{"soft_delete unknown key", "version: 1\ntable: t\nsoft_delete: {column: deleted, if: []}\nfields: []\n",
			`t.schema.yml:3: soft_delete: unknown key "if" (soft_delete takes column, field, when)`},
		{"soft_delete a string", "version: 1\ntable: t\nsoft_delete: deleted\nfields: []\n",
			"t.schema.yml:3: soft_delete: must be a mapping like `{column: deleted}` or `{field: deleted}`, not the string \"deleted\""},
		{"soft_delete bad when", "version: 1\ntable: t\nsoft_delete:\n  column: deleted_at\n  when: [{column: reason, op: eq}]\nfields: []\n",
			"t.schema.yml:5: soft_delete.when[0]: eq needs a value"},

		// Filters.
		{"filters not a list", "version: 1\ntable: t\nfilters: {raw: x}\nfields: []\n",
			"t.schema.yml:3: filters: must be a list of filters, not a mapping"},
		{"raw with column", "version: 1\ntable: t\nfilters: [{raw: a > 1, column: a}]\nfields: []\n",
			"t.schema.yml:3: filters[0]: a raw filter takes no column"},
		{"raw empty", "version: 1\ntable: t\nfilters: [{raw: \"\"}]\nfields: []\n",
			"t.schema.yml:3: filters[0].raw: must not be empty"},
		{"filter without op", "version: 1\ntable: t\nfilters: [{column: a, value: 1}]\nfields: []\n",
			"t.schema.yml:3: filters[0]: missing op: one of eq, neq, lt, lte, gt, gte, like, ilike, in, not_in, between, is_null, is_not_null"},
		{"filter without column", "version: 1\ntable: t\nfilters: [{op: eq, value: 1}]\nfields: []\n",
			"t.schema.yml:3: filters[0]: missing column: the column to test (or write {raw: \"…\"} for SQL)"},
		{"unknown op", "version: 1\ntable: t\nfilters: [{column: a, op: equals, value: 1}]\nfields: []\n",
			`t.schema.yml:3: filters[0].op: unknown op "equals" (ops are eq, neq,`},
		{"unknown filter key", "version: 1\ntable: t\nfilters: [{column: a, op: eq, values: [1]}]\nfields: []\n",
			`t.schema.yml:3: filters[0]: unknown key "values"; did you mean "value"?`},
		{"is_null with value", "version: 1\ntable: t\nfilters: [{column: a, op: is_null, value: true}]\nfields: []\n",
			"t.schema.yml:3: filters[0]: is_null takes no value"},
		{"is_not_null with value", "version: 1\ntable: t\nfilters: [{column: a, op: is_not_null, value: 1}]\nfields: []\n",
			"t.schema.yml:3: filters[0]: is_not_null takes no value"},
		{"eq without value", "version: 1\ntable: t\nfilters: [{column: a, op: eq}]\nfields: []\n",
			"t.schema.yml:3: filters[0]: eq needs a value"},
		{"lt with a list", "version: 1\ntable: t\nfilters: [{column: a, op: lt, value: [1, 2]}]\nfields: []\n",
			"t.schema.yml:3: filters[0].value: lt takes one value, not a list"},
		{"in with a scalar", "version: 1\ntable: t\nfilters: [{column: a, op: in, value: 1}]\nfields: []\n",
			"t.schema.yml:3: filters[0].value: must be a list for in (a list of values, e.g. [a, b]), not the number 1"},
		{"not_in empty", "version: 1\ntable: t\nfilters: [{column: a, op: not_in, value: []}]\nfields: []\n",
			"t.schema.yml:3: filters[0].value: not_in needs at least one value"},
		{"in with null", "version: 1\ntable: t\nfilters: [{column: a, op: in, value: [a, null]}]\nfields: []\n",
			"t.schema.yml:3: filters[0].value[1]: must be a string, number or boolean, not null"},
		{"between with three", "version: 1\ntable: t\nfilters: [{column: a, op: between, value: [1, 2, 3]}]\nfields: []\n",
			"t.schema.yml:3: filters[0].value: between takes exactly two values, got 3"},
		{"between with one", "version: 1\ntable: t\nfilters: [{column: a, op: between, value: 1}]\nfields: []\n",
			"t.schema.yml:3: filters[0].value: must be a list for between (the two bounds, e.g. [1, 10]), not the number 1"},
		{"filter not a mapping", "version: 1\ntable: t\nfilters: [a > 1]\nfields: []\n",
			`t.schema.yml:3: filters[0]: must be a mapping like {column: status, op: eq, value: paid} or {raw: "…"}, not the string "a > 1"`},
		{"join filter", header + "  - has_many: orders\n    table: orders\n    foreign_key: t_id\n    primary_key: id\n    filters:\n      - {column: status, op: in, value: paid}\n    fields: []\n",
			"t.schema.yml:10: fields[0].orders.filters[0].value: must be a list for in"},

		// YAML oddities.
		{"custom tag", "version: 1\ntable: t\nfields:\n  - constant: c\n    value: !money 12\n",
			"t.schema.yml:5: fields[0].c.value: unsupported YAML tag !money"},
		{"complex key", "version: 1\ntable: t\n? [a]\n: b\nfields: []\n",
			"t.schema.yml:3: keys must be plain strings, not a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.schema.yml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %T is not a non-empty ErrorList", err)
			}
			for _, e := range list {
				if strings.HasPrefix(e.Error(), tc.want) {
					return
				}
			}
			t.Errorf("got\n%v\nwant a line starting with\n%s", err, tc.want)
		})
	}
}

// deepJoins nests n belongs_to joins, one inside the other.
func deepJoins(n int) string {
	var b strings.Builder
	for i := range n {
		ind := strings.Repeat("    ", i)
		fmt.Fprintf(&b, "%s  - belongs_to: j%d\n%s    table: t\n%s    primary_key: id\n%s    fields:\n", ind, i, ind, ind, ind)
	}
	fmt.Fprintf(&b, "%s  - keyword: leaf\n", strings.Repeat("    ", n))
	return b.String()
}

// TestParseCollectsEveryError: one run reports every problem, in line order.
func TestParseCollectsEveryError(t *testing.T) {
	_, err := Parse("t.schema.yml", []byte(header+"  - keyword: a\n    colum: x\n  - text: a\n  - has_many: b\n    table: b\n"))
	want := `t.schema.yml:6: fields[0]: unknown key "colum"; did you mean "column"?
t.schema.yml:7: fields[1]: duplicate field name "a" (also at line 5)
t.schema.yml:8: fields[2]: has_many needs primary_key: the related table's primary key column
t.schema.yml:8: fields[2]: has_many needs fields: the list of fields read from the related table
t.schema.yml:8: fields[2]: has_many needs foreign_key: the related table's column pointing back at this row`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestParseTooManyErrors(t *testing.T) {
	src := header + strings.Repeat("  - keyword: 1a\n", 2*maxErrors)
	_, err := Parse("t.schema.yml", []byte(src))
	var list ErrorList
	if !errors.As(err, &list) || len(list) != maxErrors+1 {
		t.Fatalf("got %d errors, want %d and a last line saying so", len(list), maxErrors)
	}
	if got, want := list[maxErrors].Error(), "t.schema.yml: too many errors; these are the first 100 found"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	if list[maxErrors-1].Line != 5+maxErrors-1 {
		t.Errorf("the errors kept are not the first ones: last at line %d", list[maxErrors-1].Line)
	}
}

// TestParseBadInput: input that is not a schema at all fails with a clear
// message and never panics.
func TestParseBadInput(t *testing.T) {
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 'b'; i <= 'k'; i++ {
		bomb += fmt.Sprintf("%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	for _, tc := range []struct {
		name string
		src  string
		want string
	}{
		{"empty", "", "t.schema.yml: file is empty: expected a schema (version, table, fields)"},
		{"blank", " \n\n\t\n", "t.schema.yml: file is empty"},
		{"comments only", "# nothing yet\n", "t.schema.yml: file is empty"},
		{"empty document", "---\n", "t.schema.yml: file is empty"},
		{"syntax error", "version: 1\ntable: [users\nfields: []\n", "t.schema.yml:2: invalid YAML: did not find expected ',' or ']'"},
		{"tab indentation", "version: 1\nfields:\n\t- keyword: a\n", "t.schema.yml:3: invalid YAML: found character that cannot start any token"},
		{"a list", "- version: 1\n", "t.schema.yml:1: must be a mapping of version, table, fields and the other schema keys, not a list"},
		{"a scalar", "users\n", `t.schema.yml:1: must be a mapping of version, table, fields and the other schema keys, not the string "users"`},
		{"two documents", "version: 1\ntable: t\nfields: []\n---\nversion: 1\n", "t.schema.yml:4: a schema file holds one YAML document; found a second one"},
		{"binary junk", "\x00\x01\x02\xff\xfe", "t.schema.yml: invalid YAML: "},
		{"10 MB", "version: 1\n" + strings.Repeat("#", 10<<20), "t.schema.yml: file is 10.0 MiB; a schema file may be at most 1 MiB (is this the right file?)"},
		{"alias bomb", header + "  - constant: c\n    value:\n" + indent(bomb, 6), "schema is too large to process"},
		{"joins nest too deep", header + deepJoins(maxDepth+1), "fields nest deeper than 64 levels"},
		{"self-referencing alias", "version: 1\ntable: t\nfields: &f\n  - object: o\n    fields: *f\n", "fields nest deeper than 64 levels"},
		{"deep value", "version: 1\ntable: t\nfields:\n  - constant: c\n    value: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n", "value nests deeper than 64 levels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.schema.yml", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+pad) + "\n"
}
