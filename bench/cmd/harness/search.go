package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// search talks to the OpenSearch the pipelines write to.
type search struct {
	url    string
	client *http.Client
}

func newSearch(url string) *search {
	return &search{url: strings.TrimRight(url, "/"), client: &http.Client{Timeout: 30 * time.Second}}
}

func (s *search) do(ctx context.Context, method, path string, body any) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, rd)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// drop deletes every index (hidden ones too) whose name starts with prefix.
func (s *search) drop(ctx context.Context, prefix string) error {
	b, code, err := s.do(ctx, http.MethodDelete, "/"+prefix+"*?expand_wildcards=all", nil)
	if err != nil {
		return err
	}
	if code >= 300 && code != http.StatusNotFound {
		return fmt.Errorf("deleting %s*: %d %s", prefix, code, b)
	}
	return nil
}

// count is the number of searchable documents of an index or alias; -1
// when it does not exist.
func (s *search) count(ctx context.Context, index string) (int64, error) {
	b, code, err := s.do(ctx, http.MethodGet, "/"+index+"/_count", nil)
	if err != nil {
		return 0, err
	}
	if code == http.StatusNotFound {
		return -1, nil
	}
	if code >= 300 {
		return 0, fmt.Errorf("count %s: %d %s", index, code, b)
	}
	var out struct {
		Count int64 `json:"count"`
	}
	return out.Count, json.Unmarshal(b, &out)
}

// indexed is how many index operations the primaries of the matching
// indexes took, refreshed or not: backfill progress while auto-refresh is
// off.
func (s *search) indexed(ctx context.Context, pattern string) (int64, error) {
	b, code, err := s.do(ctx, http.MethodGet, "/"+pattern+"/_stats/indexing?expand_wildcards=all", nil)
	if err != nil {
		return 0, err
	}
	if code == http.StatusNotFound {
		return 0, nil
	}
	if code >= 300 {
		return 0, fmt.Errorf("stats %s: %d %s", pattern, code, b)
	}
	var out struct {
		All struct {
			Primaries struct {
				Indexing struct {
					IndexTotal int64 `json:"index_total"`
				} `json:"indexing"`
			} `json:"primaries"`
		} `json:"_all"`
	}
	return out.All.Primaries.Indexing.IndexTotal, json.Unmarshal(b, &out)
}

// seeded reads flusso's seeded marker of a logical index from its meta
// index.
func (s *search) seeded(ctx context.Context, metaIndex, logical string) (bool, error) {
	b, code, err := s.do(ctx, http.MethodGet, "/"+metaIndex+"/_doc/"+logical, nil)
	if err != nil {
		return false, err
	}
	if code == http.StatusNotFound {
		return false, nil
	}
	if code >= 300 {
		return false, fmt.Errorf("meta %s/%s: %d %s", metaIndex, logical, code, b)
	}
	var out struct {
		Source struct {
			Seeded bool `json:"seeded"`
		} `json:"_source"`
	}
	return out.Source.Seeded, json.Unmarshal(b, &out)
}

// visible returns which of the probe values are searchable in index.
func (s *search) visible(ctx context.Context, index string, values []int64) (map[int64]bool, error) {
	body := map[string]any{
		"size":    len(values),
		"_source": []string{"probe"},
		"query":   map[string]any{"terms": map[string]any{"probe": values}},
	}
	b, code, err := s.do(ctx, http.MethodPost, "/"+index+"/_search", body)
	if err != nil {
		return nil, err
	}
	if code == http.StatusNotFound {
		return nil, nil
	}
	if code >= 300 {
		return nil, fmt.Errorf("search %s: %d %s", index, code, b)
	}
	var out struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Probe int64 `json:"probe"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	seen := map[int64]bool{}
	for _, h := range out.Hits.Hits {
		seen[h.Source.Probe] = true
	}
	return seen, nil
}

// version is OpenSearch's version number.
func (s *search) version(ctx context.Context) string {
	b, _, err := s.do(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return "unknown"
	}
	var out struct {
		Version struct {
			Number       string `json:"number"`
			Distribution string `json:"distribution"`
		} `json:"version"`
	}
	if json.Unmarshal(b, &out) != nil {
		return "unknown"
	}
	return strings.TrimSpace(out.Version.Distribution + " " + out.Version.Number)
}
