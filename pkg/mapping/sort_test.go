package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/schema"
)

// TestEnumSortOrder sorts real OpenSearch documents on an enum's .sort
// subfield: the variants come first in their declared order, then every
// other value in byte order, sorted by its own exact value: no variant is
// rewritten inside a longer value (low2 is not 02) and no variant is read as
// a pattern.
func TestEnumSortOrder(t *testing.T) {
	base := testenv.OpenSearch(t)
	prefix := testenv.IndexPrefix(t)
	reversed := strings.Split("lkjihgfedcba", "") // ranks of two digits
	tests := []struct {
		name     string
		variants []string
		want     []string // values in sort order; a shuffled copy is indexed
	}{
		{"variants inside values", []string{"low", "medium", "high"},
			[]string{"low", "medium", "high", "", "!", "0", "Zeta", "highlander", "low2", "lowlow", "xmedium"}},
		{"pattern characters", []string{"a.c", "x+", "(p)", `back\slash`, "$1", "ü"},
			[]string{"a.c", "x+", "(p)", `back\slash`, "$1", "ü", "abc", "back", "p", "xx", "ü2"}},
		{"ranks of two digits", reversed, append(slices.Clone(reversed), "m")},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			quoted, _ := json.Marshal(tt.variants)
			ix, err := schema.Parse("t.schema.yml", []byte("version: 1\ntable: t\nfields:\n  - enum: priority\n    variants: "+string(quoted)+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			c := cluster{t: t, url: fmt.Sprintf("%s/%senum%d", base, prefix, i)}
			opts := Options{AutoSubfields: true}
			c.must(http.MethodPut, "", map[string]any{"settings": Settings(ix, opts, 1, 0), "mappings": For(ix, opts)})

			var bulk bytes.Buffer
			for j := len(tt.want) - 1; j >= 0; j-- { // not in sort order
				fmt.Fprintf(&bulk, "{\"index\":{\"_id\":\"%d\"}}\n", j)
				doc, _ := json.Marshal(map[string]string{"priority": tt.want[j]})
				bulk.Write(append(doc, '\n'))
			}
			c.bulk(bulk.Bytes())

			var resp struct {
				Hits struct {
					Hits []struct {
						Source map[string]string `json:"_source"`
						Sort   []string          `json:"sort"`
					} `json:"hits"`
				} `json:"hits"`
			}
			c.must(http.MethodPost, "/_search", map[string]any{"size": 100, "sort": []any{map[string]any{"priority.sort": "asc"}}}, &resp)
			var got []string
			for _, h := range resp.Hits.Hits {
				v := h.Source["priority"]
				got = append(got, v)
				if !slices.Contains(tt.variants, v) && v != "" && (len(h.Sort) != 1 || h.Sort[0] != v) {
					t.Errorf("%q sorts by %q, want its own value", v, h.Sort)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("sort by priority.sort:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// cluster reaches one index of the test OpenSearch node.
type cluster struct {
	t   *testing.T
	url string // of the index
}

// must sends body (JSON, or NDJSON as []byte) and decodes a 2xx answer into
// out, if given.
func (c cluster) must(method, path string, body any, out ...any) {
	c.t.Helper()
	status, data := testenv.OpenSearchRequest(c.t, method, c.url+path, body)
	if status/100 != 2 {
		c.t.Fatalf("%s %s: %d %s", method, path, status, data)
	}
	for _, o := range out {
		if err := json.Unmarshal(data, o); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
}

// bulk indexes NDJSON actions and refreshes, failing on any item error.
func (c cluster) bulk(ndjson []byte) {
	c.t.Helper()
	var resp struct{ Errors bool }
	c.must(http.MethodPost, "/_bulk?refresh=true", ndjson, &resp)
	if resp.Errors {
		c.t.Fatalf("bulk had item errors")
	}
}
