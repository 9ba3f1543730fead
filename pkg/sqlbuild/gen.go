package sqlbuild

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/flusso/flusso/pkg/schema"
)

// gen writes the SQL of one statement, collecting its arguments after the
// ones reserved for each call ($1 for the keys of a build).
type gen struct {
	x       *Index
	args    []any
	aliases int
	path    string // of the field being written, for errors
	err     error
	// joins collects the joins hoisted into the FROM of the query being
	// written; nil when that query cannot take any.
	joins *[]string
	// set, when the query being written reads the rows of a whole batch at
	// once, picks the keys of those rows: its joins and aggregates are then
	// tables grouped by key, one scan each per batch. nil when the query is
	// a subquery run once per parent row.
	set *keySet
	// groups are the grouped tables hoisted into the query being written
	// that more values over the same rows may join.
	groups map[groupRows]*grouped
}

// groupRows names the rows a grouped table reads: those of table whose
// column fk holds parentKey, a key of the parent's rows in the query, with
// no filter.
type groupRows struct{ table, fk, parentKey string }

// grouped is a table hoisted into a query: the rows of a related table in
// the documents of a batch, grouped by the parent's key (k), one column of
// values over them each. Aggregates over the rows a to-many join reads are
// columns of its table rather than tables of their own: one read of the rows
// instead of one per value, for the same values (the joins of its FROM add
// no rows).
type grouped struct {
	joins  *[]string // of the query, where its join is at
	at     int
	alias  string // of the table
	rows   string // alias of the related rows in its FROM
	key    string // column of the rows holding the parent's key
	from   string // FROM and WHERE of the rows
	values []string
	parent string // the parent's key in the query
}

// add makes value a column of the table and returns it.
func (t *grouped) add(value string) string {
	t.values = append(t.values, value)
	cols := make([]string, len(t.values))
	for i, v := range t.values {
		cols[i] = fmt.Sprintf("%s AS v%d", v, i)
	}
	(*t.joins)[t.at] = fmt.Sprintf(" LEFT JOIN (SELECT %s AS k, %s FROM %s GROUP BY %s) AS %s ON %s.k = %s",
		t.key, strings.Join(cols, ", "), t.from, t.key, t.alias, t.alias, t.parent)
	return fmt.Sprintf("%s.v%d", t.alias, len(t.values)-1)
}

// group hoists a grouped table of the rows (alias rows) read by from, its
// FROM and WHERE; key is their column holding parent, the parent's key.
// With gr set, later values over the same rows may join it.
func (g *gen) group(gr *groupRows, rows, key, from, parent string) *grouped {
	*g.joins = append(*g.joins, "")
	t := &grouped{joins: g.joins, at: len(*g.joins) - 1, alias: g.alias("g"), rows: rows, key: key, from: from, parent: parent}
	if gr != nil {
		g.groups[*gr] = t
	}
	return t
}

// keySet is a condition, to follow a key column, true for the keys of the
// rows of one level that the documents of a batch hold: " = ANY($1...)" or
// " IN (SELECT ...)". Exactly those: a grouped table renders no value of a
// row outside the documents, so a value that fails to render fails only
// the documents holding it. It is written when first used, since the
// arguments it binds must all appear in the statement.
type keySet struct {
	render func() string
	sql    string
}

func (s *keySet) String() string {
	if s.render != nil {
		s.sql, s.render = s.render(), nil
	}
	return s.sql
}

func newGen(x *Index, reserved int) *gen { return &gen{x: x, args: make([]any, reserved)} }

// fail records the first error; the SQL written after it is thrown away.
func (g *gen) fail(err error) string {
	if g.err == nil && g.path != "" {
		err = fmt.Errorf("field %s: %w", g.path, err)
	}
	if g.err == nil {
		g.err = err
	}
	return "NULL"
}

func (g *gen) param(v any) string {
	g.args = append(g.args, v)
	return "$" + strconv.Itoa(len(g.args))
}

func (g *gen) alias(prefix string) string {
	g.aliases++
	return prefix + strconv.Itoa(g.aliases)
}

func (g *gen) column(table, column string) pgType {
	t, err := g.x.cat.column(table, column)
	if err != nil {
		if missing, ok := err.(*MissingError); ok {
			missing.Field = g.path
		}
		g.fail(err)
	}
	return t
}

func col(alias, column string) string { return alias + "." + schema.QuoteIdent(column) }

