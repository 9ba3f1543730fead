package design

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"gopkg.in/yaml.v3"
)

// The browser edits a schema as its model: the YAML document as JSON with
// the keys in file order, so a field's type key stays first. These convert
// between the two; the YAML is always rendered here (scaffold.Marshal), so
// what the browser shows is byte for byte what Save writes.

// maxModelDepth bounds nesting in a model, as the schema loader bounds it.
const maxModelDepth = 64

// nodeOf converts a JSON model to a YAML node, keeping key order.
func nodeOf(model json.RawMessage) (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(model))
	dec.UseNumber()
	n, err := decodeValue(dec, 0)
	if err != nil {
		return nil, fmt.Errorf("reading the model: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("reading the model: more than one JSON value")
	}
	return &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{n}}, nil
}

func decodeValue(dec *json.Decoder, depth int) (*yaml.Node, error) {
	if depth > maxModelDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxModelDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch v := tok.(type) {
	case json.Delim:
		n := &yaml.Node{Kind: yaml.MappingNode}
		end := json.Delim('}')
		if v == '[' {
			n.Kind, end = yaml.SequenceNode, ']'
		}
		for dec.More() {
			if n.Kind == yaml.MappingNode {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k.(string)})
			}
			c, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		if tok, err := dec.Token(); err != nil || tok != end {
			return nil, fmt.Errorf("unbalanced %v", v)
		}
		return n, nil
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}, nil
	case json.Number:
		tag := "!!float"
		if _, err := strconv.ParseInt(v.String(), 10, 64); err == nil {
			tag = "!!int"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v.String()}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v)}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected %v", tok)
}

// modelOf converts YAML text to its JSON model, keeping key order. The text
// was parsed by the schema loader first, which reports syntax errors and
// bounds aliases; a document it cannot represent yields an error.
func modelOf(text []byte) (json.RawMessage, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("empty document")
	}
	var b bytes.Buffer
	if err := jsonOf(&b, doc.Content[0], 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// modelOfNode is the JSON model of a YAML node.
func modelOfNode(n *yaml.Node) (json.RawMessage, error) {
	var b bytes.Buffer
	if err := jsonOf(&b, n, 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func jsonOf(b *bytes.Buffer, n *yaml.Node, depth int) error {
	for i := 0; n.Kind == yaml.AliasNode && i < maxModelDepth; i++ {
		n = n.Alias
	}
	if depth > maxModelDepth || n.Kind == yaml.AliasNode {
		return fmt.Errorf("nested deeper than %d levels", maxModelDepth)
	}
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(n.Content[i].Value)
			b.Write(k)
			b.WriteByte(':')
			if err := jsonOf(b, n.Content[i+1], depth+1); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := jsonOf(b, c, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		var v any = n.Value
		switch n.ShortTag() {
		case "!!int", "!!float", "!!bool", "!!null":
			if err := n.Decode(&v); err != nil {
				v = n.Value
			}
		}
		out, err := json.Marshal(v)
		if err != nil { // NaN and infinities have no JSON form: keep the text
			out, _ = json.Marshal(n.Value)
		}
		b.Write(out)
	default:
		return fmt.Errorf("unsupported YAML node at line %d", n.Line)
	}
	return nil
}

// spans locates each field item of a schema document by its first line, so
// that a message naming a line lands on the field it is about. Field ids
// are the positions in the nested fields lists, joined by dots ("3.0.2");
// "" is the top of the file.
type spans []span

type span struct {
	id         string
	start, end int // lines, inclusive
}

func spansOf(text []byte) spans {
	var doc yaml.Node
	if yaml.Unmarshal(text, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	var out spans
	var walk func(m *yaml.Node, prefix string, end int)
	walk = func(m *yaml.Node, prefix string, end int) {
		if m.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value != "fields" || m.Content[i+1].Kind != yaml.SequenceNode {
				continue
			}
			items := m.Content[i+1].Content
			for j, it := range items {
				stop := end
				if j+1 < len(items) {
					stop = items[j+1].Line - 1
				}
				id := prefix + strconv.Itoa(j)
				out = append(out, span{id: id, start: it.Line, end: stop})
				walk(it, id+".", stop)
			}
		}
	}
	walk(doc.Content[0], "", 1<<30)
	return out
}

// at returns the id of the innermost field item holding line.
func (s spans) at(line int) string {
	id, size := "", 1<<31
	for _, sp := range s {
		if line >= sp.start && line <= sp.end && sp.end-sp.start < size {
			id, size = sp.id, sp.end-sp.start
		}
	}
	return id
}
