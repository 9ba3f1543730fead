// Package schema holds the model of one index schema (`*.schema.yml`): the root
// table, the fields of a document and how each is read from Postgres.
//
// The model is what every stage shares: the loader fills it, the mapping and
// the schema hash are derived from it, the SQL builder turns it into queries
// and the capture derives the table set of the publication from it.
package schema

// Kind is a field's type key in the schema file (`keyword: email` has kind
// keyword).
type Kind string

// Scalar kinds.
const (
	Text       Kind = "text"
	Identifier Kind = "identifier"
	Keyword    Kind = "keyword"
	Enum       Kind = "enum"
	UUID       Kind = "uuid"
	Boolean    Kind = "boolean"
	Short      Kind = "short"
	Integer    Kind = "integer"
	Long       Kind = "long"
	Float      Kind = "float"
	Double     Kind = "double"
	Decimal    Kind = "decimal"
	Date       Kind = "date"
	Timestamp  Kind = "timestamp"
	Binary     Kind = "binary"
	JSON       Kind = "json"
	Custom     Kind = "custom"
)

// Structural kinds.
const (
	Geo      Kind = "geo"
	Object   Kind = "object"
	Map      Kind = "map"
	Constant Kind = "constant"
)

// Join kinds.
const (
	BelongsTo  Kind = "belongs_to"
	HasOne     Kind = "has_one"
	HasMany    Kind = "has_many"
	ManyToMany Kind = "many_to_many"
)

// Aggregate kinds.
const (
	Count Kind = "count"
	Sum   Kind = "sum"
	Avg   Kind = "avg"
	Min   Kind = "min"
	Max   Kind = "max"
	IDs   Kind = "ids"
)

// IsScalar reports whether k reads one column of the current row.
func (k Kind) IsScalar() bool {
	switch k {
	case Text, Identifier, Keyword, Enum, UUID, Boolean, Short, Integer, Long,
		Float, Double, Decimal, Date, Timestamp, Binary, JSON, Custom:
		return true
	}
	return false
}

// IsJoin reports whether k folds rows of another table into the document.
func (k Kind) IsJoin() bool {
	switch k {
	case BelongsTo, HasOne, HasMany, ManyToMany:
		return true
	}
	return false
}

// IsToMany reports whether k renders as an array of objects.
func (k Kind) IsToMany() bool { return k == HasMany || k == ManyToMany }

// IsAggregate reports whether k computes one value over related rows.
func (k Kind) IsAggregate() bool {
	switch k {
	case Count, Sum, Avg, Min, Max, IDs:
		return true
	}
	return false
}

// Index is one parsed and validated `*.schema.yml`.
type Index struct {
	// File is the path the schema was loaded from, for messages only.
	File string `json:"-" msgpack:"file"`

	Version    int         `json:"version" msgpack:"version"`
	Table      string      `json:"table" msgpack:"table"`
	Schema     string      `json:"schema" msgpack:"schema"` // Postgres schema, default "public"
	PrimaryKey string      `json:"primary_key,omitempty" msgpack:"primary_key"`
	SoftDelete *SoftDelete `json:"soft_delete,omitempty" msgpack:"soft_delete"`
	Filters    []Filter    `json:"filters,omitempty" msgpack:"filters"`
	Fields     []Field     `json:"fields" msgpack:"fields"`
}

// SoftDelete turns a matching root row into a delete. Exactly one of Column
// and Field is set.
type SoftDelete struct {
	Column string   `json:"column,omitempty" msgpack:"column"`
	Field  string   `json:"field,omitempty" msgpack:"field"`
	When   []Filter `json:"when,omitempty" msgpack:"when"`
}

// Op is a filter comparison.
type Op string

// Filter operators.
const (
	OpEq        Op = "eq"
	OpNeq       Op = "neq"
	OpLt        Op = "lt"
	OpLte       Op = "lte"
	OpGt        Op = "gt"
	OpGte       Op = "gte"
	OpLike      Op = "like"
	OpIlike     Op = "ilike"
	OpIn        Op = "in"
	OpNotIn     Op = "not_in"
	OpBetween   Op = "between"
	OpIsNull    Op = "is_null"
	OpIsNotNull Op = "is_not_null"
)

// Filter is either raw SQL or a column comparison.
type Filter struct {
	Raw    string `json:"raw,omitempty" msgpack:"raw"`
	Column string `json:"column,omitempty" msgpack:"column"`
	Op     Op     `json:"op,omitempty" msgpack:"op"`
	// Values holds the operands: one for comparisons, any number for in and
	// not_in, two for between, none for the null checks. Each is a string,
	// float64, int64 or bool.
	Values []any `json:"values,omitempty" msgpack:"values"`
}

