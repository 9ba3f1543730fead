package sqlbuild

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/schema"
)

// Querier runs a query. *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Index is one compiled index schema. Compile it once, Prepare it once
// against the database, then use it from any number of goroutines.
type Index struct {
	name   string
	schema string // Postgres schema of every table the index reads
	def    *schema.Index
	root   *level
	fields []*fnode
	levels []*level                // every non-root level, parents before children
	depth  int                     // of the deepest level
	occurs map[string][]occurrence // non-root table → where it is read

	// Set by Prepare.
	cat     *catalog
	keyType pgType // type of the root primary key
	build   *statement
	keys    *statement // first page of Keys
	keysAt  *statement // a later page of Keys
}

// level is a source of rows: the root table, or the rows a join or an
// aggregate reads. Reverse resolution walks levels up to the root.
type level struct {
	field  *fnode // the join or aggregate; nil for the root
	table  string
	key    string // column identifying a row; "" when unknown (aggregate over a table without primary key)
	parent *level
	depth  int

	hop string // SQL from keys of this level's rows to keys of its parent's rows; "" when impossible
}

// occurrence is one place a table is read by an index besides the root.
type occurrence struct {
	lvl      *level
	junction bool // the table is the junction (through) of lvl
}

// fnode is one compiled field.
type fnode struct {
	def      schema.Field // Fields is not used; see children
	path     string       // document path, dot separated
	children []*fnode     // object members and join projections
	rel      *level       // the rows a join or aggregate reads
}

// statement is prepared SQL with its bound arguments; the first ones are
// reserved for the arguments of each call.
type statement struct {
	sql  string
	args []any
}

// with returns the arguments of one call, whose first is first.
func (s *statement) with(first any) []any {
	args := make([]any, len(s.args))
	copy(args, s.args)
	args[0] = first
	return args
}

// Compile checks an index schema and builds its relation tree. name is the
// index name, used in messages.
func Compile(name string, ix *schema.Index) (*Index, error) {
	if ix == nil {
		return nil, fmt.Errorf("index %q: no schema", name)
	}
	if ix.Table == "" {
		return nil, fmt.Errorf("index %q: no root table", name)
	}
	if ix.PrimaryKey == "" {
		return nil, fmt.Errorf("index %q: primary_key is needed to identify documents", name)
	}
	x := &Index{
		name:   name,
		schema: ix.Schema,
		def:    ix,
		occurs: map[string][]occurrence{},
	}
	if x.schema == "" {
		x.schema = "public"
	}
	x.root = &level{table: ix.Table, key: ix.PrimaryKey}
	fields, err := x.compileFields(ix.Fields, "", x.root)
	if err != nil {
		return nil, fmt.Errorf("index %q: %w", name, err)
	}
	x.fields = fields
	if sd := ix.SoftDelete; sd != nil && (sd.Column == "") == (sd.Field == "") {
		return nil, fmt.Errorf("index %q: soft_delete needs exactly one of column and field", name)
	}
	if sd := ix.SoftDelete; sd != nil && sd.Field != "" && x.softDeleteColumn() == "" {
		return nil, fmt.Errorf("index %q: soft_delete field %q is not a column field of the root", name, sd.Field)
	}
	return x, nil
}

