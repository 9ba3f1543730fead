package capture

import (
	"bytes"

	"github.com/jackc/pglogrepl"

	"github.com/flusso/flusso/pkg/schema"
)

// readColumns gathers, per table, the columns whose change can alter a
// document of any index (sqlbuild's ReadColumns). A table missing from the
// result has no such bound (a raw filter may read any column): none of its
// updates is skipped. The indexes must be prepared.
func (c *Capture) readColumns() map[schema.TableRef]map[string]bool {
	out := map[schema.TableRef]map[string]bool{}
	for t := range c.tables {
		cols := map[string]bool{}
		bounded := true
		for _, ix := range c.cfg.Indexes {
			names, anyColumn := c.keys[ix.Name].ReadColumns(t.Schema, t.Name)
			bounded = bounded && !anyColumn
			for _, n := range names {
				cols[n] = true
			}
		}
		if bounded {
			out[t] = cols
		}
	}
	return out
}

// unread reports whether an update changed none of the columns in read,
// so that no document can change and nothing needs publishing. It needs
// the whole old row (oldType 'O', REPLICA IDENTITY FULL: related tables
// have it, a root table when its owner set it): without it, or with only
// the key (which then changed), it cannot tell and says false. A column
// the new row marks unchanged ('u', a TOASTed value not rewritten) did
// not change.
func unread(rel *pglogrepl.RelationMessage, oldType uint8, old, new *pglogrepl.TupleData, read map[string]bool) bool {
	if read == nil || oldType != 'O' || old == nil || new == nil ||
		len(old.Columns) != len(rel.Columns) || len(new.Columns) != len(rel.Columns) {
		return false
	}
	for i, col := range rel.Columns {
		if !read[col.Name] {
			continue
		}
		o, n := old.Columns[i], new.Columns[i]
		if n.DataType == pglogrepl.TupleDataTypeToast {
			continue
		}
		if o.DataType != n.DataType || !bytes.Equal(o.Data, n.Data) {
			return false
		}
	}
	return true
}

// skipped reports whether an update of a table the indexes read changed no
// column they read, counting it when so.
func (c *Capture) skipped(ref schema.TableRef, rel *pglogrepl.RelationMessage, oldType uint8, old, new *pglogrepl.TupleData) bool {
	if !unread(rel, oldType, old, new, c.read[ref]) {
		return false
	}
	c.cfg.Skipped.Add(ref.Schema+"."+ref.Name, 1)
	return true
}