// documentStatement selects the key and the document of every root row with
// a key in $1 that is a document: matching the root filters and not soft
// deleted. Keys without a row are tombstones.
func (x *Index) documentStatement(fields []*fnode) (*statement, error) {
	g := newGen(x, 1)
	const r = "r"
	pk := col(r, x.root.key)
	open := rawFree(x.def.Filters, fields)
	if sd := x.def.SoftDelete; sd != nil {
		open = open && rawFree(sd.When, nil)
	}
	keys := " = ANY($1::text[]::" + x.keyType.name + "[])"
	roots := &keySet{render: func() string {
		b := g.alias("b")
		cond := g.rootConditions(b)
		if cond == "" {
			return keys
		}
		return fmt.Sprintf(" IN (SELECT %s FROM %s AS %s WHERE %s%s%s)",
			col(b, x.root.key), x.table(x.root.table), b, col(b, x.root.key), keys, cond)
	}}
	obj, joins := g.scoped(open, roots, func() string { return g.object(fields, r, x.root) })
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT %s::text, %s FROM %s AS %s%s WHERE %s%s",
		pk, obj, x.table(x.root.table), r, joins, pk, keys)
	b.WriteString(g.rootConditions(r))
	if g.err != nil {
		return nil, g.err
	}
	return &statement{sql: b.String(), args: g.args}, nil
}

// rootConditions narrows the root rows to documents.
func (g *gen) rootConditions(alias string) string {
	x := g.x
	var b strings.Builder
	if c := x.softDeleteColumn(); c != "" {
		marker := col(alias, c)
		// A boolean marker deletes when true, any other when set.
		cond := marker + " IS NOT NULL"
		if g.column(x.root.table, c).fam == famBool {
			cond = marker + " IS TRUE"
		}
		// IS NOT TRUE: a when filter that is NULL does not delete.
		fmt.Fprintf(&b, " AND (%s%s) IS NOT TRUE", cond, g.filters(x.def.SoftDelete.When, alias, x.root.table))
	}
	b.WriteString(g.filters(x.def.Filters, alias, x.root.table))
	return b.String()
}

// maxPairs is how many key/value pairs one json_build_object takes:
// Postgres functions take at most 100 arguments.
const maxPairs = 50

// maxColumnName is the longest column name Postgres keeps whole
// (NAMEDATALEN - 1 bytes); a longer alias is cut.
const maxColumnName = 63

// object renders fields of the row alias (a row of lvl) as a JSON object.
//
// Where the query being written takes joins, the values are the columns of
// a row joined LATERAL, named for the fields, and the object is that row's
// row_to_json: it writes the same JSON as json_build_object for about a
// quarter less of Postgres's CPU on the benchmark's documents (see
// TestRenderCost); json_build_object converts every key, an argument like
// the values, at every call. The lateral row refers only to what the query
// already reads, so Postgres pulls it up: its values are computed for the
// rows the query returns, as before. A query that takes no joins (raw filter
// SQL could see the row's column names) or a name Postgres would cut keeps
// json_build_object.
func (g *gen) object(fields []*fnode, alias string, lvl *level) string {
	values := make([]string, len(fields))
	row := g.joins != nil && len(fields) > 0 && len(fields) <= maxPairs
	for i, n := range fields {
		values[i] = g.value(n, alias, lvl)
		row = row && len(n.def.Name) <= maxColumnName
	}
	if row {
		cols := make([]string, len(fields))
		for i, n := range fields {
			cols[i] = values[i] + " AS " + schema.QuoteIdent(n.def.Name)
		}
		// After the joins the values added, which it refers to.
		d := g.alias("d")
		*g.joins = append(*g.joins, fmt.Sprintf(" CROSS JOIN LATERAL (SELECT %s) AS %s", strings.Join(cols, ", "), d))
		return "row_to_json(" + d + ")"
	}
	pairs := make([]string, len(fields))
	for i, n := range fields {
		pairs[i] = quoteLiteral(n.def.Name) + ", " + values[i]
	}
	if len(pairs) <= maxPairs {
		return "json_build_object(" + strings.Join(pairs, ", ") + ")"
	}
	// Wider objects are merged as jsonb; key order is then jsonb's.
	var chunks []string
	for len(pairs) > 0 {
		n := min(maxPairs, len(pairs))
		chunks = append(chunks, "jsonb_build_object("+strings.Join(pairs[:n], ", ")+")")
		pairs = pairs[n:]
	}
	return "(" + strings.Join(chunks, " || ") + ")::json"
}

