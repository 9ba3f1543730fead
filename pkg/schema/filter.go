package schema

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

var (
	filterKeys = []string{"raw", "column", "op", "value"}
	filterOps  = []Op{OpEq, OpNeq, OpLt, OpLte, OpGt, OpGte, OpLike, OpIlike, OpIn, OpNotIn, OpBetween, OpIsNull, OpIsNotNull}
)

// filters reads a list of filters.
func (p *parser) filters(e entry) []Filter {
	items, ok := p.sequence(e.val, e.path, "a list of filters")
	if !ok {
		return nil
	}
	out := make([]Filter, 0, len(items))
	for i, n := range items {
		if f, ok := p.filter(n, index(e.path, i)); ok {
			out = append(out, f)
		}
	}
	return out
}

// filter reads `{raw: sql}` or `{column, op, value}`, checking the value's
// arity against the op.
func (p *parser) filter(n *yaml.Node, path string) (Filter, bool) {
	o, ok := p.mapping(n, path, "a mapping like {column: status, op: eq, value: paid} or {raw: \"…\"}")
	if !ok {
		return Filter{}, false
	}
	p.checkKeys(o, filterKeys, "a filter")
	if raw, ok := o.get("raw"); ok {
		for _, k := range filterKeys[1:] {
			if e, ok := o.entries[k]; ok {
				p.errorf(e.key, path, "a raw filter takes no %s", k)
			}
		}
		sql, ok := p.nonEmpty(raw)
		return Filter{Raw: sql}, ok
	}
	c, hasCol := p.require(o, "column", "the column to test (or write {raw: \"…\"} for SQL)")
	opE, hasOp := p.require(o, "op", "one of "+opList())
	if !hasCol || !hasOp {
		return Filter{}, false
	}
	var f Filter
	f.Column, ok = p.ident(c)
	s, sok := p.text(opE)
	if !sok {
		return Filter{}, false
	}
	f.Op = Op(strings.ToLower(strings.TrimSpace(s)))
	if !slices.Contains(filterOps, f.Op) {
		p.errorf(opE.val, opE.path, "unknown op %q (ops are %s)", s, opList())
		return Filter{}, false
	}
	v, hasValue := o.get("value")
	switch f.Op {
	case OpIsNull, OpIsNotNull:
		if hasValue {
			p.errorf(v.key, path, "%s takes no value", f.Op)
			return Filter{}, false
		}
	case OpIn, OpNotIn:
		if !hasValue {
			p.errorf(o.node, path, "%s needs value: a list of values, e.g. [a, b]", f.Op)
			return Filter{}, false
		}
		values, vok := p.operands(v, f.Op, "a list of values, e.g. [a, b]")
		if vok && len(values) == 0 {
			p.errorf(v.val, v.path, "%s needs at least one value", f.Op)
			vok = false
		}
		f.Values, ok = values, ok && vok
	case OpBetween:
		if !hasValue {
			p.errorf(o.node, path, "between needs value: the two bounds, e.g. [1, 10]")
			return Filter{}, false
		}
		values, vok := p.operands(v, f.Op, "the two bounds, e.g. [1, 10]")
		if vok && len(values) != 2 {
			p.errorf(v.val, v.path, "between takes exactly two values, got %d", len(values))
			vok = false
		}
		f.Values, ok = values, ok && vok
	default:
		if !hasValue {
			p.errorf(o.node, path, "%s needs a value", f.Op)
			return Filter{}, false
		}
		if v.val.Kind != yaml.ScalarNode {
			p.errorf(v.val, v.path, "%s takes one value, not %s", f.Op, describe(v.val))
			return Filter{}, false
		}
		x, xok := p.scalar(v.val, v.path)
		f.Values, ok = []any{x}, ok && xok
	}
	return f, ok
}

// operands reads the list value of in, not_in and between: scalars only.
func (p *parser) operands(v entry, op Op, what string) ([]any, bool) {
	items, ok := p.sequence(v.val, v.path, fmt.Sprintf("a list for %s (%s)", op, what))
	if !ok {
		return nil, false
	}
	values := make([]any, 0, len(items))
	for i, n := range items {
		path := index(v.path, i)
		if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
			p.errorf(n, path, "must be a string, number or boolean, not %s", describe(n))
			ok = false
			continue
		}
		x, xok := p.scalar(n, path)
		values = append(values, x)
		ok = ok && xok
	}
	return values, ok
}

func opList() string {
	names := make([]string, len(filterOps))
	for i, op := range filterOps {
		names[i] = string(op)
	}
	return strings.Join(names, ", ")
}
