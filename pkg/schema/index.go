package schema

import "gopkg.in/yaml.v3"

var indexKeys = []string{"version", "table", "schema", "primary_key", "doc_id", "soft_delete", "filters", "fields"}

// index reads the top level of a schema file.
func (p *parser) index(root *yaml.Node) *Index {
	o, ok := p.mapping(root, "", "a mapping of version, table, fields and the other schema keys")
	if !ok {
		return nil
	}
	p.checkKeys(o, indexKeys, "a schema")
	ix := &Index{File: p.file, Schema: "public"}

	if e, ok := p.require(o, "version", "add `version: 1`"); ok {
		if v, ok := p.integer(e); ok {
			if v != 1 {
				p.errorf(e.val, e.path, "unsupported version %d: only 1 is accepted", v)
			}
			ix.Version = v
		}
	}
	if e, ok := p.require(o, "table", "the root table, e.g. `table: users`"); ok {
		ix.Table, _ = p.ident(e)
	}
	if e, ok := o.get("schema"); ok {
		ix.Schema, _ = p.ident(e)
	}
	if e, ok := o.get("primary_key"); ok {
		ix.PrimaryKey, _ = p.ident(e)
	}
	if e, ok := o.get("doc_id"); ok {
		p.errorf(e.key, e.path, "not supported: the document _id is always the value of primary_key; remove doc_id")
	}
	if e, ok := o.get("filters"); ok {
		ix.Filters = p.filters(e)
	}
	if e, ok := p.require(o, "fields", "the list of document fields"); ok {
		ix.Fields = p.fields(e.val, e.path, 0)
	}
	if e, ok := o.get("soft_delete"); ok {
		ix.SoftDelete = p.softDelete(e, ix.Fields)
	}
	if r := p.related; ix.PrimaryKey == "" && r != nil {
		p.errorAt(r.line, r.path,
			"%s reads another table, which needs the root table's primary key: add `primary_key: <column>` at the top level", r.what)
	}
	return ix
}

// require returns the value of a mandatory key, reporting it when missing.
func (p *parser) require(o *object, key, hint string) (entry, bool) {
	e, ok := o.get(key)
	if !ok {
		p.errorf(o.node, o.path, "missing %s: %s", key, hint)
	}
	return e, ok
}

var softDeleteKeys = []string{"column", "field", "when"}

// softDelete reads soft_delete; fields are the top-level fields a `field`
// marker must name.
func (p *parser) softDelete(e entry, fields []Field) *SoftDelete {
	o, ok := p.mapping(e.val, e.path, "a mapping like `{column: deleted}` or `{field: deleted}`")
	if !ok {
		return nil
	}
	p.checkKeys(o, softDeleteKeys, "soft_delete")
	sd := &SoftDelete{}
	col, hasCol := o.get("column")
	fld, hasFld := o.get("field")
	switch {
	case hasCol && hasFld:
		p.errorf(fld.key, o.path, "takes column or field, not both")
	case !hasCol && !hasFld:
		p.errorf(o.node, o.path, "needs column (a column of the root table) or field (a top-level document field)")
	case hasCol:
		sd.Column, _ = p.ident(col)
	default:
		if name, ok := p.fieldName(fld); ok {
			sd.Field = name
			// Without a list of fields, that is reported already.
			if fields != nil && !hasField(fields, name) {
				p.errorf(fld.val, fld.path, "no top-level field is named %q", name)
			}
		}
	}
	if w, ok := o.get("when"); ok {
		sd.When = p.filters(w)
	}
	return sd
}

func hasField(fields []Field, name string) bool {
	for _, f := range fields {
		if f.Name == name {
			return true
		}
	}
	return false
}
