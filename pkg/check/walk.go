package check

import (
	"fmt"
	"slices"

	"github.com/flusso/flusso/pkg/schema"
)

// walker checks the fields of one index against the catalog.
type walker struct {
	cat      catalog
	report   *Report
	index    string
	file     string
	pgSchema string
	missing  map[string]bool // tables already reported missing
}

// at is where a finding points: a field and its line.
type at struct {
	path string
	line int
}

func (w *walker) add(sev Severity, where at, table, col, format string, args ...any) {
	w.report.add(Finding{
		Severity: sev, Scope: ScopeSchema, Index: w.index, File: w.file, Line: where.line, Field: where.path,
		Table: table, Column: col, Message: fmt.Sprintf(format, args...),
	})
}

func (w *walker) ref(table string) schema.TableRef {
	return schema.TableRef{Schema: w.pgSchema, Name: table}
}

func (w *walker) qualified(table string) string { return w.pgSchema + "." + table }

// table reports whether table exists, reporting it once when it does not.
func (w *walker) table(where at, table string) bool {
	if _, ok := w.cat[w.ref(table)]; ok {
		return true
	}
	if !w.missing[table] {
		w.missing[table] = true
		w.add(Error, where, w.qualified(table), "", "table %s does not exist", w.qualified(table))
	}
	return false
}

// column returns a column of table, reporting it when it does not exist.
// A missing table was reported already and is not reported again.
func (w *walker) column(where at, table, name, role string) (column, bool) {
	cols, ok := w.cat[w.ref(table)]
	if !ok {
		w.table(where, table)
		return column{}, false
	}
	c, ok := cols[name]
	if !ok {
		w.add(Error, where, w.qualified(table), name, "%s: column %s.%s does not exist", role, w.qualified(table), name)
	}
	return c, ok
}

func (w *walker) root(ix *schema.Index) {
	var where at // the top of the file
	if !w.table(where, ix.Table) {
		return // every column would be reported missing too
	}
	if ix.PrimaryKey != "" {
		w.column(where, ix.Table, ix.PrimaryKey, "primary_key")
	}
	if sd := ix.SoftDelete; sd != nil {
		if sd.Column != "" {
			w.column(where, ix.Table, sd.Column, "soft_delete")
		}
		w.filters(where, ix.Table, sd.When)
	}
	w.filters(where, ix.Table, ix.Filters)
	w.fields(ix.Fields, "", ix.Table, ix.PrimaryKey)
}

func (w *walker) filters(where at, table string, fs []schema.Filter) {
	for _, f := range fs {
		if f.Column != "" {
			w.column(where, table, f.Column, "filter")
		}
	}
}

// fields checks fields read from rows of table, whose rows are identified
// by key ("" when unknown).
func (w *walker) fields(fields []schema.Field, prefix, table, key string) {
	for i := range fields {
		f := &fields[i]
		where := at{path: prefix + f.Name, line: f.Line}
		switch k := f.Kind; {
		case k.IsScalar():
			w.scalar(where, table, f)
		case k == schema.Object:
			w.fields(f.Fields, where.path+".", table, key)
		case k == schema.Map:
			if c, ok := w.column(where, table, f.Column, "map"); ok {
				w.typed(where, table, f.Column, schema.JSON, nil, c)
				w.required(where, table, f.Column, f, c)
			}
		case k == schema.Geo:
			w.geo(where, table, f)
		case k.IsJoin():
			w.join(where, table, key, f)
		case k.IsAggregate():
			w.aggregate(where, table, key, f)
		}
	}
}

func (w *walker) scalar(where at, table string, f *schema.Field) {
	c, ok := w.column(where, table, f.Column, string(f.Kind))
	if !ok {
		return
	}
	w.typed(where, table, f.Column, f.Kind, f.PostgresTypes, c)
	w.required(where, table, f.Column, f, c)
}

// typed reports a column whose type a kind does not read.
func (w *walker) typed(where at, table, col string, k schema.Kind, custom []string, c column) {
	if ok, want := accepts(k, custom, c); !ok {
		w.add(Error, where, w.qualified(table), col, "%s reads %s.%s of type %s; %s needs %s",
			k, w.qualified(table), col, c.typ, k, want)
	}
}

// required warns about a field declared required over a nullable column
// without a default: a NULL would make the document fail.
func (w *walker) required(where at, table, col string, f *schema.Field, c column) {
	if f.Required && f.Default == nil && c.nullable {
		w.add(Warning, where, w.qualified(table), col,
			"declared required, but %s.%s is nullable: a NULL fails its document (add NOT NULL, a default, or drop required)",
			w.qualified(table), col)
	}
}

