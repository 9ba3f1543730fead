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
