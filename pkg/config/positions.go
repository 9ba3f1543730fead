package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// position is a 1-based line and column in a file.
type position struct{ line, column int }

// positions maps the key paths of a TOML document to where each key is
// written, so a problem found after decoding can still point at its line.
type positions struct {
	at     map[string]position
	arrays map[string]int // array-of-tables path → elements seen so far
	lines  []int          // byte offset where each line starts
}

// indexPositions records the position of every key in data. It expects data
// to be valid TOML (the decoder has already said so) and stops quietly at the
// first parse problem otherwise.
func indexPositions(data []byte) *positions {
	ix := &positions{at: map[string]position{}, arrays: map[string]int{}, lines: []int{0}}
	for i, c := range data {
		if c == '\n' {
			ix.lines = append(ix.lines, i+1)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			parts, at := keyParts(e)
			table = ix.resolve(parts, at)
		case unstable.ArrayTable:
			parts, at := keyParts(e)
			last := len(parts) - 1
			base := child(ix.resolve(parts[:last], at), parts[last])
			n := ix.arrays[base]
			ix.arrays[base] = n + 1
			table = fmt.Sprintf("%s[%d]", base, n)
			ix.record(base, at[last])
			ix.record(table, at[last])
		case unstable.KeyValue:
			ix.keyValue(table, e)
		}
	}
	return ix
}

// keyParts returns the parts of a node's (possibly dotted) key and where
// each is written.
func keyParts(n *unstable.Node) ([]string, []unstable.Range) {
	var (
		parts []string
		at    []unstable.Range
	)
	it := n.Key()
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
		at = append(at, it.Node().Raw)
	}
	return parts, at
}

// keyValue records a key = value line: its key at the start of the line (a
// message about it points there) and any table or array it holds.
func (ix *positions) keyValue(table string, kv *unstable.Node) {
	parts, at := keyParts(kv)
	path := table
	for _, part := range parts {
		path = child(path, part)
		ix.record(path, at[0])
	}
	ix.value(path, kv.Value(), at[0])
}

func (ix *positions) value(path string, v *unstable.Node, at unstable.Range) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if it.Node().Kind == unstable.KeyValue {
				ix.keyValue(path, it.Node())
			}
		}
	case unstable.Array:
		i := 0
		it := v.Children()
		for it.Next() {
			elem := it.Node()
			if elem.Kind == unstable.Comment {
				continue
			}
			r := elem.Raw
			if r.Length == 0 {
				r = at
			}
			p := fmt.Sprintf("%s[%d]", path, i)
			ix.record(p, r)
			ix.value(p, elem, r)
			i++
		}
	}
}

// resolve turns the parts of a table header into a path, recording each
// part where it is written and descending into the last element of any
// array of tables on the way ([[index]] then [index.x]).
func (ix *positions) resolve(parts []string, at []unstable.Range) string {
	path := ""
	for i, part := range parts {
		path = child(path, part)
		ix.record(path, at[i])
		if n, ok := ix.arrays[path]; ok {
			path = fmt.Sprintf("%s[%d]", path, n-1)
		}
	}
	return path
}

func (ix *positions) record(path string, r unstable.Range) {
	if _, ok := ix.at[path]; ok {
		return
	}
	off := int(r.Offset)
	line := sort.Search(len(ix.lines), func(i int) bool { return ix.lines[i] > off })
	ix.at[path] = position{line: line, column: off - ix.lines[line-1] + 1}
}

// lookup returns the position of path, or of its nearest recorded ancestor
// (a missing key points at its table).
func (ix *positions) lookup(path string) position {
	for path != "" {
		if p, ok := ix.at[path]; ok {
			return p
		}
		path = parent(path)
	}
	return position{}
}

// child appends key to a key path, quoting it when it is not a bare TOML key.
func child(path, key string) string {
	if !isBareKey(key) {
		key = fmt.Sprintf("%q", key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// parent drops the last key or array index of a path.
func parent(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	// Quoted keys may hold dots, so scan back to an unquoted one.
	quoted := false
	for i := len(path) - 1; i >= 0; i-- {
		switch path[i] {
		case '"':
			quoted = !quoted
		case '.':
			if !quoted {
				return path[:i]
			}
		}
	}
	return ""
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
