package audit

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// rootRows reads which version of each root row a snapshot sees (its
// xmin). Whether a document exists depends on its root row alone (there,
// matching the root filters, not soft deleted), so a document missing from
// the sink after the pipeline confirmed past a snapshot is drift only when
// its root row did not change since: otherwise a later change may have
// deleted it, and the sink holds that delete.
type rootRows struct{ sql string }

func newRootRows(ctx context.Context, q sqlbuild.Querier, ix *schema.Index) (*rootRows, error) {
	ns := ix.Schema
	if ns == "" {
		ns = "public"
	}
	table := pgx.Identifier{ns, ix.Table}.Sanitize()
	rows, err := q.Query(ctx, `SELECT format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = $1::regclass AND a.attname = $2 AND NOT a.attisdropped`, table, ix.PrimaryKey)
	if err != nil {
		return nil, fmt.Errorf("reading the type of %s.%s: %w", table, ix.PrimaryKey, err)
	}
	typ, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading the type of %s.%s: %w", table, ix.PrimaryKey, err)
	}
	pk := pgx.Identifier{ix.PrimaryKey}.Sanitize()
	return &rootRows{sql: fmt.Sprintf("SELECT %s::text, xmin::text FROM %s WHERE %s = ANY($1::text[]::%s[])", pk, table, pk, typ)}, nil
}

// versions returns the xmin of the root row of each key that has one.
func (r *rootRows) versions(ctx context.Context, q sqlbuild.Querier, keys []string) (map[string]string, error) {
	rows, err := q.Query(ctx, r.sql, keys)
	if err != nil {
		return nil, fmt.Errorf("reading root rows: %w", err)
	}
	out := map[string]string{}
	var key, xmin string
	_, err = pgx.ForEachRow(rows, []any{&key, &xmin}, func() error {
		out[key] = xmin
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading root rows: %w", err)
	}
	return out, nil
}
