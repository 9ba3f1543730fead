package schema

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/flusso/flusso/pkg/suggest"
)

// MaxFileSize bounds a schema file. Real schemas are a few KiB; the bound
// keeps a wrong path (a log, a dump) from being read into memory.
const MaxFileSize = 1 << 20

const (
	// maxDepth bounds how deeply fields and option values nest. It is far
	// beyond any real document and stops runaway recursion through YAML
	// aliases that refer to their own ancestors.
	maxDepth = 64
	// maxNodes bounds the YAML nodes visited, so aliases repeating large
	// subtrees (a "billion laughs" file) cannot blow up the work.
	maxNodes = 1 << 20
	// maxErrors bounds the problems reported for one file.
	maxErrors = 100
	// maxIdentSize is Postgres' identifier limit, applied to field names too.
	maxIdentSize = 63
)

var (
	pgIdentRE   = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	fieldNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	yamlErrorRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// Load reads and parses the schema file at path. Errors name the path as
// given.
func Load(path string) (*Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, ErrorList{{File: path, Msg: "cannot read the schema: " + causeOf(err), Err: err}}
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, ErrorList{tooLarge(path, fi.Size())}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, ErrorList{{File: path, Msg: "cannot read the schema: " + causeOf(err), Err: err}}
	}
	return Parse(path, data)
}

// causeOf drops the path an *os.PathError repeats, since Error names it.
func causeOf(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func tooLarge(file string, size int64) *Error {
	return &Error{File: file, Msg: fmt.Sprintf(
		"file is %.1f MiB; a schema file may be at most %d MiB (is this the right file?)",
		float64(size)/(1<<20), MaxFileSize>>20)}
}

// Parse parses and validates one schema file's content. file names the
// source in errors and is kept in Index.File. On failure the error is an
// ErrorList naming the line, the field path and the cause of each problem.
func Parse(file string, data []byte) (*Index, error) {
	if len(data) > MaxFileSize {
		return nil, ErrorList{tooLarge(file, int64(len(data)))}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, ErrorList{emptyFile(file)}
	}
	root, err := decodeYAML(file, data)
	if err != nil {
		return nil, ErrorList{err}
	}
	p := &parser{file: file, budget: maxNodes}
	ix := p.index(root)
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
		if p.truncated {
			p.errs = append(p.errs, &Error{File: file, Msg: fmt.Sprintf("too many errors; these are the first %d found", maxErrors)})
		}
		return nil, p.errs
	}
	return ix, nil
}

// decodeYAML returns the root node of the file's single document.
func decodeYAML(file string, data []byte) (root *yaml.Node, failure *Error) {
	// yaml.v3 is not expected to panic, but a schema file is user input and
	// a panic would take the whole process down with it.
	defer func() {
		if r := recover(); r != nil {
			root, failure = nil, &Error{File: file, Msg: fmt.Sprintf("invalid YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil, emptyFile(file)
	case err != nil:
		return nil, syntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, syntaxError(file, err)
		}
		return nil, &Error{File: file, Line: extra.Line, Msg: "a schema file holds one YAML document; found a second one"}
	}
	if len(doc.Content) == 0 || doc.Content[0].ShortTag() == "!!null" {
		return nil, emptyFile(file)
	}
	return doc.Content[0], nil
}

func emptyFile(file string) *Error {
	return &Error{File: file, Msg: "file is empty: expected a schema (version, table, fields)"}
}

func syntaxError(file string, err error) *Error {
	if m := yamlErrorRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		// yaml.v3 numbers the lines of these parser errors from 0 (they
		// point at the start of the unclosed construct); the others from 1.
		if strings.HasPrefix(m[2], "did not find expected") {
			line++
		}
		return &Error{File: file, Line: line, Msg: "invalid YAML: " + m[2], Err: err}
	}
	return &Error{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: "), Err: err}
}

// parser walks the YAML tree, collecting every problem it finds.
type parser struct {
	file      string
	errs      ErrorList
	truncated bool // more than maxErrors were found
	budget    int
	// related is the first join or aggregate met, which makes the root
	// primary key mandatory.
	related *place
}

// place locates a field for a message reported after it was read.
type place struct {
	line       int
	path, what string
}

// errorf reports a problem at node n.
func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	p.errorAt(n.Line, path, format, args...)
}

func (p *parser) errorAt(line int, path, format string, args ...any) {
	if len(p.errs) == maxErrors {
		p.truncated = true
		return
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// resolve follows aliases and charges the node budget. It returns nil once
// the budget is spent; the single error for that is reported here.
func (p *parser) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < maxDepth; i++ {
		n = n.Alias
	}
	if n == nil || n.Kind == yaml.AliasNode {
		return nil
	}
	p.budget--
	if p.budget == 0 {
		p.errorf(n, "", "schema is too large to process: over %d YAML nodes once aliases are expanded", maxNodes)
	}
	if p.budget < 0 {
		return nil
	}
	return n
}

// entry is one key of a YAML mapping with its value.
type entry struct {
	key, val *yaml.Node
	path     string // path of the value
}

// object is a YAML mapping read into its keys, in file order.
type object struct {
	node    *yaml.Node
	path    string
	keys    []string
	entries map[string]entry
}

// get returns the entry for key. A key whose value is null counts as absent,
// as for an optional key in the original implementation.
func (o *object) get(key string) (entry, bool) {
	e, ok := o.entries[key]
	if !ok || e.val.Kind == yaml.ScalarNode && e.val.ShortTag() == "!!null" {
		return entry{}, false
	}
	return e, true
}

func (o *object) has(key string) bool {
	_, ok := o.get(key)
	return ok
}

// mapping reads n as a mapping with string keys, reporting duplicate keys.
// what names the expected content for the message.
func (p *parser) mapping(n *yaml.Node, path, what string) (*object, bool) {
	if n = p.resolve(n); n == nil {
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "must be %s, not %s", what, describe(n))
		return nil, false
	}
	o := &object{node: n, path: path, entries: map[string]entry{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := p.resolve(n.Content[i]), p.resolve(n.Content[i+1])
		if k == nil || v == nil {
			return nil, false
		}
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, path, "keys must be plain strings, not %s", describe(k))
			continue
		}
		key := k.Value
		if prev, dup := o.entries[key]; dup {
			p.errorf(k, path, "duplicate key %q (first at line %d)", key, prev.key.Line)
			continue
		}
		o.keys = append(o.keys, key)
		o.entries[key] = entry{key: k, val: v, path: join(path, key)}
	}
	return o, true
}