func (g *gen) value(n *fnode, alias string, lvl *level) string {
	defer func(path string) { g.path = path }(g.path)
	g.path = n.path
	f := &n.def
	switch k := f.Kind; {
	case k.IsScalar():
		return g.scalar(f, alias, lvl)
	case k == schema.Object:
		return g.object(n.children, alias, lvl)
	case k == schema.Geo:
		return g.geo(f, alias, lvl)
	case k == schema.Map:
		e := expr{sql: col(alias, f.Column), t: g.column(lvl.table, f.Column)}
		if e.t.fam == famString {
			e = cast(e, tJSON)
		}
		return e.sql
	case k == schema.Constant:
		v, err := json.Marshal(f.Value)
		if err != nil {
			return g.fail(fmt.Errorf("constant: %w", err))
		}
		return g.param(string(v)) + "::text::json"
	case k.IsJoin():
		return g.join(n, alias, lvl)
	case k.IsAggregate():
		return g.aggregate(n, alias, lvl)
	}
	return g.fail(fmt.Errorf("unknown type %q", f.Kind))
}

// scalar renders a column: transforms, then the declared type, then the
// default, then the form OpenSearch accepts.
func (g *gen) scalar(f *schema.Field, alias string, lvl *level) string {
	e := expr{sql: col(alias, f.Column), t: g.column(lvl.table, f.Column)}
	e = transformed(e, f.Transforms)
	e = declared(f.Kind, e)
	if f.Default != nil {
		if isStringKind(f.Kind) && e.t.fam != famString {
			e = cast(e, tText)
		}
		s, err := scalarText(f.Default)
		if err != nil {
			return g.fail(fmt.Errorf("default: %w", err))
		}
		e.sql = fmt.Sprintf("COALESCE(%s, %s::text::%s)", e.sql, g.param(s), e.t.name)
	}
	return natural(e)
}

func (g *gen) geo(f *schema.Field, alias string, lvl *level) string {
	if f.Lat == "" {
		// One column already holding a point OpenSearch reads: json
		// {"lat","lon"} or [lon, lat], or text "lat,lon".
		e := expr{sql: col(alias, f.Column), t: g.column(lvl.table, f.Column)}
		if e.t.fam != famJSON && e.t.fam != famString {
			e = cast(e, tText)
		}
		return e.sql
	}
	coord := func(c string) string {
		return natural(number(expr{sql: col(alias, c), t: g.column(lvl.table, c)}, tFloat8))
	}
	lat, lon := col(alias, f.Lat), col(alias, f.Lon)
	// A missing coordinate makes the point null, never {lat: null, ...}.
	return fmt.Sprintf("CASE WHEN %s IS NULL OR %s IS NULL THEN NULL ELSE json_build_object('lat', %s, 'lon', %s) END",
		lat, lon, coord(f.Lat), coord(f.Lon))
}

// scoped renders the select list of a query with a fresh list of hoisted
// joins, returned as text to follow the query's FROM item. set is the
// query's g.set. A query that is not open takes no joins: its belongs_to,
// joins and aggregates stay subqueries.
func (g *gen) scoped(open bool, set *keySet, render func() string) (sql, joins string) {
	outerJoins, outerSet, outerGroups := g.joins, g.set, g.groups
	defer func() { g.joins, g.set, g.groups = outerJoins, outerSet, outerGroups }()
	var js []string
	g.joins, g.set, g.groups = nil, nil, nil
	if open {
		g.joins, g.set, g.groups = &js, set, map[groupRows]*grouped{}
	}
	sql = render()
	return sql, strings.Join(js, "")
}

// below is the set of the keys of n's related rows in the documents of the
// batch, one level down from g.set, the set of lvl's keys; nil when g.set is.
func (g *gen) below(n *fnode, lvl *level) *keySet {
	up := g.set
	if up == nil {
		return nil
	}
	f := &n.def
	rel := n.rel
	return &keySet{render: func() string {
		b := g.alias("b")
		related, key := g.x.table(rel.table), col(b, rel.key)
		filters := g.filters(f.Filters, b, rel.table)
		switch f.Kind {
		case schema.BelongsTo:
			p := g.alias("b")
			return fmt.Sprintf(" IN (SELECT %s FROM %s AS %s WHERE %s IN (SELECT %s FROM %s AS %s WHERE %s%s)%s)",
				key, related, b, key, col(p, f.Column), g.x.table(lvl.table), p, col(p, lvl.key), up, filters)
		case schema.ManyToMany:
			j := g.alias("b")
			return fmt.Sprintf(" IN (SELECT %s FROM %s AS %s JOIN %s AS %s ON %s = %s WHERE %s%s%s)",
				key, related, b, g.x.table(f.Through.Table), j, col(j, f.Through.RightKey), key,
				col(j, f.Through.LeftKey), up, filters)
		case schema.HasOne:
			// Only the first row of each parent is in a document.
			fk := col(b, f.ForeignKey)
			return fmt.Sprintf(" IN (SELECT DISTINCT ON (%s) %s FROM %s AS %s WHERE %s%s%s ORDER BY %s, %s)",
				fk, key, related, b, fk, up, filters, fk, g.order(f, b, rel.key))
		}
		return fmt.Sprintf(" IN (SELECT %s FROM %s AS %s WHERE %s%s%s)",
			key, related, b, col(b, f.ForeignKey), up, filters)
	}}
}

