package check

import (
	"context"
	"fmt"

	"github.com/flusso/flusso/pkg/publication"
	"github.com/flusso/flusso/pkg/schema"
)

// column is one live column as the catalog describes it.
type column struct {
	typ      string // format_type with modifiers, e.g. "character varying(40)"
	name     string // pg_type.typname of the declared type (a domain's own name)
	base     string // typname of the base type, for domains
	enum     bool
	nullable bool
}

// catalog holds the columns of the tables the schemas read.
type catalog map[schema.TableRef]map[string]column

const columnsSQL = `
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
       t.typname, bt.typname, bt.typtype = 'e', NOT (a.attnotnull OR t.typnotnull)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND a.attnum > 0 AND NOT a.attisdropped`

// loadCatalog reads every column of every table in the given Postgres schemas.
func loadCatalog(ctx context.Context, q publication.Querier, schemas []string) (catalog, error) {
	rows, err := q.Query(ctx, columnsSQL, schemas)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of the database: %w", err)
	}
	defer rows.Close()
	cat := catalog{}
	for rows.Next() {
		var (
			t   schema.TableRef
			col string
			c   column
		)
		if err := rows.Scan(&t.Schema, &t.Name, &col, &c.typ, &c.name, &c.base, &c.enum, &c.nullable); err != nil {
			return nil, fmt.Errorf("reading the columns of the database: %w", err)
		}
		if cat[t] == nil {
			cat[t] = map[string]column{}
		}
		cat[t][col] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the columns of the database: %w", err)
	}
	return cat, nil
}
