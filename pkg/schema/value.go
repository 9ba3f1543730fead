package schema

import (
	"math"

	"gopkg.in/yaml.v3"
)

// scalar converts a YAML scalar to nil, bool, int64, float64 or string.
// Dates and timestamps stay the string they were written as.
func (p *parser) scalar(n *yaml.Node, path string) (any, bool) {
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return nil, true
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			p.errorf(n, path, "invalid boolean %q", n.Value)
			return nil, false
		}
		return b, true
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			p.errorf(n, path, "integer %s is out of range", n.Value)
			return nil, false
		}
		return i, true
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			p.errorf(n, path, "%s is not a finite number", n.Value)
			return nil, false
		}
		return f, true
	case "!!str", "!!timestamp", "!!binary":
		return n.Value, true
	default:
		p.errorf(n, path, "unsupported YAML tag %s", tag)
		return nil, false
	}
}

// value converts any YAML value to nil, bool, int64, float64, string,
// []any or map[string]any, as JSON would hold it.
func (p *parser) value(n *yaml.Node, path string, depth int) (any, bool) {
	if n = p.resolve(n); n == nil {
		return nil, false
	}
	if depth >= maxDepth {
		p.errorf(n, path, "value nests deeper than %d levels", maxDepth)
		return nil, false
	}
	switch n.Kind {
	case yaml.SequenceNode:
		list := make([]any, 0, len(n.Content))
		ok := true
		for i, c := range n.Content {
			v, vok := p.value(c, index(path, i), depth+1)
			list = append(list, v)
			ok = ok && vok
		}
		return list, ok
	case yaml.MappingNode:
		o, ok := p.mapping(n, path, "a mapping")
		if !ok {
			return nil, false
		}
		m := make(map[string]any, len(o.keys))
		for _, k := range o.keys {
			e := o.entries[k]
			v, vok := p.value(e.val, e.path, depth+1)
			m[k] = v
			ok = ok && vok
		}
		return m, ok
	default:
		return p.scalar(n, path)
	}
}