// sequence reads n as a list, with aliases among its items resolved.
func (p *parser) sequence(n *yaml.Node, path, what string) ([]*yaml.Node, bool) {
	if n = p.resolve(n); n == nil {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "must be %s, not %s", what, describe(n))
		return nil, false
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		if items[i] = p.resolve(item); items[i] == nil {
			return nil, false
		}
	}
	return items, true
}

// text reads a scalar as a string. Any non-null scalar is accepted as its
// literal text (`variants: [1, 2]` are the strings "1" and "2").
func (p *parser) text(e entry) (string, bool) {
	if e.val.Kind != yaml.ScalarNode || e.val.ShortTag() == "!!null" {
		p.errorf(e.val, e.path, "must be a string, not %s", describe(e.val))
		return "", false
	}
	return e.val.Value, true
}

// ident reads a Postgres identifier, trimmed and lowercased.
func (p *parser) ident(e entry) (string, bool) {
	s, ok := p.text(e)
	if !ok {
		return "", false
	}
	id, err := NormalizeIdent(s)
	if err != nil {
		p.errorf(e.val, e.path, "%v", err)
		return "", false
	}
	return id, true
}

// NormalizeIdent trims and lowercases a Postgres identifier (a table,
// column, schema, index or sink name) and checks it: ASCII letters, digits
// and underscores, not starting with a digit, at most 63 characters.
func NormalizeIdent(s string) (string, error) {
	id := strings.ToLower(strings.TrimSpace(s))
	if len(id) > maxIdentSize || !pgIdentRE.MatchString(id) {
		return "", fmt.Errorf("%q is not a valid Postgres identifier: use letters, digits and _, not starting with a digit, at most 63 characters", s)
	}
	return id, nil
}

// fieldName reads a document key: trimmed, case kept.
func (p *parser) fieldName(e entry) (string, bool) {
	s, ok := p.text(e)
	if !ok {
		return "", false
	}
	name := strings.TrimSpace(s)
	if len(name) > maxIdentSize || !fieldNameRE.MatchString(name) {
		p.errorf(e.val, e.path, "%q is not a valid field name: use letters, digits and _, not starting with a digit, at most 63 characters", s)
		return "", false
	}
	return name, true
}

func (p *parser) boolean(e entry) (bool, bool) {
	if e.val.Kind != yaml.ScalarNode || e.val.ShortTag() != "!!bool" {
		p.errorf(e.val, e.path, "must be true or false, not %s", describe(e.val))
		return false, false
	}
	var b bool
	if err := e.val.Decode(&b); err != nil {
		p.errorf(e.val, e.path, "must be true or false: %v", err)
		return false, false
	}
	return b, true
}

func (p *parser) integer(e entry) (int, bool) {
	if e.val.Kind != yaml.ScalarNode || e.val.ShortTag() != "!!int" {
		p.errorf(e.val, e.path, "must be an integer, not %s", describe(e.val))
		return 0, false
	}
	var i int
	if err := e.val.Decode(&i); err != nil {
		p.errorf(e.val, e.path, "must be an integer: %s is out of range", e.val.Value)
		return 0, false
	}
	return i, true
}

// describe names what a node holds, for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "the boolean " + n.Value
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		}
		return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
	}
	return "an unsupported YAML node"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// checkKeys reports every key of o not in allowed; where names what o is.
func (p *parser) checkKeys(o *object, allowed []string, where string) {
	for _, k := range o.keys {
		if !slices.Contains(allowed, k) {
			p.unknownKey(o, k, fmt.Sprintf("%s takes %s", where, strings.Join(allowed, ", ")), allowed)
		}
	}
}

// unknownKey reports key as unknown, suggesting the closest candidate or
// else saying what is expected.
func (p *parser) unknownKey(o *object, key, expected string, candidates []string) {
	msg := fmt.Sprintf("unknown key %q", key)
	if s := suggest.Closest(key, candidates); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	} else {
		msg += " (" + expected + ")"
	}
	p.errorf(o.entries[key].key, o.path, "%s", msg)
}
