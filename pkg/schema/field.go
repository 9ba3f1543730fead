package schema

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/flusso/flusso/pkg/suggest"
)

// allKinds lists every field type key, in the order the format documents them.
var allKinds = []Kind{
	Text, Identifier, Keyword, Enum, UUID, Boolean, Short, Integer, Long, Float, Double,
	Decimal, Date, Timestamp, Binary, JSON, Custom,
	Geo, Object, Map,
	BelongsTo, HasOne, HasMany, ManyToMany,
	Count, Sum, Avg, Min, Max, IDs,
	Constant,
}

func isKind(s string) bool { return slices.Contains(allKinds, Kind(s)) }

// sibling says which kinds take a sibling key; only says so in words, for
// "X does not take Y (only Z takes it)".
type sibling struct {
	on   func(Kind) bool
	only string
}

func kinds(ks ...Kind) func(Kind) bool { return func(k Kind) bool { return slices.Contains(ks, k) } }

func isJoinOrAggregate(k Kind) bool { return k.IsJoin() || k.IsAggregate() }

// siblingKeys lists the sibling keys in the order messages name them.
var siblingKeys = []string{
	"required", "column", "options", "transforms", "default", "variants", "postgres", "opensearch",
	"lat", "lon", "values", "value", "fields", "table", "primary_key", "foreign_key", "through",
	"filters", "order_by", "limit", "value_type", "element_type",
}

var siblings = map[string]sibling{
	"required": {func(k Kind) bool { return k.IsScalar() || k == Geo || k == Map || k == BelongsTo || k == HasOne },
		"only scalars, geo, map, belongs_to and has_one take it"},
	"column": {func(k Kind) bool { return k.IsScalar() || kinds(Geo, Map, BelongsTo, Sum, Avg, Min, Max)(k) },
		"only scalars, geo, map, belongs_to, sum, avg, min and max take it"},
	"options":      {func(Kind) bool { return true }, ""},
	"transforms":   {Kind.IsScalar, "only scalar types take it"},
	"default":      {Kind.IsScalar, "only scalar types take it"},
	"variants":     {kinds(Enum), "only enum takes it"},
	"postgres":     {kinds(Custom), "only custom takes it"},
	"opensearch":   {kinds(Custom), "only custom takes it"},
	"lat":          {kinds(Geo), "only geo takes it"},
	"lon":          {kinds(Geo), "only geo takes it"},
	"values":       {kinds(Map), "only map takes it"},
	"value":        {kinds(Constant), "only constant takes it"},
	"fields":       {func(k Kind) bool { return k == Object || k.IsJoin() }, "only object and joins take it"},
	"table":        {isJoinOrAggregate, "only joins and aggregates take it"},
	"primary_key":  {Kind.IsJoin, "only joins take it"},
	"foreign_key":  {func(k Kind) bool { return k == HasOne || k == HasMany || k.IsAggregate() }, "only has_one, has_many and aggregates take it"},
	"through":      {func(k Kind) bool { return k == ManyToMany || k.IsAggregate() }, "only many_to_many and aggregates take it"},
	"filters":      {isJoinOrAggregate, "only joins and aggregates take it"},
	"order_by":     {kinds(HasOne, HasMany, ManyToMany), "only has_one, has_many and many_to_many take it"},
	"limit":        {Kind.IsToMany, "only has_many and many_to_many take it"},
	"value_type":   {kinds(Sum, Min, Max), "only sum, min and max take it"},
	"element_type": {kinds(IDs), "only ids takes it"},
}

// siblingsOf lists the sibling keys kind k takes.
func siblingsOf(k Kind) []string {
	var out []string
	for _, key := range siblingKeys {
		if siblings[key].on(k) {
			out = append(out, key)
		}
	}
	return out
}

// joinKey is the one key sibling a join verb takes.
func joinKey(k Kind) string {
	switch k {
	case BelongsTo:
		return "column"
	case ManyToMany:
		return "through"
	}
	return "foreign_key"
}

