package sqlbuild

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// family groups Postgres types by how their values are rendered.
type family int

const (
	famOther family = iota
	famString
	famEnum
	famUUID
	famBool
	famInt
	famFloat
	famNumeric
	famMoney
	famDate
	famTimestamp
	famTimestampTZ
	famTime
	famJSON
	famBytea
)

// pgType is a column or expression type: its name as Postgres prints it
// (usable in a cast) and, for domains, the base type it renders as.
type pgType struct {
	name string // format_type, e.g. "timestamp with time zone", "public.mood"
	base string // pg_type.typname of the base type, e.g. "timestamptz"
	fam  family
}

func builtin(name, base string) pgType {
	return pgType{name: name, base: base, fam: classify(base, "b")}
}

// Cast targets.
var (
	tText        = builtin("text", "text")
	tBool        = builtin("boolean", "bool")
	tInt2        = builtin("smallint", "int2")
	tInt4        = builtin("integer", "int4")
	tInt8        = builtin("bigint", "int8")
	tFloat4      = builtin("real", "float4")
	tFloat8      = builtin("double precision", "float8")
	tNumeric     = builtin("numeric", "numeric")
	tDate        = builtin("date", "date")
	tTimestampTZ = builtin("timestamp with time zone", "timestamptz")
	tUUID        = builtin("uuid", "uuid")
	tJSONB       = builtin("jsonb", "jsonb")
	tJSON        = builtin("json", "json")
	tBytea       = builtin("bytea", "bytea")
	tInterval    = builtin("interval", "interval")
)

func classify(base, typtype string) family {
	if typtype == "e" {
		return famEnum
	}
	switch base {
	case "text", "varchar", "bpchar", "name", "citext", "char":
		return famString
	case "uuid":
		return famUUID
	case "bool":
		return famBool
	case "int2", "int4", "int8":
		return famInt
	case "float4", "float8":
		return famFloat
	case "numeric":
		return famNumeric
	case "money":
		return famMoney
	case "date":
		return famDate
	case "timestamp":
		return famTimestamp
	case "timestamptz":
		return famTimestampTZ
	case "time", "timetz":
		return famTime
	case "json", "jsonb":
		return famJSON
	case "bytea":
		return famBytea
	}
	return famOther
}

// intWidth orders the integer types so a narrower one can stand for a wider.
func intWidth(base string) int {
	switch base {
	case "int2":
		return 2
	case "int4":
		return 4
	case "int8":
		return 8
	}
	return 0
}

// catalog is what Prepare learns about the tables of one index.
type catalog struct {
	schema  string
	columns map[string]map[string]pgType // table → column → type
	pkeys   map[string][]string          // table → primary key columns
}

// MissingError is a table, or a column of one, that an index reads and the
// database does not have: the schema and the tables disagree (a column
// dropped or renamed, say).
type MissingError struct {
	Field  string // the field reading it (document path); "" when no one field does
	Schema string
	Table  string
	Column string // "" when the table itself is missing
}

func (e *MissingError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("table %s.%s does not exist", e.Schema, e.Table)
	}
	return fmt.Sprintf("table %q has no column %q", e.Table, e.Column)
}

func (c *catalog) column(table, column string) (pgType, error) {
	cols, ok := c.columns[table]
	if !ok {
		return pgType{}, fmt.Errorf("table %q does not exist", table)
	}
	t, ok := cols[column]
	if !ok {
		return pgType{}, &MissingError{Schema: c.schema, Table: table, Column: column}
	}
	return t, nil
}

// equal reports whether two catalogs describe the same tables.
func (c *catalog) equal(o *catalog) bool {
	return c.schema == o.schema &&
		maps.EqualFunc(c.columns, o.columns, maps.Equal) &&
		maps.EqualFunc(c.pkeys, o.pkeys, slices.Equal)
}

// primaryKey returns the single-column primary key of table.
func (c *catalog) primaryKey(table string) (string, error) {
	switch pk := c.pkeys[table]; len(pk) {
	case 1:
		return pk[0], nil
	case 0:
		return "", fmt.Errorf("table %q has no primary key", table)
	default:
		return "", fmt.Errorf("table %q has a composite primary key (%v); a single column is needed", table, pk)
	}
}

// isPrimaryKey reports whether column alone is the primary key of table,
// and so identifies at most one row.
func (c *catalog) isPrimaryKey(table, column string) bool {
	pk := c.pkeys[table]
	return len(pk) == 1 && pk[0] == column
}

const columnsSQL = `
SELECT c.relname, a.attname, format_type(a.atttypid, NULL), bt.typname, bt.typtype
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`

const primaryKeysSQL = `
SELECT c.relname, a.attname
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
WHERE i.indisprimary AND n.nspname = $1 AND c.relname = ANY($2::text[])
ORDER BY c.relname, array_position(i.indkey::int2[], a.attnum)`

// loadCatalog reads the column types and primary keys of tables in schema.
func loadCatalog(ctx context.Context, q Querier, schemaName string, tables []string) (*catalog, error) {
	c := &catalog{schema: schemaName, columns: map[string]map[string]pgType{}, pkeys: map[string][]string{}}
	rows, err := q.Query(ctx, columnsSQL, schemaName, tables)
	if err != nil {
		return nil, fmt.Errorf("reading column types: %w", err)
	}
	for rows.Next() {
		var table, column string
		var t pgType
		var typtype string
		if err := rows.Scan(&table, &column, &t.name, &t.base, &typtype); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading column types: %w", err)
		}
		t.fam = classify(t.base, typtype)
		if c.columns[table] == nil {
			c.columns[table] = map[string]pgType{}
		}
		c.columns[table][column] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading column types: %w", err)
	}

	rows, err = q.Query(ctx, primaryKeysSQL, schemaName, tables)
	if err != nil {
		return nil, fmt.Errorf("reading primary keys: %w", err)
	}
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading primary keys: %w", err)
		}
		c.pkeys[table] = append(c.pkeys[table], column)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading primary keys: %w", err)
	}
	for _, t := range tables {
		if _, ok := c.columns[t]; !ok {
			return nil, &MissingError{Schema: schemaName, Table: t}
		}
	}
	return c, nil
}
