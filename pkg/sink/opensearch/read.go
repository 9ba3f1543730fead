package opensearch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/flusso/flusso/pkg/flow"
)

// Reading back what the sink holds, for `flusso audit`. Reads go to the
// hash alias, the generation readers see, and never create or change
// anything: an audit may run against a deployment that is stopped, or that
// another process owns.

// Stored is one document as the index holds it.
type Stored struct {
	ID      string
	Version uint64 // the external version: the commit LSN it was built at
	Body    json.RawMessage
}

// Served is the name the sink serves index ix under: its hash alias.
func (s *Sink) Served(ix flow.Index) string { return s.hashAlias(ix.Name, ix.Hash) }

// Serves checks that the sink serves index ix, its hash alias, and
// reports whether it holds a complete seed of it: until then a backfill is
// still filling it.
func (s *Sink) Serves(ctx context.Context, ix flow.Index) (seeded bool, err error) {
	target := s.Served(ix)
	resp, err := s.callOK(ctx, http.MethodHead, request{path: "/" + url.PathEscape(target)}, http.StatusNotFound)
	if err != nil {
		return false, fmt.Errorf("looking up %s: %w", target, err)
	}
	if resp.status == http.StatusNotFound {
		return false, fmt.Errorf("sink %s has no index %s (index %s with this schema): has the pipeline prepared it?", s.cfg.Name, target, ix.Name)
	}
	m, v, err := s.readMeta(ctx, ix.Name)
	if err != nil {
		return false, err
	}
	return v.found && m.Hash == ix.Hash && m.Seeded, nil
}

// Get reads the documents ids of index ix in real time (no refresh
// needed); ids the index does not hold are absent from the map.
func (s *Sink) Get(ctx context.Context, ix flow.Index, ids []string) (map[string]Stored, error) {
	target := s.Served(ix)
	body, err := json.Marshal(map[string]any{"ids": ids})
	if err != nil {
		return nil, err
	}
	resp, err := s.call(ctx, http.MethodPost, request{path: "/" + url.PathEscape(target) + "/_mget", body: body})
	if err != nil {
		return nil, fmt.Errorf("reading %d documents of %s: %w", len(ids), target, err)
	}
	if resp.status == http.StatusNotFound {
		return nil, fmt.Errorf("sink %s has no index %s (index %s with this schema): has the pipeline prepared it?", s.cfg.Name, target, ix.Name)
	}
	if !resp.ok() {
		return nil, fmt.Errorf("reading %d documents of %s: %w", len(ids), target, resp.errorOf())
	}
	var got struct {
		Docs []struct {
			ID      string          `json:"_id"`
			Found   bool            `json:"found"`
			Version uint64          `json:"_version"`
			Source  json.RawMessage `json:"_source"`
			Error   json.RawMessage `json:"error"`
		} `json:"docs"`
	}
	if err := json.Unmarshal(resp.body, &got); err != nil {
		return nil, fmt.Errorf("decoding documents of %s: %w", target, err)
	}
	out := make(map[string]Stored, len(got.Docs))
	for _, d := range got.Docs {
		if len(d.Error) > 0 {
			return nil, fmt.Errorf("reading document %s of %s: %s", d.ID, target, describe(d.Error))
		}
		if d.Found {
			out[d.ID] = Stored{ID: d.ID, Version: d.Version, Body: d.Source}
		}
	}
	return out, nil
}

// EachID hands fn the ids index ix holds, a page at a time, after a
// refresh made everything written so far searchable. Ids come shard by
// shard in _seq_no order, like a purge's.
func (s *Sink) EachID(ctx context.Context, ix flow.Index, fn func(ids []string) error) error {
	target := s.Served(ix)
	if _, err := s.callOK(ctx, http.MethodPost, request{path: "/" + url.PathEscape(target) + "/_refresh"}); err != nil {
		return fmt.Errorf("refreshing %s: %w", target, err)
	}
	all, err := s.search(ctx, target, "", map[string]any{"size": 0, "track_total_hits": false})
	if err != nil {
		return fmt.Errorf("listing ids of %s: %w", target, err)
	}
	for shard := range all.Shards.Total {
		// Ids alone are small: the largest page a search returns.
		if err := s.eachShardID(ctx, target, shard, maxPage, fn); err != nil {
			return fmt.Errorf("listing ids of %s shard %d: %w", target, shard, err)
		}
	}
	return nil
}

// eachShardID pages through one shard's ids in _seq_no order, page at a
// time (at most maxPage), up to the
// highest sequence number when it starts, so that steady writes cannot keep
// it going: what is written after the start was written by the pipeline
// after it, and callers that need it look again.
func (s *Sink) eachShardID(ctx context.Context, target string, shard, page int, fn func(ids []string) error) error {
	preference := "_shards:" + strconv.Itoa(shard)
	top, err := s.search(ctx, target, preference, map[string]any{
		"size": 1, "_source": false, "track_total_hits": false,
		"sort": []any{map[string]any{"_seq_no": "desc"}},
	})
	if err != nil {
		return fmt.Errorf("find the highest sequence number: %w", err)
	}
	if len(top.Hits.Hits) == 0 {
		return nil
	}
	ceiling, err := top.Hits.Hits[0].seqNo()
	if err != nil {
		return err
	}
	for after := int64(-1); ; {
		got, err := s.search(ctx, target, preference, map[string]any{
			"size": page, "_source": false, "track_total_hits": false,
			"query": map[string]any{"range": map[string]any{"_seq_no": map[string]any{"gt": after, "lte": ceiling}}},
			"sort":  []any{map[string]any{"_seq_no": "asc"}},
		})
		if err != nil {
			return fmt.Errorf("list ids after sequence number %d: %w", after, err)
		}
		hits := got.Hits.Hits
		if len(hits) == 0 {
			return nil
		}
		ids := make([]string, len(hits))
		for i, h := range hits {
			ids[i] = h.ID
		}
		if err := fn(ids); err != nil {
			return err
		}
		if after, err = hits[len(hits)-1].seqNo(); err != nil {
			return err
		}
	}
}

// SampleIDs returns up to n ids of index ix picked at random.
func (s *Sink) SampleIDs(ctx context.Context, ix flow.Index, n int) ([]string, error) {
	target := s.Served(ix)
	got, err := s.search(ctx, target, "", map[string]any{
		"size": min(n, maxPage), "_source": false, "track_total_hits": false,
		"query": map[string]any{"function_score": map[string]any{"random_score": map[string]any{}}},
	})
	if err != nil {
		return nil, fmt.Errorf("sampling ids of %s: %w", target, err)
	}
	ids := make([]string, len(got.Hits.Hits))
	for i, h := range got.Hits.Hits {
		ids[i] = h.ID
	}
	return ids, nil
}
