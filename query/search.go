package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
)

// Request is one search.
type Request struct {
	Query Query  // nil matches every document
	Sort  []Sort // none sorts by score
	Size  int    // hits per page; 0 means 10
	From  int    // hits to skip (use After to page deep)
	// After is the Sort of the last hit of the previous page: the page
	// starts after it (search_after). The sort must end with a unique
	// field; All adds the index's Tiebreak.
	After []json.RawMessage
	Aggs  map[string]Agg
}

func (r Request) body() map[string]any {
	b := map[string]any{}
	if r.Query != nil {
		b["query"] = r.Query.clause()
	}
	if len(r.Sort) > 0 {
		sorts := make([]any, len(r.Sort))
		for i, s := range r.Sort {
			sorts[i] = s.body()
		}
		b["sort"] = sorts
	}
	if r.Size > 0 {
		b["size"] = r.Size
	}
	if r.From > 0 {
		b["from"] = r.From
	}
	if len(r.After) > 0 {
		b["search_after"] = r.After
	}
	if len(r.Aggs) > 0 {
		b["aggs"] = aggBodies(r.Aggs)
	}
	return b
}

// Hit is one document found.
type Hit[T any] struct {
	ID     string
	Score  float64
	Sort   []json.RawMessage // the hit's sort values, for Request.After
	Source json.RawMessage   // the document as stored
	Doc    T                 // the document decoded
}

// Result is one page of hits.
type Result[T any] struct {
	Total int64 // every document matching, not only this page's
	Hits  []Hit[T]
	aggs  map[string]json.RawMessage
}

type searchAnswer struct {
	Hits struct {
		Total struct {
			Value int64 `json:"value"`
		} `json:"total"`
		Hits []struct {
			ID     string            `json:"_id"`
			Score  *float64          `json:"_score"`
			Sort   []json.RawMessage `json:"sort"`
			Source json.RawMessage   `json:"_source"`
		} `json:"hits"`
	} `json:"hits"`
	Aggregations map[string]json.RawMessage `json:"aggregations"`
}

// Search runs req on the index ix and decodes the hits into T.
func Search[T any](ctx context.Context, c *Client, ix Index[T], req Request) (*Result[T], error) {
	body := req.body()
	body["track_total_hits"] = true
	var a searchAnswer
	if _, err := c.call(ctx, ix, http.MethodPost, "/_search", body, &a); err != nil {
		return nil, err
	}
	res := &Result[T]{Total: a.Hits.Total.Value, aggs: a.Aggregations}
	for _, h := range a.Hits.Hits {
		hit := Hit[T]{ID: h.ID, Sort: h.Sort, Source: h.Source}
		if h.Score != nil {
			hit.Score = *h.Score
		}
		if err := json.Unmarshal(h.Source, &hit.Doc); err != nil {
			return nil, fmt.Errorf("query: index %s: decode document %s into %T: %w", ix.Name(c.prefix), h.ID, hit.Doc, err)
		}
		res.Hits = append(res.Hits, hit)
	}
	return res, nil
}

// All returns every hit of req, page after page of req.Size (default 100)
// with search_after. req.Sort must be set; the index's Tiebreak is added
// to it when missing. It stops at the first error, which it yields.
func All[T any](ctx context.Context, c *Client, ix Index[T], req Request) iter.Seq2[Hit[T], error] {
	return func(yield func(Hit[T], error) bool) {
		if len(req.Sort) == 0 {
			yield(Hit[T]{}, errors.New("query: All needs a sort to page with search_after"))
			return
		}
		if ix.Tiebreak != "" && !sortsBy(req.Sort, ix.Tiebreak) {
			req.Sort = append(req.Sort[:len(req.Sort):len(req.Sort)], Asc(ix.Tiebreak))
		}
		if req.Size == 0 {
			req.Size = 100
		}
		req.From = 0
		for {
			res, err := Search(ctx, c, ix, req)
			if err != nil {
				yield(Hit[T]{}, err)
				return
			}
			for _, h := range res.Hits {
				if !yield(h, nil) {
					return
				}
			}
			if len(res.Hits) < req.Size {
				return
			}
			req.After = res.Hits[len(res.Hits)-1].Sort
		}
	}
}