// misplaced explains why kind k does not take key, naming what to write
// instead where there is a right answer.
func misplaced(k Kind, key string) string {
	switch {
	case k.IsJoin() && (key == "column" || key == "foreign_key" || key == "through"):
		return fmt.Sprintf("%s takes %s, not %s", k, joinKey(k), key)
	case key == "required" && k.IsToMany():
		return fmt.Sprintf("%s does not take required: a to-many join is never null, it is [] when nothing matches", k)
	case key == "required" && k.IsAggregate():
		return fmt.Sprintf("%s does not take required: an aggregate's nullability follows from its op", k)
	case key == "required" && k == Object:
		return "object does not take required: an object is always present"
	case key == "column" && k == Count:
		return "count does not take column: it counts the related rows"
	case key == "column" && k == IDs:
		return "ids does not take column: it collects the related table's primary key"
	case key == "value_type" && k == Count:
		return "count does not take value_type: its result is always a long"
	case key == "value_type" && k == Avg:
		return "avg does not take value_type: its result is always a double"
	case key == "value_type" && k == IDs:
		return "ids takes element_type, not value_type"
	case key == "order_by" && k == BelongsTo:
		return "belongs_to does not take order_by: it points at exactly one row"
	case key == "limit" && (k == BelongsTo || k == HasOne):
		return fmt.Sprintf("%s does not take limit: a to-one join yields one row (limit is for has_many and many_to_many)", k)
	}
	return fmt.Sprintf("%s does not take %s (%s)", k, key, siblings[key].only)
}

// fields reads a list of fields; path is the list's path.
func (p *parser) fields(n *yaml.Node, path string, depth int) []Field {
	items, ok := p.sequence(n, path, "a list of fields")
	if !ok {
		return nil
	}
	if depth >= maxDepth {
		p.errorf(n, path, "fields nest deeper than %d levels", maxDepth)
		return nil
	}
	out := make([]Field, 0, len(items))
	lines := map[string]int{}
	for i, item := range items {
		f, ok := p.field(item, index(path, i), depth)
		if !ok {
			continue
		}
		if line, dup := lines[f.Name]; dup {
			p.errorAt(f.Line, index(path, i), "duplicate field name %q (also at line %d)", f.Name, line)
			continue
		}
		lines[f.Name] = f.Line
		out = append(out, f)
	}
	return out
}

// field reads one field item. It reports false when the item is unusable;
// problems in its siblings are reported but still yield the field, so that
// checks relying on its name (duplicates, soft_delete.field) stay accurate.
func (p *parser) field(n *yaml.Node, path string, depth int) (Field, bool) {
	o, ok := p.mapping(n, path, "a mapping like `keyword: email`")
	if !ok {
		return Field{}, false
	}
	typ := ""
	for _, k := range o.keys {
		if !isKind(k) {
			continue
		}
		if typ != "" {
			p.errorf(o.entries[k].key, path, "has two type keys, %s and %s: a field takes exactly one", typ, k)
			return Field{}, false
		}
		typ = k
	}
	if typ == "" {
		p.errorf(o.node, path, "%s", noTypeKey(o))
		return Field{}, false
	}
	kind := Kind(typ)
	name, ok := p.fieldName(o.entries[typ])
	if !ok {
		return Field{}, false
	}
	// Everything inside the item is addressed under its name, like its
	// nested fields: fields[3].orders.column, fields[3].orders.fields[0].
	named := join(path, name)
	for k, e := range o.entries {
		e.path = join(named, k)
		o.entries[k] = e
	}
	f := Field{Kind: kind, Name: name, Line: o.node.Line}
	if p.related == nil && isJoinOrAggregate(kind) {
		p.related = &place{line: f.Line, path: path, what: fmt.Sprintf("%s %s", kind, name)}
	}
	for _, k := range o.keys {
		if k == typ {
			continue
		}
		if s, known := siblings[k]; !known {
			p.unknownKey(o, k, fmt.Sprintf("%s takes %s", kind, strings.Join(siblingsOf(kind), ", ")), siblingKeys)
		} else if !s.on(kind) {
			p.errorf(o.entries[k].key, path, "%s", misplaced(kind, k))
		}
	}
	p.readSiblings(&f, o, named, depth)
	p.complete(&f, o, path)
	return f, true
}

