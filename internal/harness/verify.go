package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// Result is the outcome of comparing an index with Postgres.
type Result struct {
	Compared   int      // documents Postgres says should exist
	Missing    []string // ids that should exist and do not
	Extra      []string // ids that exist and should not
	Mismatches []string // ids whose document differs
}

// OK reports whether the index equals a fresh build.
func (r Result) OK() bool { return len(r.Missing)+len(r.Extra)+len(r.Mismatches) == 0 }

func (r Result) String() string {
	return fmt.Sprintf("compared %d, missing %d %v, extra %d %v, mismatched %d %v",
		r.Compared, len(r.Missing), first(r.Missing), len(r.Extra), first(r.Extra), len(r.Mismatches), first(r.Mismatches))
}

func first(s []string) []string { return s[:min(len(s), 5)] }

// Compare builds every document of the index fresh from Postgres and
// compares it with what OpenSearch holds under alias.
func Compare(ctx context.Context, dbURL, osURL, alias, name string, ix *schema.Index) (Result, error) {
	var res Result
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return res, fmt.Errorf("connecting to postgres: %w", err)
	}
	defer pool.Close()
	x, err := sqlbuild.Compile(name, ix)
	if err != nil {
		return res, err
	}
	if err := x.Prepare(ctx, pool); err != nil {
		return res, err
	}
	want := map[string]json.RawMessage{}
	err = x.KeyPages(ctx, pool, 2000, func(keys []string) error {
		docs, err := x.Build(ctx, pool, keys)
		if err != nil {
			return err
		}
		for _, d := range docs {
			if d.Err != nil {
				return fmt.Errorf("building %s: %w", d.ID, d.Err)
			}
			if d.Body != nil {
				want[d.ID] = d.Body
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	got, err := Documents(ctx, osURL, alias)
	if err != nil {
		return res, err
	}
	res.Compared = len(want)
	for id, body := range want {
		g, ok := got[id]
		if !ok {
			res.Missing = append(res.Missing, id)
			continue
		}
		var a, b any
		if err := json.Unmarshal(body, &a); err != nil {
			return res, err
		}
		if err := json.Unmarshal(g, &b); err != nil {
			return res, err
		}
		if !reflect.DeepEqual(a, b) {
			res.Mismatches = append(res.Mismatches, fmt.Sprintf("%s: want %s, got %s", id, body, g))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			res.Extra = append(res.Extra, id)
		}
	}
	sort.Strings(res.Missing)
	sort.Strings(res.Extra)
	sort.Strings(res.Mismatches)
	return res, nil
}

// Documents reads every document under alias (after a refresh) by id.
func Documents(ctx context.Context, osURL, alias string) (map[string]json.RawMessage, error) {
	if _, err := do(ctx, http.MethodPost, osURL+"/"+alias+"/_refresh", nil); err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	body, err := do(ctx, http.MethodPost, osURL+"/"+alias+"/_search?scroll=1m", map[string]any{"size": 1000, "sort": []string{"_doc"}})
	for {
		if err != nil {
			return nil, err
		}
		var page struct {
			ScrollID string `json:"_scroll_id"`
			Hits     struct {
				Hits []struct {
					ID     string          `json:"_id"`
					Source json.RawMessage `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, fmt.Errorf("decoding search page: %w", err)
		}
		if len(page.Hits.Hits) == 0 {
			_, _ = do(ctx, http.MethodDelete, osURL+"/_search/scroll", map[string]any{"scroll_id": page.ScrollID})
			return out, nil
		}
		for _, h := range page.Hits.Hits {
			out[h.ID] = h.Source
		}
		body, err = do(ctx, http.MethodPost, osURL+"/_search/scroll", map[string]any{"scroll": "1m", "scroll_id": page.ScrollID})
	}
}

// do sends one request to OpenSearch and returns a 2xx answer; any other status is
// an error.
func do(ctx context.Context, method, url string, body any) ([]byte, error) {
	status, b, err := testenv.OpenSearchDo(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	if status >= 300 {
		return nil, fmt.Errorf("%s %s: %d %s", method, url, status, b)
	}
	return b, nil
}

// Count returns the number of documents under alias after a refresh.
func Count(ctx context.Context, osURL, alias string) (int64, error) {
	if _, err := do(ctx, http.MethodPost, osURL+"/"+alias+"/_refresh", nil); err != nil {
		return 0, err
	}
	body, err := do(ctx, http.MethodGet, osURL+"/"+alias+"/_count", nil)
	if err != nil {
		return 0, err
	}
	var out struct {
		Count int64 `json:"count"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, fmt.Errorf("decoding count: %w", err)
	}
	return out.Count, nil
}

// Get reads some documents under alias by id (real time, no refresh
// needed); absent ids are left out.
func Get(ctx context.Context, osURL, alias string, ids []string) (map[string]json.RawMessage, error) {
	body, err := do(ctx, http.MethodPost, osURL+"/"+alias+"/_mget", map[string]any{"ids": ids})
	if err != nil {
		return nil, err
	}
	var out struct {
		Docs []struct {
			ID     string          `json:"_id"`
			Found  bool            `json:"found"`
			Source json.RawMessage `json:"_source"`
		} `json:"docs"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("decoding mget: %w", err)
	}
	docs := map[string]json.RawMessage{}
	for _, d := range out.Docs {
		if d.Found {
			docs[d.ID] = d.Source
		}
	}
	return docs, nil
}
