// Package scaffold reads what a database holds (tables, columns, keys and
// the junction tables between them) and writes starting index schemas from
// it. `flusso init` and the designer (`flusso design`) both build on it, so
// a schema started from either is the same.
package scaffold

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/check"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/suggest"
)

// Column is one column of a table.
type Column struct {
	Name     string `json:"name"`
	Type     string `json:"type"` // as declared, e.g. "numeric(10,2)"
	Base     string `json:"base"` // pg_type name of the base type, e.g. "numeric"
	Enum     bool   `json:"enum,omitempty"`
	Nullable bool   `json:"nullable"`
	// Kind is the field kind suggested for the column: the one `flusso
	// check` accepts for its type (check.Suggest).
	Kind schema.Kind `json:"kind"`
}

// ForeignKey is a foreign key of a table.
type ForeignKey struct {
	Columns    []string `json:"columns"`
	RefSchema  string   `json:"ref_schema"`
	RefTable   string   `json:"ref_table"`
	RefColumns []string `json:"ref_columns"`
}

// single reports whether the key is one column, the only shape a join can
// follow.
func (fk ForeignKey) single() bool { return len(fk.Columns) == 1 }

// Table is a table (or view) with its keys.
type Table struct {
	Schema      string       `json:"schema"`
	Name        string       `json:"name"`
	View        bool         `json:"view,omitempty"`
	Columns     []Column     `json:"columns"`
	PrimaryKey  []string     `json:"primary_key"`
	ForeignKeys []ForeignKey `json:"foreign_keys"`
	Unique      [][]string   `json:"unique,omitempty"`
	// Junction is set when the table only links two others: exactly two
	// single-column foreign keys, and besides them at most a surrogate
	// primary key and timestamps.
	Junction bool `json:"junction,omitempty"`
}

// Column returns the named column, or nil.
func (t *Table) Column(name string) *Column {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i]
		}
	}
	return nil
}

// Key returns the single-column primary key, or "" when there is none.
func (t *Table) Key() string {
	if len(t.PrimaryKey) == 1 {
		return t.PrimaryKey[0]
	}
	return ""
}

// unique reports whether col alone is unique in t.
func (t *Table) unique(col string) bool {
	if t.Key() == col {
		return true
	}
	for _, u := range t.Unique {
		if len(u) == 1 && u[0] == col {
			return true
		}
	}
	return false
}

// Catalog is every user table of a database.
type Catalog struct {
	Schemas []string `json:"schemas"`
	Tables  []*Table `json:"tables"`
}

// Table returns the table pgSchema.name, or nil.
func (c *Catalog) Table(pgSchema, name string) *Table {
	for _, t := range c.Tables {
		if t.Schema == pgSchema && t.Name == name {
			return t
		}
	}
	return nil
}

// Find returns the table pgSchema.name or an error naming the closest one.
func (c *Catalog) Find(pgSchema, name string) (*Table, error) {
	if t := c.Table(pgSchema, name); t != nil {
		return t, nil
	}
	var names []string
	for _, t := range c.Tables {
		if t.Schema == pgSchema {
			names = append(names, t.Name)
		}
	}
	msg := fmt.Sprintf("table %s.%s does not exist", pgSchema, name)
	if s := suggest.Closest(name, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	} else if len(names) > 0 {
		msg += " (tables: " + strings.Join(names, ", ") + ")"
	} else {
		msg += fmt.Sprintf(" (schema %s has no tables)", pgSchema)
	}
	return nil, fmt.Errorf("%s", msg)
}

// Beginner starts transactions; *pgx.Conn and *pgxpool.Pool are ones.
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

const userSchemas = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'`

const tablesSQL = `
SELECT n.nspname, c.relname, c.relkind IN ('v', 'm')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition AND ` + userSchemas + `
ORDER BY 1, 2`

const columnsSQL = `
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
       bt.typname, bt.typtype = 'e', NOT (a.attnotnull OR t.typnotnull)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped AND ` + userSchemas + `
ORDER BY 1, 2, a.attnum`

const constraintsSQL = `
SELECT n.nspname, c.relname, con.contype,
       array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord)::text[],
       coalesce(fn.nspname, ''), coalesce(fc.relname, ''),
       coalesce(array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord)::text[], '{}')
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid
LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
WHERE con.contype IN ('p', 'f', 'u') AND ` + userSchemas + `
ORDER BY 1, 2, con.contype, con.conname`

// Read reads the catalog of every user schema in a read-only transaction:
// reading what a database holds never changes it.
func Read(ctx context.Context, db Beginner) (*Catalog, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("reading the catalog: starting a read-only transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only: nothing to keep
	cat := &Catalog{Schemas: []string{}, Tables: []*Table{}}
	byName := map[[2]string]*Table{}

	err = each(ctx, tx, tablesSQL, func(r pgx.Rows) error {
		t := &Table{Columns: []Column{}, PrimaryKey: []string{}, ForeignKeys: []ForeignKey{}}
		if err := r.Scan(&t.Schema, &t.Name, &t.View); err != nil {
			return err
		}
		if !slices.Contains(cat.Schemas, t.Schema) {
			cat.Schemas = append(cat.Schemas, t.Schema)
		}
		cat.Tables = append(cat.Tables, t)
		byName[[2]string{t.Schema, t.Name}] = t
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the tables: %w", err)
	}
	err = each(ctx, tx, columnsSQL, func(r pgx.Rows) error {
		var s, tbl string
		var c Column
		if err := r.Scan(&s, &tbl, &c.Name, &c.Type, &c.Base, &c.Enum, &c.Nullable); err != nil {
			return err
		}
		c.Kind = check.Suggest(c.Base, c.Enum)
		if t := byName[[2]string{s, tbl}]; t != nil {
			t.Columns = append(t.Columns, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the columns: %w", err)
	}
	err = each(ctx, tx, constraintsSQL, func(r pgx.Rows) error {
		var s, tbl, typ string
		var fk ForeignKey
		if err := r.Scan(&s, &tbl, &typ, &fk.Columns, &fk.RefSchema, &fk.RefTable, &fk.RefColumns); err != nil {
			return err
		}
		t := byName[[2]string{s, tbl}]
		if t == nil {
			return nil
		}
		switch typ {
		case "p":
			t.PrimaryKey = fk.Columns
		case "u":
			t.Unique = append(t.Unique, fk.Columns)
		case "f":
			t.ForeignKeys = append(t.ForeignKeys, fk)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the keys: %w", err)
	}
	for _, t := range cat.Tables {
		t.Junction = isJunction(t)
	}
	return cat, nil
}

func each(ctx context.Context, q pgx.Tx, sql string, fn func(pgx.Rows) error) error {
	rows, err := q.Query(ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// isJunction: two single-column foreign keys, and every other column is the
// surrogate primary key or a timestamp (created_at and the like).
func isJunction(t *Table) bool {
	if len(t.ForeignKeys) != 2 || !t.ForeignKeys[0].single() || !t.ForeignKeys[1].single() {
		return false
	}
	for _, c := range t.Columns {
		switch {
		case c.Name == t.ForeignKeys[0].Columns[0], c.Name == t.ForeignKeys[1].Columns[0]:
		case t.Key() == c.Name:
		case c.Kind == schema.Timestamp || c.Kind == schema.Date:
		default:
			return false
		}
	}
	return true
}