// noTypeKey explains a field item without a type key, guessing at a typo.
func noTypeKey(o *object) string {
	msg := "has no type key: a field starts with its type, like `keyword: email`"
	names := make([]string, len(allKinds))
	for i, k := range allKinds {
		names[i] = string(k)
	}
	for _, k := range o.keys {
		if _, known := siblings[k]; known {
			continue
		}
		if s := suggest.Closest(k, names); s != "" {
			return fmt.Sprintf("%s; %q is not a type, did you mean %q?", msg, k, s)
		}
	}
	return msg + " (types: " + strings.Join(names, ", ") + ")"
}

// readSiblings reads the siblings f.Kind takes into f; misplaced ones were
// reported already. named is the field's own path, under which its nested
// fields live.
func (p *parser) readSiblings(f *Field, o *object, named string, depth int) {
	for _, key := range o.keys {
		s, known := siblings[key]
		if !known || !s.on(f.Kind) {
			continue
		}
		e, ok := o.get(key)
		if !ok {
			continue
		}
		switch key {
		case "required":
			f.Required, _ = p.boolean(e)
		case "column":
			f.Column, _ = p.ident(e)
		case "options":
			f.Options = p.options(e, depth)
		case "transforms":
			f.Transforms = p.transforms(e)
		case "default":
			f.Default = p.defaultValue(e)
		case "variants":
			f.Variants = p.variants(e)
		case "postgres":
			f.PostgresTypes = p.postgresTypes(e)
		case "opensearch":
			f.OpenSearchType, _ = p.nonEmpty(e)
		case "lat":
			f.Lat, _ = p.ident(e)
		case "lon":
			f.Lon, _ = p.ident(e)
		case "values":
			f.Values = p.mapValues(e)
		case "value":
			f.Value, _ = p.value(e.val, e.path, depth)
		case "fields":
			f.Fields = p.fields(e.val, named+".fields", depth+1)
		case "table":
			f.Table, _ = p.ident(e)
		case "primary_key":
			f.PrimaryKey, _ = p.ident(e)
		case "foreign_key":
			f.ForeignKey, _ = p.ident(e)
		case "through":
			f.Through = p.through(e)
		case "filters":
			f.Filters = p.filters(e)
		case "order_by":
			f.OrderBy = p.orderBy(e)
		case "limit":
			if n, ok := p.integer(e); ok {
				if n < 1 {
					p.errorf(e.val, e.path, "must be at least 1, not %d", n)
				}
				f.Limit = n
			}
		case "value_type":
			f.ValueType = p.valueType(e)
		case "element_type":
			f.ElementType = p.elementType(e)
		}
	}
}

