package scaffold

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/flusso/flusso/pkg/schema"
)

// Relation is a join the catalog's keys allow from a table.
type Relation struct {
	Kind  schema.Kind `json:"kind"`
	Name  string      `json:"name"`  // suggested field name
	Table string      `json:"table"` // related table
	// Column is this table's foreign key column (belongs_to).
	Column string `json:"column,omitempty"`
	// ForeignKey is the related table's column pointing back (has_one,
	// has_many).
	ForeignKey string          `json:"foreign_key,omitempty"`
	Through    *schema.Through `json:"through,omitempty"`
	PrimaryKey string          `json:"primary_key"` // of the related table
}

// Relations lists the joins from t that follow a foreign key, in the
// related tables' schema: belongs_to for each of t's keys, has_one (the
// pointing column is unique) or has_many for each key pointing at t, and
// many_to_many through each junction table linking t to another. Tables
// without a single-column primary key cannot be joined and are left out.
func (c *Catalog) Relations(t *Table) []Relation {
	var out []Relation
	for _, fk := range t.ForeignKeys {
		r := c.Table(fk.RefSchema, fk.RefTable)
		if !fk.single() || r == nil || r.Key() == "" || r.Schema != t.Schema {
			continue
		}
		col := fk.Columns[0]
		name := strings.TrimSuffix(col, "_id")
		if name == col || t.Column(name) != nil {
			name = col + "_ref"
		}
		out = append(out, Relation{Kind: schema.BelongsTo, Name: name, Table: r.Name, Column: col, PrimaryKey: r.Key()})
	}
	for _, r := range c.Tables {
		if r.Schema != t.Schema || r.Key() == "" && !r.Junction {
			continue
		}
		for _, fk := range r.ForeignKeys {
			if !fk.single() || fk.RefSchema != t.Schema || fk.RefTable != t.Name {
				continue
			}
			if r.Junction {
				out = append(out, c.throughJunction(r, fk)...)
				continue
			}
			rel := Relation{Kind: schema.HasMany, Name: r.Name, Table: r.Name, ForeignKey: fk.Columns[0], PrimaryKey: r.Key()}
			if r.unique(fk.Columns[0]) {
				rel.Kind, rel.Name = schema.HasOne, singular(r.Name)
			}
			if pointing(r, t) > 1 {
				rel.Name += "_by_" + strings.TrimSuffix(fk.Columns[0], "_id")
			}
			out = append(out, rel)
		}
	}
	return out
}

// throughJunction is the many_to_many over junction j whose key left points
// at the parent.
func (c *Catalog) throughJunction(j *Table, left ForeignKey) []Relation {
	var out []Relation
	for _, right := range j.ForeignKeys {
		if right.Columns[0] == left.Columns[0] {
			continue
		}
		x := c.Table(right.RefSchema, right.RefTable)
		if x == nil || x.Key() == "" || x.Schema != j.Schema {
			continue
		}
		out = append(out, Relation{
			Kind: schema.ManyToMany, Name: x.Name, Table: x.Name, PrimaryKey: x.Key(),
			Through: &schema.Through{Table: j.Name, LeftKey: left.Columns[0], RightKey: right.Columns[0]},
		})
	}
	return out
}

// pointing counts r's foreign keys to t.
func pointing(r, t *Table) int {
	n := 0
	for _, fk := range r.ForeignKeys {
		if fk.RefSchema == t.Schema && fk.RefTable == t.Name {
			n++
		}
	}
	return n
}

func singular(s string) string {
	switch {
	case strings.HasSuffix(s, "ies"):
		return strings.TrimSuffix(s, "ies") + "y"
	case strings.HasSuffix(s, "ses"), strings.HasSuffix(s, "xes"):
		return strings.TrimSuffix(s, "es")
	case strings.HasSuffix(s, "s") && !strings.HasSuffix(s, "ss"):
		return strings.TrimSuffix(s, "s")
	}
	return s
}

// softDeleteColumns are the markers a root table's soft delete is guessed
// from, as the schema format describes them.
var softDeleteColumns = []string{"deleted_at", "deleted", "is_deleted", "archived_at"}

var fieldNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Index writes a starting schema for table t: every column as a field of
// its suggested kind (required where NOT NULL), a soft delete on a
// deleted_at-like column, and, depth levels deep, every relation the keys
// allow with the related table's columns. A relation back to a table
// already on the path is not followed again.
func (c *Catalog) Index(t *Table, depth int) (*yaml.Node, error) {
	if depth < 0 {
		return nil, fmt.Errorf("depth must be 0 or more, not %d", depth)
	}
	root := mapNode()
	add(root, "version", intNode(1))
	add(root, "table", str(t.Name))
	if t.Schema != "public" {
		add(root, "schema", str(t.Schema))
	}
	if t.Key() != "" {
		add(root, "primary_key", str(t.Key()))
	}
	skip := ""
	for _, name := range softDeleteColumns {
		if col := t.Column(name); col != nil && (col.Kind == schema.Timestamp || col.Kind == schema.Boolean) {
			sd := mapNode()
			add(sd, "column", str(name))
			add(root, "soft_delete", sd)
			skip = name
			break
		}
	}
	if t.Key() == "" {
		depth = 0 // a join needs the root's primary key
	}
	add(root, "fields", c.fields(t, skip, depth, []string{t.Name}))
	return root, nil
}