// grouping reports whether the query being written reads a whole batch and
// takes joins: its to-many joins and aggregates are grouped tables.
func (g *gen) grouping() bool { return g.joins != nil && g.set != nil }

// hoist joins sql, a table of one row per key (k) holding a value (v),
// into the query being written and returns its alias; parentKey picks the
// row.
func (g *gen) hoist(sql, parentKey string) string {
	d := g.alias("g")
	*g.joins = append(*g.joins, fmt.Sprintf(" LEFT JOIN (%s) AS %s ON %s.k = %s", sql, d, d, parentKey))
	return d
}

// rawFree reports whether neither fs nor any field below nodes has a raw
// filter. Raw SQL may name columns unqualified, which a table joined into
// the scope it sees could make ambiguous or capture.
func rawFree(fs []schema.Filter, nodes []*fnode) bool {
	for _, f := range fs {
		if f.Raw != "" {
			return false
		}
	}
	for _, n := range nodes {
		if !rawFree(n.def.Filters, n.children) {
			return false
		}
	}
	return true
}

// join renders related rows as an object (to-one) or an array (to-many).
func (g *gen) join(n *fnode, alias string, lvl *level) string {
	f := &n.def
	rel := n.rel
	a := g.alias("a")
	filters := g.filters(f.Filters, a, rel.table)
	from := g.x.table(rel.table) + " AS " + a
	open := rawFree(f.Filters, n.children)
	if f.Kind == schema.BelongsTo {
		on := fmt.Sprintf("%s = %s%s", col(a, rel.key), col(alias, f.Column), filters)
		if g.joins != nil && g.x.cat.isPrimaryKey(rel.table, rel.key) {
			// At most one row matches, so a join in the parent's query gives
			// what the subquery does, cheaper than a subplan per value. It
			// goes in before the object, whose own joins refer to it; a row
			// filtered out is null, as in the subquery.
			if g.grouping() {
				// The query runs once per batch: the planner may hash the
				// related table or look rows up, whichever is cheaper.
				*g.joins = append(*g.joins, fmt.Sprintf(" LEFT JOIN %s ON %s", from, on))
			} else {
				// Run once per parent row, OFFSET 0 keeps it a lookup by key:
				// pulled up into a plain join, a small related table is
				// hashed whole for every row of a to-many subquery.
				*g.joins = append(*g.joins, fmt.Sprintf(" LEFT JOIN LATERAL (SELECT * FROM %s WHERE %s OFFSET 0) AS %s ON true", from, on, a))
			}
			// The object is written in the parent's query, picking the
			// related keys of the batch for its own grouped joins.
			outer := g.set
			g.set = g.below(n, lvl)
			obj := g.object(n.children, a, rel)
			g.set = outer
			return fmt.Sprintf("CASE WHEN %s IS NULL THEN NULL ELSE %s END", col(a, rel.key), obj)
		}
		obj, joins := g.scoped(open, nil, func() string { return g.object(n.children, a, rel) })
		return fmt.Sprintf("(SELECT %s FROM %s%s WHERE %s LIMIT 1)", obj, from, joins, on)
	}
	// key is the column of the related rows (or of their junction rows)
	// holding the parent's key.
	var key string
	if f.Kind == schema.ManyToMany {
		j := g.alias("j")
		from = fmt.Sprintf("%s JOIN %s AS %s ON %s = %s",
			from, g.x.table(f.Through.Table), j, col(j, f.Through.RightKey), col(a, rel.key))
		key = col(j, f.Through.LeftKey)
	} else {
		key = col(a, f.ForeignKey)
	}
	order := g.order(f, a, rel.key)
	if g.grouping() && (f.Kind == schema.HasOne || f.Limit == 0) {
		obj, joins := g.scoped(open, g.below(n, lvl), func() string { return g.object(n.children, a, rel) })
		where := key + g.set.String() + filters
		if f.Kind == schema.HasOne {
			d := g.hoist(fmt.Sprintf("SELECT DISTINCT ON (%s) %s AS k, %s AS v FROM %s%s WHERE %s ORDER BY %s, %s",
				key, key, obj, from, joins, where, key, order), col(alias, lvl.key))
			return d + ".v"
		}
		var gr *groupRows
		if f.Kind == schema.HasMany && len(f.Filters) == 0 {
			gr = &groupRows{rel.table, f.ForeignKey, col(alias, lvl.key)}
		}
		t := g.group(gr, a, key, from+joins+" WHERE "+where, col(alias, lvl.key))
		return "coalesce(" + t.add(fmt.Sprintf("json_agg(%s ORDER BY %s)", obj, order)) + ", '[]'::json)"
	}
	obj, joins := g.scoped(open, nil, func() string { return g.object(n.children, a, rel) })
	cond := fmt.Sprintf("%s = %s%s", key, col(alias, lvl.key), filters)
	if f.Kind == schema.HasOne {
		return fmt.Sprintf("(SELECT %s FROM %s%s WHERE %s ORDER BY %s LIMIT 1)", obj, from, joins, cond, order)
	}
	if f.Limit > 0 {
		// Limit the rows first, then aggregate them in the same order. The
		// joins go outside: they add no rows, but would be made for rows the
		// limit drops.
		from = fmt.Sprintf("(SELECT %s.* FROM %s WHERE %s ORDER BY %s LIMIT %d) AS %s%s",
			a, from, cond, order, f.Limit, a, joins)
	} else {
		from += joins + " WHERE " + cond
	}
	return fmt.Sprintf("(SELECT coalesce(json_agg(%s ORDER BY %s), '[]'::json) FROM %s)", obj, order, from)
}

