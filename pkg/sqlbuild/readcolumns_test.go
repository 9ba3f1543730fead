package sqlbuild_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// filteredSchema reads users under a root filter and a soft delete with a
// when filter, and aggregates orders under a filter.
const filteredSchema = `version: 1
table: users
primary_key: id
filters: [{column: email, op: like, value: '%@x'}]
soft_delete:
	column: deleted_at
	when: [{column: status, op: neq, value: active}]
fields:
	- integer: id
	- sum: paid
		table: orders
		column: total
		value_type: decimal
		foreign_key: user_id
		filters: [{column: status, op: eq, value: paid}]
`

func TestReadColumns(t *testing.T) {
	pool := database(t, shopDDL)
	shop := index(t, pool, shopSchema)
	filtered := index(t, pool, filteredSchema)
	raw := index(t, pool, "version: 1\ntable: users\nprimary_key: id\nfilters: [{raw: \"company_id IS NOT NULL\"}]\nfields:\n\t- integer: id\n")
	for _, tt := range []struct {
		name          string
		ix            *sqlbuild.Index
		schema, table string
		want          []string
		any           bool
	}{
		// deleted, deleted_at and status are read by no field.
		{"root", shop, "public", "users", []string{"company_id", "email", "id", "manager_id"}, false},
		{"belongs_to target", shop, "public", "companies", []string{"id", "name"}, false},
		{"has_one with order_by", shop, "public", "profiles", []string{"headline", "id", "updated", "user_id"}, false},
		{"joins, filters and aggregates", shop, "public", "orders", []string{"id", "placed", "status", "total", "user_id"}, false},
		{"second level, belongs_to column", shop, "public", "items", []string{"id", "order_id", "product_id", "qty"}, false},
		// price is read by no field.
		{"belongs_to target below", shop, "public", "products", []string{"id", "name"}, false},
		{"many_to_many target", shop, "public", "tags", []string{"id", "label"}, false},
		{"junction", shop, "public", "user_tags", []string{"tag_id", "user_id"}, false},
		{"a table not read", shop, "public", "audit", nil, false},
		{"another schema", shop, "other", "users", nil, false},
		{"root filter and soft delete", filtered, "public", "users", []string{"deleted_at", "email", "id", "status"}, false},
		// placed is read by no field of this index.
		{"aggregate with a filter", filtered, "public", "orders", []string{"id", "status", "total", "user_id"}, false},
		{"a raw filter reads anything", raw, "public", "users", nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, anyCol := tt.ix.ReadColumns(tt.schema, tt.table)
			if !slices.Equal(got, tt.want) || anyCol != tt.any {
				t.Errorf("ReadColumns(%s, %s) = %v, %v; want %v, %v", tt.schema, tt.table, got, anyCol, tt.want, tt.any)
			}
			for _, c := range tt.ix.ChangeColumns(tt.schema, tt.table) {
				if !anyCol && !slices.Contains(got, c) {
					t.Errorf("ReadColumns(%s, %s) = %v lacks %s, which ChangeColumns names", tt.schema, tt.table, got, c)
				}
			}
		})
	}
}

// TestColumnsNotReadLeaveDocumentsAlone changes, one at a time, every
// column of every table that ReadColumns leaves out, and builds every
// document: none may differ. It also changes every column it names that
// is not a key, and at least one document must differ for some: else the
// data set could not tell a missing column.
func TestColumnsNotReadLeaveDocumentsAlone(t *testing.T) {
	pool := database(t, shopDDL+`
		UPDATE users SET deleted_at = now(), status = 'archived' WHERE id = 3;
		UPDATE users SET status = 'archived' WHERE id = 2;`)
	ctx := context.Background()
	keys := []string{"1", "2", "3", "4"}
	for _, tt := range []struct{ name, schema string }{{"shop", shopSchema}, {"filtered", filteredSchema}} {
		t.Run(tt.name, func(t *testing.T) {
			ix := index(t, pool, tt.schema)
			before := build(t, pool, ix, keys...)
			rows, err := pool.Query(ctx, `SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
				WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`)
			if err != nil {
				t.Fatal(err)
			}
			type column struct{ Table, Name, Typ string }
			cols, err := pgx.CollectRows(rows, pgx.RowToStructByPos[column])
			if err != nil {
				t.Fatal(err)
			}
			unread, readChanged := 0, 0
			for _, c := range cols {
				read, anyCol := ix.ReadColumns("public", c.Table)
				if anyCol {
					t.Fatalf("ReadColumns(%s) reads any column", c.Table)
				}
				isRead := slices.Contains(read, c.Name)
				if isRead && slices.Contains(ix.ChangeColumns("public", c.Table), c.Name) {
					continue // a key: changing it moves rows, which Affected follows
				}
				after := buildAfter(t, pool, ix, keys, fmt.Sprintf("UPDATE %s SET %s = %s",
					schema.QuoteIdent(c.Table), schema.QuoteIdent(c.Name), changed(schema.QuoteIdent(c.Name), c.Typ)))
				differs := !maps.Equal(before, after)
				switch {
				case !isRead && differs:
					t.Errorf("changing %s.%s, which ReadColumns leaves out, changed documents:\n before %v\n after  %v", c.Table, c.Name, before, after)
				case !isRead:
					unread++
				case differs:
					readChanged++
				}
			}
			if unread == 0 || readChanged == 0 {
				t.Fatalf("%d unread columns changed, %d read columns changed documents: the test proves nothing", unread, readChanged)
			}
		})
	}
}

// buildAfter builds the documents after sql, in a transaction rolled back.
func buildAfter(t *testing.T, pool *pgxpool.Pool, ix *sqlbuild.Index, keys []string, sql string) map[string]string {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	docs, err := ix.Build(ctx, tx, keys)
	if err != nil {
		t.Fatalf("building after %s: %v", sql, err)
	}
	out := map[string]string{}
	for _, d := range docs {
		out[d.ID] = "null"
		if d.Body != nil {
			out[d.ID] = canonical(t, string(d.Body))
		}
	}
	return out
}

// changed is an expression giving every row of column c another value, in
// another order (an order_by must see the change), and nulls a value.
func changed(c, typ string) string {
	switch typ {
	case "integer", "bigint", "numeric":
		return "-coalesce(" + c + ", 0) - 7"
	case "boolean":
		return "NOT coalesce(" + c + ", false)"
	case "date":
		return "'2100-01-01'::date - (coalesce(" + c + ", '2000-01-01') - '2000-01-01'::date)"
	case "timestamp with time zone":
		return "'2100-01-01'::timestamptz - (coalesce(" + c + ", '2000-01-01') - '2000-01-01'::timestamptz)"
	default:
		return "md5(coalesce(" + c + ", ''))"
	}
}
