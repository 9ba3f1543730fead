package sqlbuild

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/schema"
)

// ChangeOp is what a change did to a row.
type ChangeOp int

// Change operations.
const (
	Insert ChangeOp = iota + 1
	Update
	Delete
	Truncate
)

// Change is one row change from the replication stream.
type Change struct {
	Schema, Table string
	Op            ChangeOp
	// New and Old map a column to its value in text form; a nil value is
	// SQL NULL and a missing column was not sent (an unchanged TOASTed value,
	// or a column outside the old row image). New is set for inserts and
	// updates, Old for deletes and for updates under REPLICA IDENTITY FULL or
	// changing the replica identity.
	New, Old map[string]*string
}

// hopStatement selects, from keys of lvl's rows ($1), the keys of the
// parent rows that read them, from current data.
func (x *Index) hopStatement(lvl *level) (string, error) {
	f := &lvl.field.def
	g := newGen(x, 1)
	var sql string
	switch {
	case f.Kind == schema.BelongsTo:
		p := lvl.parent
		c := g.column(p.table, f.Column)
		g.column(p.table, p.key)
		sql = fmt.Sprintf("SELECT DISTINCT %s::text FROM %s AS p WHERE %s = ANY($1::text[]::%s[])",
			col("p", p.key), x.table(p.table), col("p", f.Column), c.name)
	case f.Through != nil:
		t := f.Through
		r := g.column(t.Table, t.RightKey)
		g.column(t.Table, t.LeftKey)
		sql = fmt.Sprintf("SELECT DISTINCT %s::text FROM %s AS j WHERE %s = ANY($1::text[]::%s[]) AND %[1]s IS NOT NULL",
			col("j", t.LeftKey), x.table(t.Table), col("j", t.RightKey), r.name)
	default: // has_one, has_many, aggregate by foreign key
		if lvl.key == "" {
			// Rows without identity: a change lacking its foreign key
			// cannot be traced and rebuilds everything.
			return "", nil
		}
		k := g.column(lvl.table, lvl.key)
		g.column(lvl.table, f.ForeignKey)
		sql = fmt.Sprintf("SELECT DISTINCT %s::text FROM %s AS c WHERE %s = ANY($1::text[]::%s[]) AND %[1]s IS NOT NULL",
			col("c", f.ForeignKey), x.table(lvl.table), col("c", lvl.key), k.name)
	}
	return sql, g.err
}

// hopType is the type of the keys a hop from lvl yields.
func (x *Index) hopType(lvl *level) pgType {
	f := &lvl.field.def
	switch {
	case f.Kind == schema.BelongsTo:
		t, _ := x.cat.column(lvl.parent.table, lvl.parent.key)
		return t
	case f.Through != nil:
		t, _ := x.cat.column(f.Through.Table, f.Through.LeftKey)
		return t
	}
	t, _ := x.cat.column(lvl.table, f.ForeignKey)
	return t
}

// Affected returns the root keys (text form, distinct, sorted) of the
// documents changes touch, at any depth. all is set instead when every
// document must be rebuilt: a table read by the index other than the root
// was truncated, or a change lacks what is needed to trace it (a delete
// without its old row image). A truncated root is reported by RootTruncated.
//
// Values in the changes lead directly to the parents they name; further up,
// one query per relation level runs on current data.
func (x *Index) Affected(ctx context.Context, q Querier, changes []Change) (keys []string, all bool, err error) {
	if err := x.prepared(); err != nil {
		return nil, false, err
	}
	r := &resolver{x: x, pending: map[*level]map[string]bool{}}
	for _, c := range changes {
		if c.Schema != x.schema {
			continue
		}
		if c.Op == Truncate {
			if len(x.occurs[c.Table]) > 0 {
				return nil, true, nil
			}
			continue
		}
		if c.Table == x.root.table && !r.row(c, x.root) {
			return nil, true, nil
		}
		for _, o := range x.occurs[c.Table] {
			if !r.occurrence(c, o) {
				return nil, true, nil
			}
		}
	}
	// Climb from the deepest level up, so that every level is climbed once,
	// after all its keys are known. Levels reading the same table the same
	// way for the same parent (orders read by a join and by aggregates)
	// share one query.
	for depth := x.depth; depth > 0; depth-- {
		type hop struct {
			sql    string
			parent *level
		}
		groups := map[hop]map[string]bool{}
		var order []hop
		types := map[hop]pgType{}
		for _, lvl := range x.levels {
			set := r.pending[lvl]
			if lvl.depth != depth || len(set) == 0 {
				continue
			}
			if lvl.hop == "" {
				return nil, true, nil
			}
			h := hop{lvl.hop, lvl.parent}
			if groups[h] == nil {
				groups[h] = map[string]bool{}
				order = append(order, h)
				types[h] = x.hopType(lvl)
			}
			for k := range set {
				groups[h][k] = true
			}
		}
		for _, h := range order {
			parents, err := queryKeys(ctx, q, h.sql, setKeys(groups[h]))
			if err != nil {
				return nil, false, fmt.Errorf("index %q: resolving rows of %s: %w", x.name, h.parent.table, err)
			}
			r.add(h.parent, parents, types[h])
		}
	}
	keys = setKeys(r.pending[x.root])
	if r.recast && len(keys) > 0 {
		// Keys read from columns of another type than the primary key are
		// brought to the primary key's text form.
		sql := fmt.Sprintf("SELECT k::%s::text FROM unnest($1::text[]) AS k", x.keyType.name)
		normal, err := queryKeys(ctx, q, sql, keys)
		if err != nil {
			return nil, false, fmt.Errorf("index %q: normalizing keys: %w", x.name, err)
		}
		set := map[string]bool{}
		for _, k := range normal {
			set[k] = true
		}
		keys = setKeys(set)
	}
	return keys, false, nil
}