// order is a join's order_by, ended by the related key so that the order,
// and therefore the document, is the same at every build.
func (g *gen) order(f *schema.Field, alias, key string) string {
	terms := make([]string, 0, len(f.OrderBy)+1)
	for _, o := range f.OrderBy {
		dir := "ASC"
		if o.Direction == schema.Desc {
			dir = "DESC"
		}
		terms = append(terms, col(alias, o.Column)+" "+dir)
	}
	return strings.Join(append(terms, col(alias, key)), ", ")
}

// aggregate renders one value computed over related rows.
func (g *gen) aggregate(n *fnode, alias string, lvl *level) string {
	f := &n.def
	rel := n.rel
	// gr, when set, is the rows of a grouped table the value may join.
	var gr *groupRows
	var shared *grouped
	if g.grouping() && f.Through == nil && len(f.Filters) == 0 {
		gr = &groupRows{rel.table, f.ForeignKey, col(alias, lvl.key)}
		shared = g.groups[*gr]
	}
	a := g.alias("a")
	if shared != nil {
		a = shared.rows
	}
	filters := g.filters(f.Filters, a, rel.table)
	// from holds the aggregated rows, key the column holding the parent's key.
	from := g.x.table(rel.table) + " AS " + a
	key := col(a, f.ForeignKey)
	var fn string
	if f.Through != nil {
		j := g.alias("j")
		key = col(j, f.Through.LeftKey)
		if f.Kind == schema.IDs && len(f.Filters) == 0 {
			// The junction already holds the related keys.
			right := expr{sql: col(j, f.Through.RightKey), t: g.column(f.Through.Table, f.Through.RightKey)}
			from = g.x.table(f.Through.Table) + " AS " + j
			fn = fmt.Sprintf("coalesce(json_agg(%s ORDER BY %s), '[]'::json)", idElement(f.ElementType, right), right.sql)
		} else {
			if rel.key == "" {
				return g.fail(g.pkError(rel.table))
			}
			from = fmt.Sprintf("%s JOIN %s AS %s ON %s = %s",
				from, g.x.table(f.Through.Table), j, col(j, f.Through.RightKey), col(a, rel.key))
		}
	}
	// none is the value over no rows where it is not NULL.
	none := ""
	switch f.Kind {
	case schema.Count:
		fn, none = "count(*)", "0"
	case schema.Sum, schema.Min, schema.Max:
		t := g.column(rel.table, f.Column)
		if f.Kind == schema.Sum {
			t = sumType(t)
		}
		fn = natural(declared(f.ValueType, expr{sql: string(f.Kind) + "(" + col(a, f.Column) + ")", t: t}))
	case schema.Avg:
		fn = natural(expr{sql: "avg(" + col(a, f.Column) + ")::float8", t: tFloat8})
	case schema.IDs:
		none = "'[]'::json"
		if fn != "" {
			break
		}
		if rel.key == "" {
			return g.fail(g.pkError(rel.table))
		}
		k := expr{sql: col(a, rel.key), t: g.column(rel.table, rel.key)}
		fn = fmt.Sprintf("coalesce(json_agg(%s ORDER BY %s), '[]'::json)", idElement(f.ElementType, k), k.sql)
	default:
		return g.fail(fmt.Errorf("unknown aggregate %q", f.Kind))
	}
	if !g.grouping() {
		return fmt.Sprintf("(SELECT %s FROM %s WHERE %s = %s%s)", fn, from, key, col(alias, lvl.key), filters)
	}
	if shared == nil {
		shared = g.group(gr, a, key, fmt.Sprintf("%s WHERE %s%s%s", from, key, g.set.String(), filters), col(alias, lvl.key))
	}
	v := shared.add(fn)
	if none == "" {
		return v
	}
	return "coalesce(" + v + ", " + none + ")"
}

