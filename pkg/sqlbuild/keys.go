package sqlbuild

import (
	"context"
	"fmt"
)

// exactBelow is the estimated row count below which Count counts exactly.
const exactBelow = 100_000

// keysStatements page through the keys of root rows that are documents, in
// key order: $1 is the page size, $2 the key to start after.
func (x *Index) keysStatements() (first, after *statement, err error) {
	pk := col("r", x.root.key)
	page := func(withAfter bool) (*statement, error) {
		g := newGen(x, 1)
		cond := "true"
		if withAfter {
			cond = fmt.Sprintf("%s > %s::text::%s", pk, g.param(nil), x.keyType.name)
		}
		sql := fmt.Sprintf("SELECT %s::text FROM %s AS r WHERE %s%s ORDER BY %s LIMIT $1",
			pk, x.table(x.root.table), cond, g.rootConditions("r"), pk)
		if g.err != nil {
			return nil, g.err
		}
		return &statement{sql: sql, args: g.args}, nil
	}
	if first, err = page(false); err != nil {
		return nil, nil, err
	}
	after, err = page(true)
	return first, after, err
}

// Keys returns up to limit keys of root rows that are documents (matching
// the root filters, not soft deleted), in key order: the first page when
// first is set, else the page after the key after. Backfill walks the table
// with it.
func (x *Index) Keys(ctx context.Context, q Querier, after string, first bool, limit int) ([]string, error) {
	if err := x.prepared(); err != nil {
		return nil, err
	}
	st, args := x.keys, x.keys.with(limit)
	if !first {
		st = x.keysAt
		args = st.with(limit)
		args[1] = after
	}
	rows, err := q.Query(ctx, st.sql, args...)
	if err != nil {
		return nil, fmt.Errorf("index %q: listing keys: %w", x.name, err)
	}
	keys, err := collectText(rows)
	if err != nil {
		return nil, fmt.Errorf("index %q: listing keys: %w", x.name, err)
	}
	return keys, nil
}

// KeyPages hands fn the keys Keys lists, a page of up to limit at a time
// in key order, until they end or fn fails.
func (x *Index) KeyPages(ctx context.Context, q Querier, limit int, fn func(keys []string) error) error {
	after, first := "", true
	for {
		keys, err := x.Keys(ctx, q, after, first, limit)
		if err != nil || len(keys) == 0 {
			return err
		}
		if err := fn(keys); err != nil {
			return err
		}
		after, first = keys[len(keys)-1], false
	}
}

// Count estimates the number of root rows for progress reports: the
// planner's estimate for a large table, an exact count of the documents for
// a small one.
func (x *Index) Count(ctx context.Context, q Querier) (int64, error) {
	if err := x.prepared(); err != nil {
		return 0, err
	}
	var n int64
	err := queryRow(ctx, q, "SELECT reltuples::bigint FROM pg_catalog.pg_class WHERE oid = $1::regclass",
		[]any{x.table(x.root.table)}, &n)
	if err != nil {
		return 0, fmt.Errorf("index %q: estimating rows: %w", x.name, err)
	}
	if n >= exactBelow {
		return n, nil
	}
	// reltuples is -1 before the first analyze, and rough when small.
	g := newGen(x, 0)
	sql := fmt.Sprintf("SELECT count(*) FROM %s AS r WHERE true%s", x.table(x.root.table), g.rootConditions("r"))
	if g.err != nil {
		return 0, fmt.Errorf("index %q: %w", x.name, g.err)
	}
	if err := queryRow(ctx, q, sql, g.args, &n); err != nil {
		return 0, fmt.Errorf("index %q: counting rows: %w", x.name, err)
	}
	return n, nil
}