// complete checks the keys f's kind requires and fills in defaults. path
// is the field item's path.
func (p *parser) complete(f *Field, o *object, path string) {
	need := func(key, what string) {
		if !o.has(key) {
			p.errorf(o.node, path, "%s needs %s: %s", f.Kind, key, what)
		}
	}
	// The source column defaults to the field name, folded as Postgres
	// folds an unquoted identifier.
	defaultColumn := func() {
		if !o.has("column") {
			f.Column = strings.ToLower(f.Name)
		}
	}
	k := f.Kind
	switch {
	case k == Custom:
		need("postgres", "the Postgres types it accepts, e.g. [numeric]")
		need("opensearch", "the OpenSearch type to map it as, e.g. scaled_float")
		defaultColumn()
	case k.IsScalar():
		defaultColumn()
	case k == Geo:
		lat, lon, col := o.has("lat"), o.has("lon"), o.has("column")
		switch {
		case (lat || lon) && col:
			p.errorf(o.node, path, "geo takes lat and lon, or column, not both")
		case lat != lon:
			p.errorf(o.node, path, "geo needs both lat and lon (or a single column holding the point)")
		case !lat:
			defaultColumn()
		}
	case k == Map:
		need("values", "the type of every value, e.g. keyword")
		defaultColumn()
	case k == Object:
		need("fields", "the list of its fields")
	case k.IsJoin():
		need("table", "the related table")
		need("primary_key", "the related table's primary key column")
		need("fields", "the list of fields read from the related table")
		// A wrong key sibling was reported already, naming the right one.
		wrongKey := o.has("column") || o.has("foreign_key") || o.has("through")
		switch {
		case k == BelongsTo:
			defaultColumn()
		case wrongKey:
		case k == ManyToMany:
			need("through", "the junction table, as {table, left_key, right_key}")
		default:
			need("foreign_key", "the related table's column pointing back at this row")
		}
	case k.IsAggregate():
		need("table", "the related table")
		fk, th := o.has("foreign_key"), o.has("through")
		switch {
		case fk && th:
			p.errorf(o.entries["through"].key, path, "%s takes foreign_key or through, not both", k)
		case !fk && !th:
			p.errorf(o.node, path, "%s needs foreign_key (the related table's column pointing back at this row) or through (a junction table)", k)
		}
		switch k {
		case Sum, Min, Max:
			need("column", "the related table's column to aggregate")
			need("value_type", "the type of the result, e.g. double")
		case Avg:
			need("column", "the related table's column to average")
		case IDs:
			need("element_type", "long or keyword, the type of the related primary key")
		}
	}
}

func (p *parser) nonEmpty(e entry) (string, bool) {
	s, ok := p.text(e)
	if !ok {
		return "", false
	}
	if s = strings.TrimSpace(s); s == "" {
		p.errorf(e.val, e.path, "must not be empty")
		return "", false
	}
	return s, true
}

func (p *parser) options(e entry, depth int) map[string]any {
	v, ok := p.value(e.val, e.path, depth)
	if !ok {
		return nil
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		p.errorf(e.val, e.path, "must be a mapping of OpenSearch mapping parameters, not %s", describe(e.val))
		return nil
	}
	return m
}

func (p *parser) transforms(e entry) []Transform {
	items, ok := p.sequence(e.val, e.path, "a list like [trim, lowercase]")
	if !ok {
		return nil
	}
	var out []Transform
	for i, n := range items {
		s, ok := p.text(entry{val: n, path: index(e.path, i)})
		if !ok {
			continue
		}
		switch t := Transform(s); t {
		case Lowercase, Trim:
			out = append(out, t)
		default:
			p.errorf(n, index(e.path, i), "unknown transform %q (transforms are lowercase and trim)", s)
		}
	}
	return out
}

func (p *parser) defaultValue(e entry) any {
	if e.val.Kind != yaml.ScalarNode {
		p.errorf(e.val, e.path, "must be a scalar (string, number, bool or date), not %s", describe(e.val))
		return nil
	}
	v, _ := p.scalar(e.val, e.path)
	return v
}