func (g *gen) pkError(table string) error {
	_, err := g.x.cat.primaryKey(table)
	return err
}

// idElement renders a related key as an ids element.
func idElement(k schema.Kind, e expr) string {
	if k == schema.Long {
		return narrowInt(e, tInt8).sql
	}
	return declared(schema.Keyword, e).sql
}

// sumType is the type of sum() over t.
func sumType(t pgType) pgType {
	switch t.base {
	case "int2", "int4":
		return tInt8
	case "int8", "numeric":
		return tNumeric
	case "float4":
		return tFloat4
	case "float8":
		return tFloat8
	case "interval":
		return tInterval
	}
	return t
}

var comparisons = map[schema.Op]string{
	schema.OpEq: " = ", schema.OpNeq: " <> ", schema.OpLt: " < ",
	schema.OpLte: " <= ", schema.OpGt: " > ", schema.OpGte: " >= ",
}

// filters renders " AND (condition)" for each filter on rows alias of table.
// Operands are bound parameters cast to the column's type.
func (g *gen) filters(fs []schema.Filter, alias, table string) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(" AND (")
		b.WriteString(g.filter(f, alias, table))
		b.WriteString(")")
	}
	return b.String()
}

func (g *gen) filter(f schema.Filter, alias, table string) string {
	if f.Raw != "" {
		return f.Raw
	}
	c := col(alias, f.Column)
	t := g.column(table, f.Column)
	texts := make([]string, len(f.Values))
	for i, v := range f.Values {
		s, err := scalarText(v)
		if err != nil {
			return g.fail(fmt.Errorf("filter on %s.%s: %w", table, f.Column, err))
		}
		texts[i] = s
	}
	arity := func(n int) bool {
		if len(texts) != n {
			g.fail(fmt.Errorf("filter on %s.%s: %s takes %d values, not %d", table, f.Column, f.Op, n, len(texts)))
			return false
		}
		return true
	}
	operand := func(i int) string { return g.param(texts[i]) + "::text::" + t.name }
	switch f.Op {
	case schema.OpIsNull:
		return c + " IS NULL"
	case schema.OpIsNotNull:
		return c + " IS NOT NULL"
	case schema.OpIn, schema.OpNotIn:
		list := g.param(texts) + "::text[]::" + t.name + "[]"
		if f.Op == schema.OpIn {
			return c + " = ANY(" + list + ")"
		}
		return c + " <> ALL(" + list + ")"
	case schema.OpBetween:
		if !arity(2) {
			return "false"
		}
		return c + " BETWEEN " + operand(0) + " AND " + operand(1)
	case schema.OpLike, schema.OpIlike:
		if !arity(1) {
			return "false"
		}
		if t.fam != famString {
			c += "::text"
		}
		op := " LIKE "
		if f.Op == schema.OpIlike {
			op = " ILIKE "
		}
		return c + op + g.param(texts[0]) + "::text"
	}
	op, ok := comparisons[f.Op]
	if !ok {
		return g.fail(fmt.Errorf("filter on %s.%s: unknown operator %q", table, f.Column, f.Op))
	}
	if !arity(1) {
		return "false"
	}
	return c + op + operand(0)
}