// Transform is a string transform applied to a scalar value.
type Transform string

// Transforms.
const (
	Lowercase Transform = "lowercase"
	Trim      Transform = "trim"
)

// Direction orders joined rows.
type Direction string

// Directions.
const (
	Asc  Direction = "asc"
	Desc Direction = "desc"
)

// OrderBy is one term of a join's order_by. Direction defaults to Asc on
// load.
type OrderBy struct {
	Column    string    `json:"column" msgpack:"column"`
	Direction Direction `json:"direction" msgpack:"direction"`
}

// Through names the junction table of a many_to_many join or aggregate.
// LeftKey points at the parent row, RightKey at the related row.
type Through struct {
	Table    string `json:"table" msgpack:"table"`
	LeftKey  string `json:"left_key" msgpack:"left_key"`
	RightKey string `json:"right_key" msgpack:"right_key"`
}

// Field is one document key.
type Field struct {
	Name string `json:"name" msgpack:"name"`
	Kind Kind   `json:"kind" msgpack:"kind"`
	// Line is the line of the field in its file, for messages only.
	Line int `json:"-" msgpack:"line"`

	Required bool `json:"required,omitempty" msgpack:"required"`
	// Column is the source column of a scalar, a single-column geo or a map,
	// this row's foreign key column for belongs_to, and the aggregated
	// column of sum, avg, min and max. For all but the aggregates it
	// defaults on load to Name lowercased, as Postgres folds an unquoted
	// identifier.
	Column     string         `json:"column,omitempty" msgpack:"column"`
	Options    map[string]any `json:"options,omitempty" msgpack:"options"`
	Transforms []Transform    `json:"transforms,omitempty" msgpack:"transforms"`
	Default    any            `json:"default,omitempty" msgpack:"default"`

	Variants []string `json:"variants,omitempty" msgpack:"variants"` // enum

	PostgresTypes  []string `json:"postgres,omitempty" msgpack:"postgres"`     // custom
	OpenSearchType string   `json:"opensearch,omitempty" msgpack:"opensearch"` // custom

	Lat string `json:"lat,omitempty" msgpack:"lat"` // geo, two-column form
	Lon string `json:"lon,omitempty" msgpack:"lon"`

	Values Kind `json:"values,omitempty" msgpack:"values"` // map leaf kind

	Value any `json:"value,omitempty" msgpack:"value"` // constant

	// Fields is the projection of an object or a join.
	Fields []Field `json:"fields,omitempty" msgpack:"fields"`

	// Join and aggregate settings.
	Table      string    `json:"table,omitempty" msgpack:"table"`
	PrimaryKey string    `json:"primary_key,omitempty" msgpack:"primary_key"`
	ForeignKey string    `json:"foreign_key,omitempty" msgpack:"foreign_key"`
	Through    *Through  `json:"through,omitempty" msgpack:"through"`
	Filters    []Filter  `json:"filters,omitempty" msgpack:"filters"`
	OrderBy    []OrderBy `json:"order_by,omitempty" msgpack:"order_by"`
	Limit      int       `json:"limit,omitempty" msgpack:"limit"`

	// Aggregate result kinds: ValueType for sum/min/max, ElementType for ids.
	ValueType   Kind `json:"value_type,omitempty" msgpack:"value_type"`
	ElementType Kind `json:"element_type,omitempty" msgpack:"element_type"`
}

// TableRef names a Postgres table by schema and name.
type TableRef struct {
	Schema string
	Name   string
}

// String renders the quoted, schema-qualified name.
func (t TableRef) String() string { return QuoteIdent(t.Schema) + "." + QuoteIdent(t.Name) }

// QuoteIdent quotes a Postgres identifier.
func QuoteIdent(s string) string {
	out := make([]byte, 0, len(s)+2)
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			out = append(out, '"')
		}
		out = append(out, s[i])
	}
	return string(append(out, '"'))
}

// Tables lists every table the document is read from: the root, every joined,
// junction and aggregated table at any depth. Joined tables live in the root's
// Postgres schema. The root comes first; the rest are in field order without
// repeats.
func (ix *Index) Tables() []TableRef {
	seen := map[string]bool{}
	var out []TableRef
	add := func(name string) {
		if name == "" || seen[name] {
			return
		}
		seen[name] = true
		out = append(out, TableRef{Schema: ix.Schema, Name: name})
	}
	add(ix.Table)
	var walk func([]Field)
	walk = func(fields []Field) {
		for _, f := range fields {
			add(f.Table)
			if f.Through != nil {
				add(f.Through.Table)
			}
			walk(f.Fields)
		}
	}
	walk(ix.Fields)
	return out
}