func (x *Index) compileFields(defs []schema.Field, prefix string, lvl *level) ([]*fnode, error) {
	out := make([]*fnode, 0, len(defs))
	for _, d := range defs {
		n := &fnode{def: d, path: d.Name}
		if prefix != "" {
			n.path = prefix + "." + d.Name
		}
		n.def.Fields = nil
		if err := x.compileField(n, d.Fields, lvl); err != nil {
			return nil, fmt.Errorf("field %s: %w", n.path, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func (x *Index) compileField(n *fnode, children []schema.Field, lvl *level) error {
	f := &n.def
	var err error
	switch k := f.Kind; {
	case k.IsScalar(), k == schema.Map:
		if f.Column == "" {
			f.Column = f.Name
		}
		for _, t := range f.Transforms {
			if t != schema.Lowercase && t != schema.Trim {
				return fmt.Errorf("unknown transform %q", t)
			}
		}
	case k == schema.Geo:
		if (f.Lat == "") != (f.Lon == "") {
			return errors.New("geo needs both lat and lon, or a single column")
		}
		if f.Lat == "" && f.Column == "" {
			f.Column = f.Name
		}
	case k == schema.Constant:
	case k == schema.Object:
		n.children, err = x.compileFields(children, n.path, lvl)
		return err
	case k.IsJoin():
		return x.compileJoin(n, children, lvl)
	case k.IsAggregate():
		return x.compileAggregate(n, lvl)
	default:
		return fmt.Errorf("unknown field type %q", k)
	}
	return nil
}

func (x *Index) compileJoin(n *fnode, children []schema.Field, parent *level) error {
	f := &n.def
	if f.Table == "" {
		return errors.New("a join needs table")
	}
	if f.PrimaryKey == "" {
		return errors.New("a join needs primary_key")
	}
	switch f.Kind {
	case schema.BelongsTo:
		if f.Column == "" {
			f.Column = f.Name
		}
	case schema.HasOne, schema.HasMany:
		if f.ForeignKey == "" {
			return fmt.Errorf("%s needs foreign_key", f.Kind)
		}
	case schema.ManyToMany:
		if err := checkThrough(f.Through); err != nil {
			return err
		}
	}
	lvl := x.addLevel(n, parent, f.PrimaryKey)
	var err error
	n.children, err = x.compileFields(children, n.path, lvl)
	return err
}

func (x *Index) compileAggregate(n *fnode, parent *level) error {
	f := &n.def
	if f.Table == "" {
		return errors.New("an aggregate needs table")
	}
	if (f.ForeignKey == "") == (f.Through == nil) {
		return errors.New("an aggregate needs exactly one of foreign_key and through")
	}
	if f.Through != nil {
		if err := checkThrough(f.Through); err != nil {
			return err
		}
	}
	switch f.Kind {
	case schema.Sum, schema.Min, schema.Max:
		if f.Column == "" || f.ValueType == "" {
			return fmt.Errorf("%s needs column and value_type", f.Kind)
		}
	case schema.Avg:
		if f.Column == "" {
			return errors.New("avg needs column")
		}
	case schema.IDs:
		if f.ElementType != schema.Long && f.ElementType != schema.Keyword {
			return fmt.Errorf("ids needs element_type long or keyword, not %q", f.ElementType)
		}
	}
	// The key of an aggregated row is its table's primary key, learnt in Prepare.
	x.addLevel(n, parent, "")
	return nil
}

func checkThrough(t *schema.Through) error {
	if t == nil || t.Table == "" || t.LeftKey == "" || t.RightKey == "" {
		return errors.New("through needs table, left_key and right_key")
	}
	return nil
}

func (x *Index) addLevel(n *fnode, parent *level, key string) *level {
	lvl := &level{field: n, table: n.def.Table, key: key, parent: parent, depth: parent.depth + 1}
	n.rel = lvl
	x.levels = append(x.levels, lvl)
	x.depth = max(x.depth, lvl.depth)
	x.occurs[lvl.table] = append(x.occurs[lvl.table], occurrence{lvl: lvl})
	if t := n.def.Through; t != nil {
		x.occurs[t.Table] = append(x.occurs[t.Table], occurrence{lvl: lvl, junction: true})
	}
	return lvl
}

// softDeleteColumn is the root column marking a row deleted.
func (x *Index) softDeleteColumn() string {
	sd := x.def.SoftDelete
	if sd == nil {
		return ""
	}
	if sd.Column != "" {
		return sd.Column
	}
	var find func([]*fnode) string
	find = func(nodes []*fnode) string {
		for _, n := range nodes {
			switch {
			case n.def.Kind == schema.Object:
				if c := find(n.children); c != "" {
					return c
				}
			case n.def.Name == sd.Field && n.def.Kind.IsScalar():
				return n.def.Column
			}
		}
		return ""
	}
	return find(x.fields)
}

// Name is the index name given to Compile.
func (x *Index) Name() string { return x.name }

// Reads reports whether changes of the table can affect documents of the index.
func (x *Index) Reads(schemaName, table string) bool {
	if schemaName != x.schema {
		return false
	}
	return table == x.root.table || len(x.occurs[table]) > 0
}

// RootTruncated reports whether changes truncate the root table, which
// empties the index: the caller purges it rather than rebuilding documents.
func (x *Index) RootTruncated(changes []Change) bool {
	for _, c := range changes {
		if c.Op == Truncate && c.Schema == x.schema && c.Table == x.root.table {
			return true
		}
	}
	return false
}

// Prepare reads the types of the columns the index uses and readies its
// statements. Call it once before Build, Affected, Keys and Count, and not
// while they run; call it again after the tables change shape.
func (x *Index) Prepare(ctx context.Context, q Querier) error {
	cat, err := x.readCatalog(ctx, q)
	if err != nil {
		return err
	}
	if err := x.prepare(cat); err != nil {
		return fmt.Errorf("index %q: %w", x.name, err)
	}
	return nil
}

// Refresh reads the shape of the tables again. When it differs from the
// one x was prepared with (a column's type changed, say), Refresh returns a
// new Index prepared for it and leaves x as it is for the calls still
// running on it; otherwise it returns x. Like Prepare, it fails with a
// *MissingError when a table or column the index reads is gone.
func (x *Index) Refresh(ctx context.Context, q Querier) (*Index, error) {
	cat, err := x.readCatalog(ctx, q)
	if err != nil {
		return nil, err
	}
	if x.cat != nil && x.cat.equal(cat) {
		return x, nil
	}
	fresh, err := Compile(x.name, x.def)
	if err != nil {
		return nil, err
	}
	if err := fresh.prepare(cat); err != nil {
		return nil, fmt.Errorf("index %q: %w", x.name, err)
	}
	return fresh, nil
}

// readCatalog reads the shape of every table the index reads.
func (x *Index) readCatalog(ctx context.Context, q Querier) (*catalog, error) {
	refs := x.def.Tables()
	tables := make([]string, len(refs))
	for i, r := range refs {
		tables[i] = r.Name
	}
	cat, err := loadCatalog(ctx, q, x.schema, tables)
	if err != nil {
		return nil, fmt.Errorf("index %q: %w", x.name, err)
	}
	return cat, nil
}

func (x *Index) prepare(cat *catalog) error {
	x.cat = cat
	var err error
	if x.keyType, err = cat.column(x.root.table, x.root.key); err != nil {
		return fmt.Errorf("primary key: %w", err)
	}
	for _, lvl := range x.levels {
		if lvl.field.def.Kind.IsAggregate() {
			// An aggregated table without a usable primary key is fine until
			// something needs its rows' identity.
			lvl.key, _ = cat.primaryKey(lvl.table)
		}
	}
	if x.build, err = x.documentStatement(x.fields); err != nil {
		return err
	}
	if x.keys, x.keysAt, err = x.keysStatements(); err != nil {
		return err
	}
	for _, lvl := range x.levels {
		if lvl.hop, err = x.hopStatement(lvl); err != nil {
			return fmt.Errorf("field %s: %w", lvl.field.path, err)
		}
	}
	return nil
}

func (x *Index) prepared() error {
	if x.build == nil {
		return fmt.Errorf("index %q: not prepared", x.name)
	}
	return nil
}

func (x *Index) table(name string) string {
	return schema.TableRef{Schema: x.schema, Name: name}.String()
}