func (p *parser) variants(e entry) []string {
	items, ok := p.sequence(e.val, e.path, "a list of the enum's values, in sort order")
	if !ok {
		return nil
	}
	if len(items) == 0 {
		p.errorf(e.val, e.path, "must list at least one value")
		return nil
	}
	out := make([]string, 0, len(items))
	seen := map[string]bool{}
	for i, n := range items {
		s, ok := p.text(entry{val: n, path: index(e.path, i)})
		if !ok {
			continue
		}
		if seen[s] {
			p.errorf(n, index(e.path, i), "duplicate variant %q", s)
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}

func (p *parser) postgresTypes(e entry) []string {
	items, ok := p.sequence(e.val, e.path, "a list of Postgres types, e.g. [numeric]")
	if !ok {
		return nil
	}
	if len(items) == 0 {
		p.errorf(e.val, e.path, "must list at least one Postgres type")
		return nil
	}
	var out []string
	for i, n := range items {
		if s, ok := p.nonEmpty(entry{val: n, path: index(e.path, i)}); ok {
			out = append(out, strings.ToLower(s))
		}
	}
	return out
}

// mapLeafKinds are the kinds a map's values may have.
var mapLeafKinds = []Kind{Text, Identifier, Keyword, Enum, UUID, Short, Integer, Long, Float, Double, Decimal, Date, Timestamp}

func (p *parser) mapValues(e entry) Kind {
	s, ok := p.text(e)
	if !ok {
		return ""
	}
	k := Kind(strings.TrimSpace(s))
	switch {
	case slices.Contains(mapLeafKinds, k):
		return k
	case isKind(string(k)):
		p.errorf(e.val, e.path, "map values cannot be %s: use text, identifier, keyword, enum, uuid, a numeric type, date or timestamp", k)
	default:
		p.errorf(e.val, e.path, "%q is not a type", s)
	}
	return ""
}

// valueType reads the result type of sum, min and max: a scalar type.
func (p *parser) valueType(e entry) Kind {
	s, ok := p.text(e)
	if !ok {
		return ""
	}
	k := Kind(strings.TrimSpace(s))
	if !k.IsScalar() || k == Custom {
		p.errorf(e.val, e.path, "%q is not a scalar type (text, keyword, integer, long, double, decimal, date, timestamp, …)", s)
		return ""
	}
	return k
}

func (p *parser) elementType(e entry) Kind {
	s, ok := p.text(e)
	if !ok {
		return ""
	}
	k := Kind(strings.TrimSpace(s))
	if k != Long && k != Keyword {
		p.errorf(e.val, e.path, "must be long or keyword, not %q", s)
		return ""
	}
	return k
}

var (
	throughKeys  = []string{"table", "left_key", "right_key"}
	throughHints = []string{"the junction table", "the junction's column pointing at this row", "the junction's column pointing at the related row"}
)

func (p *parser) through(e entry) *Through {
	o, ok := p.mapping(e.val, e.path, "a mapping {table, left_key, right_key}")
	if !ok {
		return nil
	}
	p.checkKeys(o, throughKeys, "through")
	t := &Through{}
	for i, dst := range []*string{&t.Table, &t.LeftKey, &t.RightKey} {
		if v, ok := p.require(o, throughKeys[i], throughHints[i]); ok {
			*dst, _ = p.ident(v)
		}
	}
	return t
}

var orderByKeys = []string{"column", "direction"}

func (p *parser) orderBy(e entry) []OrderBy {
	items, ok := p.sequence(e.val, e.path, "a list like [{column: id, direction: asc}]")
	if !ok {
		return nil
	}
	var out []OrderBy
	for i, n := range items {
		o, ok := p.mapping(n, index(e.path, i), "a mapping like {column: id, direction: asc}")
		if !ok {
			continue
		}
		p.checkKeys(o, orderByKeys, "order_by")
		ob := OrderBy{Direction: Asc}
		if c, ok := p.require(o, "column", "the column to order by"); ok {
			ob.Column, _ = p.ident(c)
		}
		if d, ok := o.get("direction"); ok {
			if s, ok := p.text(d); ok {
				switch dir := Direction(strings.ToLower(strings.TrimSpace(s))); dir {
				case Asc, Desc:
					ob.Direction = dir
				default:
					p.errorf(d.val, d.path, "must be asc or desc, not %q", s)
				}
			}
		}
		out = append(out, ob)
	}
	return out
}