// resolver collects, per level, keys of rows whose documents changed.
type resolver struct {
	x       *Index
	pending map[*level]map[string]bool
	recast  bool // a root key came from a column of another type
}

func (r *resolver) add(lvl *level, vals []string, t pgType) {
	if len(vals) == 0 {
		return
	}
	if lvl == r.x.root && t.name != r.x.keyType.name {
		r.recast = true
	}
	set := r.pending[lvl]
	if set == nil {
		set = map[string]bool{}
		r.pending[lvl] = set
	}
	for _, v := range vals {
		set[v] = true
	}
}

// row records the changed row itself as a row of lvl, by its key.
func (r *resolver) row(c Change, lvl *level) bool {
	if lvl.key == "" {
		return false
	}
	vals, img := values(c, lvl.key, true)
	if img != sent {
		return false
	}
	t, _ := r.x.cat.column(lvl.table, lvl.key)
	r.add(lvl, vals, t)
	return true
}

// occurrence records what a change of a table read at o affects. It reports
// false when the change cannot be traced.
func (r *resolver) occurrence(c Change, o occurrence) bool {
	lvl := o.lvl
	f := &lvl.field.def
	if o.junction {
		vals, img := values(c, f.Through.LeftKey, false)
		if img != sent {
			return false
		}
		t, _ := r.x.cat.column(f.Through.Table, f.Through.LeftKey)
		r.add(lvl.parent, vals, t)
		return true
	}
	if f.Kind == schema.BelongsTo || f.Through != nil {
		// Rows pointing at this one are found by a hop.
		return r.row(c, lvl)
	}
	// The row names its parent.
	switch vals, img := values(c, f.ForeignKey, false); img {
	case sent:
		t, _ := r.x.cat.column(lvl.table, f.ForeignKey)
		r.add(lvl.parent, vals, t)
		return true
	case lookup:
		// Look the row's parent up by the row's key.
		return r.row(c, lvl)
	}
	return false
}

// image says what a change tells of a column.
type image int

const (
	sent   image = iota // the values are in the change
	lookup              // unchanged and not sent: the row's current value is it
	lost                // not sent, and the row's current value may differ
)

// values returns the non-NULL values a change holds for column, before and
// after. An update's old image lacks a key column that did not change
// (Postgres sends the old key when it changes), and both images lack an
// unchanged TOASTed value.
func values(c Change, column string, key bool) ([]string, image) {
	var vals []string
	add := func(v *string) {
		if v != nil {
			vals = append(vals, *v)
		}
	}
	newV, inNew := c.New[column]
	oldV, inOld := c.Old[column]
	switch {
	case c.Op == Delete && !inOld:
		return nil, lost
	case c.Op == Delete:
		add(oldV)
	case c.Op == Update && inNew && !inOld && !key:
		// Without the old image a moved row's old parent is unknown.
		return nil, lost
	case !inNew && !inOld:
		return nil, lookup
	default:
		if inNew {
			add(newV)
		}
		if inOld {
			add(oldV)
		}
	}
	return vals, sent
}

func setKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// queryKeys runs sql selecting text over keys ($1). A key that does not
// convert to the type it is compared with cannot match a row: the keys are
// split until those are found and dropped.
func queryKeys(ctx context.Context, q Querier, sql string, keys []string) ([]string, error) {
	var out []string
	err := guard(ctx, q, func(q Querier) error {
		rows, err := q.Query(ctx, sql, keys)
		if err != nil {
			return err
		}
		out, err = collectText(rows)
		return err
	})
	if err == nil || !isDataError(err) {
		return out, err
	}
	if len(keys) == 1 {
		return nil, nil
	}
	mid := len(keys) / 2
	head, err := queryKeys(ctx, q, sql, keys[:mid])
	if err != nil {
		return nil, err
	}
	tail, err := queryKeys(ctx, q, sql, keys[mid:])
	return append(head, tail...), err
}

func collectText(rows pgx.Rows) ([]string, error) {
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func queryRow(ctx context.Context, q Querier, sql string, args []any, dst ...any) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	_, err = pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (struct{}, error) {
		return struct{}{}, row.Scan(dst...)
	})
	return err
}