func sortsBy(sorts []Sort, f Field) bool {
	for _, s := range sorts {
		if s.Field == f {
			return true
		}
	}
	return false
}

// Count is the number of documents of ix that q matches (every document
// when q is nil).
func Count[T any](ctx context.Context, c *Client, ix Index[T], q Query) (int64, error) {
	var body any
	if q != nil {
		body = map[string]any{"query": q.clause()}
	}
	var a struct {
		Count int64 `json:"count"`
	}
	if _, err := c.call(ctx, ix, http.MethodPost, "/_count", body, &a); err != nil {
		return 0, err
	}
	return a.Count, nil
}

// Get reads the document with id (the root row's primary key, as text);
// found is false when there is none.
func Get[T any](ctx context.Context, c *Client, ix Index[T], id string) (doc T, found bool, err error) {
	var a struct {
		Found  bool            `json:"found"`
		Source json.RawMessage `json:"_source"`
	}
	// The hash alias points at one index, so a get through it is allowed.
	notFound, err := c.call(ctx, ix, http.MethodGet, "/_doc/"+url.PathEscape(id), nil, &a)
	if err != nil || notFound || !a.Found {
		return doc, false, err
	}
	if err := json.Unmarshal(a.Source, &doc); err != nil {
		return doc, false, fmt.Errorf("query: index %s: decode document %s into %T: %w", ix.Name(c.prefix), id, doc, err)
	}
	return doc, true, nil
}

// Bucket is one value of a TermsAgg with the number of documents holding
// it. Key is a string, a json.Number or a bool.
type Bucket struct {
	Key      any
	DocCount int64
}

// Terms reads the buckets of the TermsAgg named name.
func (r *Result[T]) Terms(name string) ([]Bucket, error) {
	var a struct {
		Buckets []struct {
			Key      json.RawMessage `json:"key"`
			DocCount int64           `json:"doc_count"`
		} `json:"buckets"`
	}
	if err := r.agg(name, &a); err != nil {
		return nil, err
	}
	out := make([]Bucket, len(a.Buckets))
	for i, b := range a.Buckets {
		out[i].DocCount = b.DocCount
		if err := decodeNumber(b.Key, &out[i].Key); err != nil {
			return nil, fmt.Errorf("query: aggregation %s: %w", name, err)
		}
	}
	return out, nil
}

// Stats is the result of a StatsAgg; Min, Max, Avg are nil over no values.
type Stats struct {
	Count         int64
	Min, Max, Avg *float64
	Sum           float64
}

// Stats reads the StatsAgg named name.
func (r *Result[T]) Stats(name string) (Stats, error) {
	var a struct {
		Count int64    `json:"count"`
		Min   *float64 `json:"min"`
		Max   *float64 `json:"max"`
		Avg   *float64 `json:"avg"`
		Sum   float64  `json:"sum"`
	}
	err := r.agg(name, &a)
	return Stats{Count: a.Count, Min: a.Min, Max: a.Max, Avg: a.Avg, Sum: a.Sum}, err
}

// Cardinality reads the CardinalityAgg named name.
func (r *Result[T]) Cardinality(name string) (int64, error) {
	var a struct {
		Value int64 `json:"value"`
	}
	err := r.agg(name, &a)
	return a.Value, err
}

// Nested reads the NestedAgg named name: the number of elements it saw, and
// its aggregations as a result of their own.
func (r *Result[T]) Nested(name string) (int64, *Result[T], error) {
	var a map[string]json.RawMessage
	if err := r.agg(name, &a); err != nil {
		return 0, nil, err
	}
	var n int64
	if err := json.Unmarshal(a["doc_count"], &n); err != nil {
		return 0, nil, fmt.Errorf("query: aggregation %s: doc_count: %w", name, err)
	}
	delete(a, "doc_count")
	return n, &Result[T]{aggs: a}, nil
}

func (r *Result[T]) agg(name string, out any) error {
	raw, ok := r.aggs[name]
	if !ok {
		return fmt.Errorf("query: no aggregation %q in the result", name)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("query: aggregation %s: %w", name, err)
	}
	return nil
}

func decodeNumber(b []byte, out *any) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if _, ok := v.(float64); ok {
		v = json.Number(string(b))
	}
	*out = v
	return nil
}
