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
	"time"

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

	retries int    // of a failure that may pass (retryItem)
	failure string // the item's last failure
	// upsert marks a document's index action (not a tombstone's): one that
	// creates its document may be bringing a deleted one back (rebury).
	upsert bool
}

// chunkResult is what the bulk requests of one chunk found.
type chunkResult struct {
	rejected map[int]string // reason by document position
	revived  []revival
}

// reject records the first reason a document was refused for.
func (r *chunkResult) reject(doc int, reason string) {
	if r.rejected == nil {
		r.rejected = map[int]string{}
	}
	if _, ok := r.rejected[doc]; !ok {
		r.rejected[doc] = reason
	}
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
// refuses for what they are, or for their size (413), come back as
// rejections. Backpressure and outages, whole or per item, are waited out
// for as long as ctx lasts; other failures that may pass are retried
// MaxRetries times (see pause); anything else fails the call.
func (s *Sink) Write(ctx context.Context, docs []sink.Doc) ([]sink.Rejection, error) {
	if len(docs) == 0 {
		return nil, nil
	}
	rejected := map[int]string{}
	ops, graves, err := s.plan(ctx, docs, rejected)
	if err != nil {
		return nil, fmt.Errorf("write to %s: %w", s.cfg.Name, err)
	}
	if err := s.bury(ctx, graves, docs); err != nil {
		return nil, fmt.Errorf("write to %s: %w", s.cfg.Name, err)
	}
	// Chunks go out concurrently, a few at a time: one request in flight
	// leaves OpenSearch idle while the next is encoded and sent. Versions
	// keep concurrent chunks from reordering builds of one document.
	parts := chunks(ops, s.cfg.BatchSize, s.cfg.MaxBytes)
	found := make([]chunkResult, len(parts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	for i, chunk := range parts {
		g.Go(func() error {
			if err := s.bulk(gctx, chunk, docs, &found[i]); err != nil {
				return err
			}
			return s.rebury(gctx, found[i].revived, docs)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("write to %s: %w", s.cfg.Name, err)
	}
	for _, f := range found {
		for i, reason := range f.rejected {
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
// as the meta documents say, and each delete into a tombstone (graves);
// docs that cannot be sent are rejected.
func (s *Sink) plan(ctx context.Context, docs []sink.Doc, rejected map[int]string) (ops, graves []op, err error) {
	known := map[string]owned{}
	var names []string
	for _, d := range docs {
		if _, ok := known[d.Index]; ok {
			continue
		}
		o, err := s.lookup(d.Index)
		if err != nil {
			return nil, nil, err
		}
		known[d.Index] = o
		names = append(names, d.Index)
	}
	metas, err := s.readMetas(ctx, names)
	if err != nil {
		return nil, nil, err
	}

	now := time.Now()
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
					return nil, nil, err
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
		if d.Op == sink.Delete {
			grave, err := graveOp(i, s.tombstoneIndex(), o.hashAlias, d.ID, d.Version, now)
			if err != nil {
				return nil, nil, err
			}
			graves = append(graves, grave)
		}
		for _, t := range targets {
			a := action{Index: t.name, ID: d.ID, Version: d.Version, VersionType: "external"}
			verb := "delete"
			if d.Op == sink.Upsert {
				verb, a.RequireAlias = "index", t.requireAlias
			}
			line, err := actionLine(verb, a)
			if err != nil {
				return nil, nil, err
			}
			ops = append(ops, op{doc: i, lines: line, source: source, upsert: d.Op == sink.Upsert})
		}
	}
	return ops, graves, nil
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
	Index  string          `json:"_index"`
	// Term is the shard's primary term: 1 until the shard is recovered
	// (restart, close/open, failover), which forgets deletes (rebury).
	Term int64 `json:"_primary_term"`
}

// outcome of one bulk item.
type outcome int

const (
	applied   outcome = iota
	busyItem          // the cluster is overloaded or the target is moving: retried without end
	retryItem         // may pass: retried MaxRetries times, then rejected
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
	case busy(it.Status):
		return busyItem
	case transient(it.Status):
		return retryItem
	}
	var e struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(it.Error, &e) == nil && e.Type == "index_not_found_exception" {
		// The target disappeared, as it does for a moment while aliases
		// move. Nothing about the document is wrong: it waits for the index.
		return busyItem
	}
	return rejectItem
}

// bulk sends one chunk, retrying it whole while the request fails and then
// only its items that failed (see pause and classify). A chunk refused as
// too large is split.
func (s *Sink) bulk(ctx context.Context, pending []op, docs []sink.Doc, res *chunkResult) error {
	q := url.Values{"filter_path": {"items.*.status,items.*.result,items.*.error,items.*._index,items.*._primary_term"}}
	if s.cfg.Pipeline != "" {
		q.Set("pipeline", s.cfg.Pipeline)
	}
	tooLarge := false
	err := s.retry(ctx, func() error {
		resp, err := s.attempt(ctx, http.MethodPost, request{path: "/_bulk", query: q, body: bulkBody(pending), ndjson: true})
		if err != nil {
			return fmt.Errorf("bulk request: %w", err)
		}
		if resp.status == http.StatusRequestEntityTooLarge {
			tooLarge = true
			return nil
		}
		if !resp.ok() {
			return fmt.Errorf("bulk request refused: %w", resp.errorOf())
		}
		again, err := s.outcomes(resp, pending, res)
		if err != nil || len(again) == 0 {
			return err
		}
		first := docs[again[0].doc]
		pending = again
		// Items that are not busy count their own retries (outcomes).
		return &retryable{err: fmt.Errorf("%d bulk items failed, first %s/%s: %s", len(again), first.Index, first.ID, again[0].failure), busy: true}
	})
	if err != nil || !tooLarge {
		return err
	}
	return s.split(ctx, pending, docs, res)
}

// bulkBody is the request body of ops.
func bulkBody(ops []op) []byte {
	n := 0
	for _, o := range ops {
		n += o.size()
	}
	body := bytes.NewBuffer(make([]byte, 0, n))
	for _, o := range ops {
		body.Write(o.lines)
		if o.source != nil {
			body.Write(o.source)
			body.WriteByte('\n')
		}
	}
	return body.Bytes()
}

// outcomes reads a bulk response to pending: rejected and revived items are
// recorded, the ones to send again returned. An item that may pass but
// keeps failing is rejected after MaxRetries retries.
func (s *Sink) outcomes(resp response, pending []op, res *chunkResult) ([]op, error) {
	var got struct {
		Items []map[string]item `json:"items"`
	}
	if err := json.Unmarshal(resp.body, &got); err != nil {
		return nil, fmt.Errorf("decode bulk response: %w", err)
	}
	if len(got.Items) != len(pending) {
		return nil, fmt.Errorf("bulk response has %d items for %d operations", len(got.Items), len(pending))
	}
	var again []op
	for k, entry := range got.Items {
		for verb, it := range entry {
			o := pending[k]
			o.failure = fmt.Sprintf("status %d: %s", it.Status, describe(it.Error))
			switch classify(verb, it) {
			case applied:
				if o.upsert && it.Result == "created" && it.Term > 1 {
					res.revived = append(res.revived, revival{doc: o.doc, index: it.Index})
				}
			case busyItem:
				again = append(again, o)
			case retryItem:
				if o.retries < s.cfg.MaxRetries {
					o.retries++
					again = append(again, o)
					continue
				}
				res.reject(o.doc, fmt.Sprintf("%s (failed %d times)", o.failure, o.retries+1))
			case rejectItem:
				res.reject(o.doc, o.failure)
			}
		}
	}
	return again, nil
}

// split handles a bulk request the cluster refused as larger than it takes
// (413: http.max_content_length, or a proxy's limit): each half goes on
// its own, and a single item refused alone is rejected with its size, as
// no retry could ever pass.
func (s *Sink) split(ctx context.Context, ops []op, docs []sink.Doc, res *chunkResult) error {
	if len(ops) == 1 {
		d := docs[ops[0].doc]
		res.reject(ops[0].doc, fmt.Sprintf("index %s, document %s: %d bytes, more than sink %s accepts in one request (413 Request Entity Too Large)",
			d.Index, d.ID, len(d.Body), s.cfg.Name))
		return nil
	}
	half := len(ops) / 2
	if err := s.bulk(ctx, ops[:half], docs, res); err != nil {
		return err
	}
	return s.bulk(ctx, ops[half:], docs, res)
}
