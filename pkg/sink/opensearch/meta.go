package opensearch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// metaDoc is the flusso_meta document of one logical index.
type metaDoc struct {
	Index      string `json:"index"`
	Hash       string `json:"hash"`
	Generation uint32 `json:"generation"`
	// Next is the generation a reindex is building, 0 when none.
	Next      uint32     `json:"next_generation"`
	Seeded    bool       `json:"seeded"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	SeededAt  *time.Time `json:"seeded_at,omitempty"`
}

// metaVersion is what a conditional write of a meta document checks: the
// sequence number and primary term it was read at, or absent.
type metaVersion struct {
	found       bool
	seqNo       int64
	primaryTerm int64
}

// metaMapping keeps the documents searchable by hand; dynamic false lets a
// later version add fields without a mapping change.
var metaMapping = map[string]any{
	"dynamic": false,
	"properties": map[string]any{
		"index":           map[string]any{"type": "keyword"},
		"hash":            map[string]any{"type": "keyword"},
		"generation":      map[string]any{"type": "long"},
		"next_generation": map[string]any{"type": "long"},
		"seeded":          map[string]any{"type": "boolean"},
		"created_at":      map[string]any{"type": "date"},
		"updated_at":      map[string]any{"type": "date"},
		"seeded_at":       map[string]any{"type": "date"},
	},
}

// ensureMetaIndex creates the hidden indexes of the sink's own records, the
// meta documents and the tombstones, once per sink.
func (s *Sink) ensureMetaIndex(ctx context.Context) error {
	s.mu.Lock()
	ready := s.metaReady
	s.mu.Unlock()
	if ready {
		return nil
	}
	for name, mapping := range map[string]map[string]any{s.metaIndex(): metaMapping, s.tombstoneIndex(): tombstoneMapping} {
		body, err := json.Marshal(map[string]any{
			"settings": map[string]any{
				"index": map[string]any{
					"hidden":               true,
					"number_of_shards":     1,
					"auto_expand_replicas": "0-1",
				},
			},
			"mappings": mapping,
		})
		if err != nil {
			return err
		}
		if _, err := s.createIndex(ctx, name, body); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
	}
	s.mu.Lock()
	s.metaReady = true
	s.mu.Unlock()
	return nil
}

// readMeta reads the meta document of a logical index.
func (s *Sink) readMeta(ctx context.Context, logical string) (metaDoc, metaVersion, error) {
	resp, err := s.callOK(ctx, http.MethodGet, request{
		path: "/" + url.PathEscape(s.metaIndex()) + "/_doc/" + url.PathEscape(logical),
	}, http.StatusNotFound)
	if err != nil {
		return metaDoc{}, metaVersion{}, fmt.Errorf("read %s/%s: %w", s.metaIndex(), logical, err)
	}
	var got struct {
		Found       bool    `json:"found"`
		SeqNo       int64   `json:"_seq_no"`
		PrimaryTerm int64   `json:"_primary_term"`
		Source      metaDoc `json:"_source"`
	}
	if resp.status == http.StatusNotFound {
		return metaDoc{}, metaVersion{}, nil
	}
	if err := json.Unmarshal(resp.body, &got); err != nil {
		return metaDoc{}, metaVersion{}, fmt.Errorf("decode %s/%s: %w", s.metaIndex(), logical, err)
	}
	if !got.Found {
		return metaDoc{}, metaVersion{}, nil
	}
	return got.Source, metaVersion{found: true, seqNo: got.SeqNo, primaryTerm: got.PrimaryTerm}, nil
}

// readMetas reads the meta documents of several logical indexes in one
// realtime request; absent ones are missing from the map.
func (s *Sink) readMetas(ctx context.Context, logical []string) (map[string]metaDoc, error) {
	body, err := json.Marshal(map[string]any{"ids": logical})
	if err != nil {
		return nil, err
	}
	resp, err := s.callOK(ctx, http.MethodPost, request{
		path: "/" + url.PathEscape(s.metaIndex()) + "/_mget",
		body: body,
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.metaIndex(), err)
	}
	var got struct {
		Docs []struct {
			ID     string  `json:"_id"`
			Found  bool    `json:"found"`
			Source metaDoc `json:"_source"`
		} `json:"docs"`
	}
	if err := json.Unmarshal(resp.body, &got); err != nil {
		return nil, fmt.Errorf("decode %s: %w", s.metaIndex(), err)
	}
	out := make(map[string]metaDoc, len(got.Docs))
	for _, d := range got.Docs {
		if d.Found {
			out[d.ID] = d.Source
		}
	}
	return out, nil
}

// writeMeta stores a meta document if it is still at version v; errConflict
// says another process changed it since.
func (s *Sink) writeMeta(ctx context.Context, m metaDoc, v metaVersion) error {
	m.UpdatedAt = time.Now().UTC()
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	q := url.Values{}
	if v.found {
		q.Set("if_seq_no", strconv.FormatInt(v.seqNo, 10))
		q.Set("if_primary_term", strconv.FormatInt(v.primaryTerm, 10))
	} else {
		q.Set("op_type", "create")
	}
	resp, err := s.callOK(ctx, http.MethodPut, request{
		path:  "/" + url.PathEscape(s.metaIndex()) + "/_doc/" + url.PathEscape(m.Index),
		query: q,
		body:  body,
	}, http.StatusConflict)
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", s.metaIndex(), m.Index, err)
	}
	if resp.status == http.StatusConflict {
		return errConflict
	}
	return nil
}
