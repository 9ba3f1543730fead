package opensearch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/flusso/flusso/pkg/sink"
)

// op is one bulk item: the action line, newline-terminated, and for an
// index action the document, which is not copied until the request body is
// (documents are most of a writer's memory traffic).
type op struct {
	doc    int // position in the docs given to Write
	lines  []byte
	source []byte
}

// size is the item's length in the request body.
func (o op) size() int {
	if o.source == nil {
		return len(o.lines)
	}
	return len(o.lines) + len(o.source) + 1
}

// action is the metadata line of a bulk item.
type action struct {
	Index       string `json:"_index"`
	ID          string `json:"_id"`
	Version     uint64 `json:"version"`
	VersionType string `json:"version_type"`
	// RequireAlias keeps a write meant for the current generation from
	// creating an index when the alias is gone.
	RequireAlias bool `json:"require_alias,omitempty"`
}

// inFlight is how many bulk requests of one Write may be outstanding.
const inFlight = 2

// Write applies docs with bulk requests of at most BatchSize items and
// MaxBytes bytes (an item larger than that goes alone). Items OpenSearch
// refuses for what they are come back as rejections; transient failures,
// whole or per item, are retried; anything else fails the call.
func (s *Sink) Write(ctx context.Context, docs []sink.Doc) ([]sink.Rejection, error) {
	if len(docs) == 0 {
		return nil, nil
	}
	rejected := map[int]string{}
	ops, err := s.plan(ctx, docs, rejected)
	if err != nil {
		return nil, fmt.Errorf("write to %s: %w", s.cfg.Name, err)
	}
	// Chunks go out concurrently, a few at a time: one request in flight
	// leaves OpenSearch idle while the next is encoded and sent. Versions
	// keep concurrent chunks from reordering builds of one document.
	parts := chunks(ops, s.cfg.BatchSize, s.cfg.MaxBytes)
	found := make([]map[int]string, len(parts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	for i, chunk := range parts {
		found[i] = map[int]string{}
		g.Go(func() error { return s.bulk(gctx, chunk, docs, found[i]) })
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("write to %s: %w", s.cfg.Name, err)
	}
	for _, f := range found {
		for i, reason := range f {
			if _, ok := rejected[i]; !ok {
				rejected[i] = reason
			}
		}
	}
	if len(rejected) == 0 {
		return nil, nil
	}
	positions := make([]int, 0, len(rejected))
	for i := range rejected {
		positions = append(positions, i)
	}
	slices.Sort(positions)
	out := make([]sink.Rejection, len(positions))
	for k, i := range positions {
		out[k] = sink.Rejection{Doc: docs[i], Reason: rejected[i]}
	}
	return out, nil
}

// bulkAction holds the action of one bulk item under its verb. It is a
// struct, not a one-key map, because json.Marshal of a map allocates and
// sorts: with one action line per document that was 3x slower.
type bulkAction struct {
	Index  *action `json:"index,omitempty"`
	Delete *action `json:"delete,omitempty"`
}

// actionLine is the newline-terminated metadata line of one bulk item.
func actionLine(verb string, a action) ([]byte, error) {
	var ba bulkAction
	switch verb {
	case "index":
		ba.Index = &a
	case "delete":
		ba.Delete = &a
	default:
		return nil, fmt.Errorf("unknown bulk action %q", verb)
	}
	line, err := json.Marshal(ba)
	if err != nil {
		return nil, err
	}
	return append(line, '\n'), nil
}

// target is where a write of one index goes.
type target struct {
	name         string
	requireAlias bool
}

// plan turns docs into bulk items against the generations live right now,
// as the meta documents say; docs that cannot be sent are rejected.
func (s *Sink) plan(ctx context.Context, docs []sink.Doc, rejected map[int]string) ([]op, error) {
	known := map[string]owned{}
	var names []string
	for _, d := range docs {
		if _, ok := known[d.Index]; ok {
			continue
		}
		o, err := s.lookup(d.Index)
		if err != nil {
			return nil, err
		}
		known[d.Index] = o
		names = append(names, d.Index)
	}
	metas, err := s.readMetas(ctx, names)
	if err != nil {
		return nil, err
	}

	var ops []op
	for i, d := range docs {
		o := known[d.Index]
		targets, why := s.targets(o, metas[d.Index], d.Generation)
		if why != "" {
			// Written for a generation that was replaced or abandoned:
			// nothing reads it any more.
			s.log.Warn("dropping a write to a generation that is not live", "index", d.Index, "id", d.ID, "reason", why)
			continue
		}
		var source []byte
		switch d.Op {
		case sink.Upsert:
			switch {
			case len(d.Body) == 0:
				rejected[i] = "upsert without a document"
				continue
			case !validJSON(d.Body):
				rejected[i] = "document is not valid JSON"
				continue
			}
			source = d.Body
			if bytes.IndexByte(source, '\n') >= 0 {
				var b bytes.Buffer
				if err := json.Compact(&b, source); err != nil {
					return nil, err
				}
				source = b.Bytes()
			}
		case sink.Delete:
		default:
			rejected[i] = fmt.Sprintf("unknown operation %d", d.Op)
			continue
		}
		if d.Version > math.MaxInt64 {
			rejected[i] = fmt.Sprintf("version %d exceeds OpenSearch's external version range", d.Version)
			continue
		}
		for _, t := range targets {
			a := action{Index: t.name, ID: d.ID, Version: d.Version, VersionType: "external"}
			verb := "delete"
			if d.Op == sink.Upsert {
				verb, a.RequireAlias = "index", t.requireAlias
			}
			line, err := actionLine(verb, a)
			if err != nil {
				return nil, err
			}
			ops = append(ops, op{doc: i, lines: line, source: source})
		}
	}
	return ops, nil
}

// targets are where a write of generation gen (0: every live one) goes. A
// non-empty reason says the generation is not live.
func (s *Sink) targets(o owned, m metaDoc, gen uint32) ([]target, string) {
	current := target{name: o.hashAlias, requireAlias: true}
	if m.Hash != o.ix.Hash {
		// No meta document, or another deployment's schema: this process
		// only knows its own hash alias.
		return []target{current}, ""
	}
	next := target{name: generationName(o.hashAlias, m.Next)}
	switch {
	case gen == 0 && m.Next != 0:
		return []target{current, next}, ""
	case gen == 0, gen == m.Generation:
		return []target{current}, ""
	case gen == m.Next:
		return []target{next}, ""
	}
	return nil, fmt.Sprintf("generation %d, live are %d and %d", gen, m.Generation, m.Next)
}

// chunks splits ops into bulk requests of at most n items and maxBytes
// bytes; an item larger than maxBytes is a request of its own.
func chunks(ops []op, n, maxBytes int) [][]op {
	var (
		out   [][]op
		start int
		size  int
	)
	for i, o := range ops {
		if i > start && (i-start >= n || size+o.size() > maxBytes) {
			out = append(out, ops[start:i])
			start, size = i, 0
		}
		size += o.size()
	}
	if start < len(ops) {
		out = append(out, ops[start:])
	}
	return out
}

// item is one entry of a bulk response.
type item struct {
	Status int             `json:"status"`
	Result string          `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// outcome of one bulk item.
type outcome int

const (
	applied outcome = iota
	retryItem
	rejectItem
)

func classify(verb string, it item) outcome {
	switch {
	case it.Status >= 200 && it.Status < 300:
		return applied
	case it.Status == http.StatusConflict:
		// The external version is not newer than what the index holds: a
		// newer or the same build is already there.
		return applied
	case verb == "delete" && it.Status == http.StatusNotFound && len(it.Error) == 0:
		// Nothing to delete; the tombstone still records the version.
		return applied
	case transient(it.Status):
		return retryItem
	}
	var e struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(it.Error, &e) == nil && e.Type == "index_not_found_exception" {
		// The target disappeared; worth retrying while aliases move, a
		// failure of the whole write if it stays that way.
		return retryItem
	}
	return rejectItem
}

// bulk sends one chunk, retrying it whole on transient failures and then
// only its transiently failing items, within MaxRetries retries in all.
func (s *Sink) bulk(ctx context.Context, pending []op, docs []sink.Doc, rejected map[int]string) error {
	q := url.Values{"filter_path": {"items.*.status,items.*.result,items.*.error"}}
	if s.cfg.Pipeline != "" {
		q.Set("pipeline", s.cfg.Pipeline)
	}
	return s.retry(ctx, func() (bool, error) {
		n := 0
		for _, o := range pending {
			n += o.size()
		}
		body := bytes.NewBuffer(make([]byte, 0, n))
		for _, o := range pending {
			body.Write(o.lines)
			if o.source != nil {
				body.Write(o.source)
				body.WriteByte('\n')
			}
		}
		resp, err := s.send(ctx, http.MethodPost, request{path: "/_bulk", query: q, body: body.Bytes(), ndjson: true})
		if err != nil {
			return true, fmt.Errorf("bulk request: %w", err)
		}
		if transient(resp.status) {
			return true, fmt.Errorf("bulk request: %w", resp.errorOf())
		}
		if !resp.ok() {
			return false, fmt.Errorf("bulk request refused: %w", resp.errorOf())
		}
		var got struct {
			Items []map[string]item `json:"items"`
		}
		if err := json.Unmarshal(resp.body, &got); err != nil {
			return false, fmt.Errorf("decode bulk response: %w", err)
		}
		if len(got.Items) != len(pending) {
			return false, fmt.Errorf("bulk response has %d items for %d operations", len(got.Items), len(pending))
		}
		var (
			again []op
			first string
		)
		for k, entry := range got.Items {
			for verb, it := range entry {
				switch classify(verb, it) {
				case retryItem:
					if first == "" {
						first = fmt.Sprintf("%s/%s: status %d %s", docs[pending[k].doc].Index, docs[pending[k].doc].ID, it.Status, describe(it.Error))
					}
					again = append(again, pending[k])
				case rejectItem:
					if _, ok := rejected[pending[k].doc]; !ok {
						rejected[pending[k].doc] = fmt.Sprintf("status %d: %s", it.Status, describe(it.Error))
					}
				}
			}
		}
		if len(again) == 0 {
			return false, nil
		}
		pending = again
		return true, fmt.Errorf("%d bulk items failed transiently, first %s", len(again), first)
	})
}
