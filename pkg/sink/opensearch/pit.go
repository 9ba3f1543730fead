package opensearch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/flusso/flusso/pkg/flow"
)

// PointInTime is an index as it was when it was opened: reads through it
// see no write or delete made since. An audit reads the documents it
// compares through one, so that their number, against the count of the
// same view, tells whether the index holds any other id.
type PointInTime struct {
	s      *Sink
	target string
	mu     sync.Mutex
	id     string // a search may answer with a new one
}

// pitKeepAlive is how long a point in time outlives the last read of it.
const pitKeepAlive = "5m"

// PointInTime refreshes index ix, so that everything written so far is in
// it, and opens a point in time of it (OpenSearch 2.4 and later).
func (s *Sink) PointInTime(ctx context.Context, ix flow.Index) (*PointInTime, error) {
	target := s.Served(ix)
	path := "/" + url.PathEscape(target)
	if _, err := s.callOK(ctx, http.MethodPost, request{path: path + "/_refresh"}); err != nil {
		return nil, fmt.Errorf("refreshing %s: %w", target, err)
	}
	resp, err := s.callOK(ctx, http.MethodPost, request{path: path + "/_search/point_in_time", query: url.Values{"keep_alive": {pitKeepAlive}}})
	if err != nil {
		return nil, fmt.Errorf("opening a point in time of %s: %w", target, err)
	}
	var got struct {
		ID string `json:"pit_id"`
	}
	if err := json.Unmarshal(resp.body, &got); err != nil || got.ID == "" {
		return nil, fmt.Errorf("opening a point in time of %s: no pit_id in %s", target, truncate(string(resp.body), 300))
	}
	return &PointInTime{s: s, target: target, id: got.ID}, nil
}

// Close releases the point in time.
func (p *PointInTime) Close(ctx context.Context) error {
	body, err := json.Marshal(map[string]any{"pit_id": []string{p.pit()}})
	if err != nil {
		return err
	}
	if _, err := p.s.callOK(context.WithoutCancel(ctx), http.MethodDelete, request{path: "/_search/point_in_time", body: body}, http.StatusNotFound); err != nil {
		return fmt.Errorf("closing a point in time of %s: %w", p.target, err)
	}
	return nil
}

func (p *PointInTime) pit() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.id
}

// Get reads the documents ids as the point in time holds them; ids it
// does not hold are absent from the map.
func (p *PointInTime) Get(ctx context.Context, ids []string) (map[string]Stored, error) {
	// No filter_path: filtering makes OpenSearch parse and write each
	// _source again instead of copying the bytes it keeps.
	got, err := p.search(ctx, map[string]any{
		"size": len(ids), "version": true, "track_total_hits": false,
		"query": map[string]any{"ids": map[string]any{"values": ids}},
	})
	if err != nil {
		return nil, fmt.Errorf("reading %d documents of %s: %w", len(ids), p.target, err)
	}
	out := make(map[string]Stored, len(got.Hits.Hits))
	for _, h := range got.Hits.Hits {
		out[h.ID] = Stored{ID: h.ID, Version: h.Version, Body: h.Source}
	}
	return out, nil
}

// Count is how many documents the point in time holds.
func (p *PointInTime) Count(ctx context.Context) (int64, error) {
	got, err := p.search(ctx, map[string]any{"size": 0, "track_total_hits": true})
	if err != nil {
		return 0, fmt.Errorf("counting the documents of %s: %w", p.target, err)
	}
	if t := got.Hits.Total; t.Relation != "eq" {
		return 0, fmt.Errorf("counting the documents of %s: the total is %q %d", p.target, t.Relation, t.Value)
	}
	return got.Hits.Total.Value, nil
}

// pitAnswer is the answer to a search of a point in time.
type pitAnswer struct {
	searchResult        // its shards; Hits below stands for its hits
	PitID        string `json:"pit_id"`
	Hits         struct {
		Total struct {
			Value    int64  `json:"value"`
			Relation string `json:"relation"`
		} `json:"total"`
		Hits []struct {
			ID      string          `json:"_id"`
			Version uint64          `json:"_version"`
			Source  json.RawMessage `json:"_source"`
		} `json:"hits"`
	} `json:"hits"`
}

// search runs a search of the point in time, retrying transient failures
// and answers missing shards.
func (p *PointInTime) search(ctx context.Context, body map[string]any) (pitAnswer, error) {
	body["pit"] = map[string]any{"id": p.pit(), "keep_alive": pitKeepAlive}
	raw, err := json.Marshal(body)
	if err != nil {
		return pitAnswer{}, err
	}
	got, err := searchAs[pitAnswer](ctx, p.s, request{path: "/_search", body: raw}, false)
	if err == nil && got.PitID != "" {
		p.mu.Lock()
		p.id = got.PitID
		p.mu.Unlock()
	}
	return got, err
}
