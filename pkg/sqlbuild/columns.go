package sqlbuild

import "github.com/flusso/flusso/pkg/schema"

// ChangeColumns names the columns of table that Affected reads from a change
// of it: the key of each level it is read at, the foreign key naming a
// parent, and a junction's left key. Other columns of a change cost bytes on
// the way and tell Affected nothing, since documents are built from current
// data. Nil when the index does not read the table. Call it after Prepare,
// which learns the key of an aggregated table.
func (x *Index) ChangeColumns(schemaName, table string) []string {
	if !x.Reads(schemaName, table) {
		return nil
	}
	set := map[string]bool{}
	if table == x.root.table {
		set[x.root.key] = true
	}
	for _, o := range x.occurs[table] {
		f := &o.lvl.field.def
		switch {
		case o.junction:
			set[f.Through.LeftKey] = true
		case f.Kind == schema.BelongsTo || f.Through != nil:
			set[o.lvl.key] = true
		default:
			// The foreign key names the parent; the key looks it up when
			// the foreign key was not sent (an unchanged TOASTed value).
			set[f.ForeignKey] = true
			set[o.lvl.key] = true
		}
	}
	delete(set, "") // an aggregated table without a usable primary key
	return setKeys(set)
}

// ReadColumns names the columns of table whose values can change a
// document of the index: a field's column, a key or foreign key a join or
// aggregate matches rows on, a filter, soft-delete, order_by or aggregated
// column, and everything ChangeColumns names. An update that changes none
// of them leaves every document as it was. anyColumn is true when that
// cannot be told: the index has a raw SQL filter, which may read any
// column. Nil and false when the index does not read the table. Call it
// after Prepare, which learns the key of an aggregated table.
func (x *Index) ReadColumns(schemaName, table string) (cols []string, anyColumn bool) {
	if !x.Reads(schemaName, table) {
		return nil, false
	}
	if x.rawFilters() {
		return nil, true
	}
	r := readSet{}
	for _, c := range x.ChangeColumns(schemaName, table) {
		r.add(table, c)
	}
	root := x.root.table
	r.add(root, x.root.key)
	r.filters(root, x.def.Filters)
	if sd := x.def.SoftDelete; sd != nil {
		r.add(root, x.softDeleteColumn())
		r.filters(root, sd.When)
	}
	r.fields(x.fields, x.root)
	return setKeys(r[table]), false
}

// readSet is the columns read, by table.
type readSet map[string]map[string]bool

func (r readSet) add(table, column string) {
	if column == "" {
		return
	}
	if r[table] == nil {
		r[table] = map[string]bool{}
	}
	r[table][column] = true
}

func (r readSet) filters(table string, fs []schema.Filter) {
	for _, f := range fs {
		r.add(table, f.Column)
	}
}

// fields adds what nodes read from the rows of lvl, and below them.
func (r readSet) fields(nodes []*fnode, lvl *level) {
	for _, n := range nodes {
		f := &n.def
		switch k := f.Kind; {
		case k == schema.Object:
			r.fields(n.children, lvl)
		case k == schema.Constant:
		case k == schema.Geo:
			r.add(lvl.table, f.Column)
			r.add(lvl.table, f.Lat)
			r.add(lvl.table, f.Lon)
		case k.IsJoin(), k.IsAggregate():
			rel := n.rel
			r.add(lvl.table, lvl.key) // the parent's key the related rows point at
			r.add(rel.table, rel.key)
			r.add(rel.table, f.ForeignKey)
			if f.Kind == schema.BelongsTo {
				r.add(lvl.table, f.Column) // the parent's foreign key
			} else {
				r.add(rel.table, f.Column) // an aggregated column
			}
			if t := f.Through; t != nil {
				r.add(t.Table, t.LeftKey)
				r.add(t.Table, t.RightKey)
			}
			r.filters(rel.table, f.Filters)
			for _, o := range f.OrderBy {
				r.add(rel.table, o.Column)
			}
			r.fields(n.children, rel)
		default: // scalars, maps, custom
			r.add(lvl.table, f.Column)
		}
	}
}

// rawFilters reports whether any filter of the index is raw SQL.
func (x *Index) rawFilters() bool {
	if !rawFree(x.def.Filters, x.fields) {
		return true
	}
	return x.def.SoftDelete != nil && !rawFree(x.def.SoftDelete.When, nil)
}