// fields lists t's columns as fields, then its relations when depth allows.
func (c *Catalog) fields(t *Table, skip string, depth int, path []string) *yaml.Node {
	list := &yaml.Node{Kind: yaml.SequenceNode}
	for _, col := range t.Columns {
		if col.Name == skip || !fieldNameRE.MatchString(col.Name) {
			continue
		}
		list.Content = append(list.Content, ScalarField(col, col.Name == t.Key()))
	}
	if depth == 0 {
		return list
	}
	names := map[string]bool{}
	for _, col := range t.Columns {
		names[col.Name] = true
	}
	for _, rel := range c.Relations(t) {
		if slices.Contains(path, rel.Table) || names[rel.Name] {
			continue
		}
		names[rel.Name] = true
		list.Content = append(list.Content, c.join(t, rel, depth-1, append(slices.Clone(path), rel.Table)))
	}
	return list
}

// Join is the field of relation rel from t with the related table's columns
// and, depth levels further, its relations.
func (c *Catalog) Join(t *Table, rel Relation, depth int) *yaml.Node {
	return c.join(t, rel, depth, []string{t.Name, rel.Table})
}

func (c *Catalog) join(t *Table, rel Relation, depth int, path []string) *yaml.Node {
	f := RelationField(rel)
	if related := c.Table(t.Schema, rel.Table); related != nil {
		add(f, "fields", c.fields(related, "", depth, path))
	}
	return f
}

// ScalarField is the field reading col with its suggested kind: required
// where the column is NOT NULL (a key is non-null anyway, and says so less
// loudly without it), and for a type no kind reads, custom with its
// Postgres type mapped as a keyword.
func ScalarField(col Column, key bool) *yaml.Node {
	f := mapNode()
	add(f, string(col.Kind), str(col.Name))
	if !col.Nullable && !key {
		add(f, "required", boolNode(true))
	}
	if col.Kind == schema.Custom {
		add(f, "postgres", flow(&yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{str(col.Base)}}))
		add(f, "opensearch", str("keyword"))
	}
	return f
}

// RelationField is the join field of rel, without its fields.
func RelationField(rel Relation) *yaml.Node {
	f := mapNode()
	add(f, string(rel.Kind), str(rel.Name))
	add(f, "table", str(rel.Table))
	switch rel.Kind {
	case schema.BelongsTo:
		add(f, "column", str(rel.Column))
	case schema.ManyToMany:
		th := mapNode()
		add(th, "table", str(rel.Through.Table))
		add(th, "left_key", str(rel.Through.LeftKey))
		add(th, "right_key", str(rel.Through.RightKey))
		add(f, "through", flow(th))
	default:
		add(f, "foreign_key", str(rel.ForeignKey))
	}
	add(f, "primary_key", str(rel.PrimaryKey))
	return f
}

// Marshal renders a schema document: block style, two-space indent, with
// small maps and lists of scalars (through, order_by items, filters,
// transforms) on one line as people write them.
func Marshal(doc *yaml.Node) ([]byte, error) {
	flowLeaves(doc, true)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("rendering the schema as YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("rendering the schema as YAML: %w", err)
	}
	return b.Bytes(), nil
}

// flowLeaves sets flow style on every map or list below n whose items are
// all scalars or themselves flowed, except the top, fields lists and their
// items.
// It reports whether n is flowed (or a scalar).
func flowLeaves(n *yaml.Node, top bool) bool {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			flowLeaves(c, true)
		}
		return false
	case yaml.ScalarNode, yaml.AliasNode:
		return true
	}
	all := true
	for i, c := range n.Content {
		// A fields list and its items stay blocks.
		isFields := n.Kind == yaml.MappingNode && i%2 == 1 && n.Content[i-1].Value == "fields"
		if !flowLeaves(c, isFields || n.Kind == yaml.SequenceNode && top) || isFields {
			all = false
		}
	}
	// A long line reads worse than a block.
	if all && !top && len(n.Content) <= 8 && n.Kind != yaml.DocumentNode {
		n.Style |= yaml.FlowStyle
		return true
	}
	return false
}

func mapNode() *yaml.Node     { return &yaml.Node{Kind: yaml.MappingNode} }
func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
func intNode(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: fmt.Sprint(i)}
}
func boolNode(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(b)}
}
func flow(n *yaml.Node) *yaml.Node {
	n.Style |= yaml.FlowStyle
	return n
}
func add(m *yaml.Node, key string, v *yaml.Node) { m.Content = append(m.Content, str(key), v) }
