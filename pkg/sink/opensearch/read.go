package opensearch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

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

// scrollPage is how many ids one page of EachID's scroll holds.
const scrollPage = 5000

// EachID hands fn the ids index ix holds, a page at a time, after a
// refresh made everything written so far searchable. It scrolls in index
// order, the cheapest listing, over the point in time of its first page.
// A page is asked for once: a retry after a lost answer would skip one,
// so any failure ends the listing (a purge, which must not fail, pages by
// _seq_no instead).
func (s *Sink) EachID(ctx context.Context, ix flow.Index, fn func(ids []string) error) error {
	target := s.Served(ix)
	if _, err := s.callOK(ctx, http.MethodPost, request{path: "/" + url.PathEscape(target) + "/_refresh"}); err != nil {
		return fmt.Errorf("refreshing %s: %w", target, err)
	}
	body, err := json.Marshal(map[string]any{"size": scrollPage, "_source": false, "sort": []string{"_doc"}})
	if err != nil {
		return err
	}
	q := url.Values{"scroll": {"1m"}, "filter_path": {"_scroll_id,timed_out,_shards,hits.hits._id"}}
	r := request{path: "/" + url.PathEscape(target) + "/_search", query: q, body: body}
	var scrollID string
	defer func() {
		if scrollID != "" {
			b, _ := json.Marshal(map[string]any{"scroll_id": scrollID})
			_, _ = s.send(context.WithoutCancel(ctx), http.MethodDelete, request{path: "/_search/scroll", body: b})
		}
	}()
	for {
		resp, err := s.send(ctx, http.MethodPost, r)
		if err != nil {
			return fmt.Errorf("listing ids of %s: %w", target, err)
		}
		if !resp.ok() {
			return fmt.Errorf("listing ids of %s: %w", target, resp.errorOf())
		}
		var page struct {
			searchResult
			ScrollID string `json:"_scroll_id"`
		}
		if err := json.Unmarshal(resp.body, &page); err != nil {
			return fmt.Errorf("decoding ids of %s: %w", target, err)
		}
		scrollID = page.ScrollID
		if err := incomplete(page.searchResult, false); err != nil {
			return fmt.Errorf("listing ids of %s: %w", target, err)
		}
		if len(page.Hits.Hits) == 0 {
			return nil
		}
		ids := make([]string, len(page.Hits.Hits))
		for i, h := range page.Hits.Hits {
			ids[i] = h.ID
		}
		if err := fn(ids); err != nil {
			return err
		}
		if body, err = json.Marshal(map[string]any{"scroll": "1m", "scroll_id": scrollID}); err != nil {
			return err
		}
		r = request{path: "/_search/scroll", query: url.Values{"filter_path": {"_scroll_id,timed_out,_shards,hits.hits._id"}}, body: body}
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