func (w *walker) geo(where at, table string, f *schema.Field) {
	if f.Lat == "" {
		c, ok := w.column(where, table, f.Column, "geo")
		if !ok {
			return
		}
		if !slices.Contains(jsonTypes, c.base) && !slices.Contains(stringTypes, c.base) {
			w.add(Error, where, w.qualified(table), f.Column, "geo reads %s.%s of type %s; a one-column geo needs json, jsonb or text",
				w.qualified(table), f.Column, c.typ)
		}
		w.required(where, table, f.Column, f, c)
		return
	}
	for _, col := range []string{f.Lat, f.Lon} {
		c, ok := w.column(where, table, col, "geo")
		if !ok {
			continue
		}
		if !slices.Contains(numericTypes, c.base) {
			w.add(Error, where, w.qualified(table), col, "geo coordinate %s.%s has type %s; a number is needed",
				w.qualified(table), col, c.typ)
		}
		w.required(where, table, col, f, c)
	}
}

// join checks the keys linking the current rows (of table, identified by
// key) to the related rows, then the projection.
func (w *walker) join(where at, table, key string, f *schema.Field) {
	if !w.table(where, f.Table) {
		return
	}
	pk, pkOK := w.column(where, f.Table, f.PrimaryKey, "primary_key")
	switch f.Kind {
	case schema.BelongsTo:
		fk, ok := w.column(where, table, f.Column, "belongs_to column")
		if ok && pkOK {
			w.comparable(where, table, f.Column, fk, f.Table, f.PrimaryKey, pk)
		}
		if ok && f.Required && fk.nullable {
			w.add(Warning, where, w.qualified(table), f.Column,
				"declared required, but %s.%s is nullable: a NULL makes the object null", w.qualified(table), f.Column)
		}
	case schema.HasOne, schema.HasMany:
		w.backReference(where, table, key, f.Table, f.ForeignKey, "foreign_key")
	case schema.ManyToMany:
		w.through(where, table, key, f, pk, pkOK)
	}
	w.filters(where, f.Table, f.Filters)
	for _, o := range f.OrderBy {
		w.column(where, f.Table, o.Column, "order_by")
	}
	w.fields(f.Fields, where.path+".", f.Table, f.PrimaryKey)
}

// backReference checks a column of related pointing back at the current
// row's key.
func (w *walker) backReference(where at, table, key, related, col, role string) {
	fk, ok := w.column(where, related, col, role)
	if !ok || key == "" {
		return
	}
	if pk, ok := w.cat[w.ref(table)][key]; ok {
		w.comparable(where, related, col, fk, table, key, pk)
	}
}

func (w *walker) through(where at, table, key string, f *schema.Field, pk column, pkOK bool) {
	t := f.Through
	if !w.table(where, t.Table) {
		return
	}
	w.backReference(where, table, key, t.Table, t.LeftKey, "through left_key")
	right, ok := w.column(where, t.Table, t.RightKey, "through right_key")
	if ok && pkOK {
		w.comparable(where, t.Table, t.RightKey, right, f.Table, f.PrimaryKey, pk)
	}
}

// comparable reports join keys whose values can never be equal.
func (w *walker) comparable(where at, t1, c1 string, a column, t2, c2 string, b column) {
	if keyClass(a) != keyClass(b) {
		w.add(Error, where, w.qualified(t1), c1, "%s.%s (%s) is joined to %s.%s (%s): the types cannot be compared",
			w.qualified(t1), c1, a.typ, w.qualified(t2), c2, b.typ)
	}
}

func (w *walker) aggregate(where at, table, key string, f *schema.Field) {
	if !w.table(where, f.Table) {
		return
	}
	if f.Through != nil {
		t := f.Through
		if w.table(where, t.Table) {
			w.backReference(where, table, key, t.Table, t.LeftKey, "through left_key")
			w.column(where, t.Table, t.RightKey, "through right_key")
		}
	} else {
		w.backReference(where, table, key, f.Table, f.ForeignKey, "foreign_key")
	}
	w.filters(where, f.Table, f.Filters)
	if f.Column == "" {
		return
	}
	c, ok := w.column(where, f.Table, f.Column, string(f.Kind))
	if !ok {
		return
	}
	switch f.Kind {
	case schema.Sum, schema.Avg:
		if !slices.Contains(numericTypes, c.base) {
			w.add(Error, where, w.qualified(f.Table), f.Column, "%s over %s.%s of type %s; a number is needed",
				f.Kind, w.qualified(f.Table), f.Column, c.typ)
		}
	case schema.Min, schema.Max:
		if f.ValueType != "" {
			w.typed(where, f.Table, f.Column, f.ValueType, nil, c)
		}
	}
}
