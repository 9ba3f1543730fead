package sqlbuild_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/mapping"
	"github.com/flusso/flusso/pkg/schema"
)

// TestTimeOfDayIsADate: a timestamp field over a time or timetz column
// renders that time on 1970-01-01, which the OpenSearch date field it maps
// to accepts (a bare 03:04:05 is refused), with a timetz in UTC.
func TestTimeOfDayIsADate(t *testing.T) {
	pool := database(t, `
CREATE TABLE clock (id int PRIMARY KEY, at time, at_tz timetz);
INSERT INTO clock VALUES (1, '03:04:05', '03:04:05+02'), (2, '23:59:59.999999', '00:30:00-05:30'), (3, NULL, NULL);
`)
	const src = "version: 1\ntable: clock\nprimary_key: id\nfields:\n\t- timestamp: at\n\t- timestamp: at_tz\n"
	docs := build(t, pool, index(t, pool, src), "1", "2", "3")
	want := map[string]string{
		"1": `{"at":"1970-01-01T03:04:05","at_tz":"1970-01-01T01:04:05Z"}`,
		"2": `{"at":"1970-01-01T23:59:59.999999","at_tz":"1970-01-01T06:00:00Z"}`,
		"3": `{"at":null,"at_tz":null}`,
	}
	for id, w := range want {
		assertDoc(t, docs, id, w)
	}

	def, err := schema.Parse("clock.schema.yml", []byte(strings.ReplaceAll(src, "\t", "  ")))
	if err != nil {
		t.Fatal(err)
	}
	idx := openSearchIndex(t, testenv.IndexPrefix(t)+"clock", map[string]any{"mappings": mapping.For(def, mapping.Options{})})
	for id := range want {
		if status, body := idx.do(http.MethodPut, "/_doc/"+id+"?refresh=true", docs[id]); status != http.StatusCreated {
			t.Errorf("indexing document %s %s: %d %s", id, docs[id], status, body)
		}
	}
	// OpenSearch read the dates as meant: the times in order, the offsets applied.
	for _, tt := range []struct {
		field, gte, lt string
		want           []string
	}{
		{"at", "1970-01-01T03:04:05Z", "1970-01-01T03:04:06Z", []string{"1"}},
		{"at", "1970-01-01T23:00:00Z", "1970-01-02T00:00:00Z", []string{"2"}},
		{"at_tz", "1970-01-01T01:04:05Z", "1970-01-01T01:04:06Z", []string{"1"}},
		{"at_tz", "1970-01-01T06:00:00Z", "1970-01-01T06:00:01Z", []string{"2"}},
	} {
		q := map[string]any{"query": map[string]any{"range": map[string]any{tt.field: map[string]any{"gte": tt.gte, "lt": tt.lt}}}}
		if got := idx.ids(q); !slices.Equal(got, tt.want) {
			t.Errorf("%s in [%s, %s) matched %v, want %v", tt.field, tt.gte, tt.lt, got, tt.want)
		}
	}
}

// osIndex is one index of the test OpenSearch node.
type osIndex struct {
	t   *testing.T
	url string // of the index
}

// openSearchIndex creates the index with body (under the test's prefix, so
// it is deleted at cleanup).
func openSearchIndex(t *testing.T, name string, body any) osIndex {
	t.Helper()
	ix := osIndex{t: t, url: testenv.OpenSearch(t) + "/" + name}
	if status, resp := ix.do(http.MethodPut, "", body); status != http.StatusOK {
		t.Fatalf("creating index %s: %d %s", name, status, resp)
	}
	return ix
}

func (ix osIndex) do(method, path string, body any) (int, []byte) {
	ix.t.Helper()
	return testenv.OpenSearchRequest(ix.t, method, ix.url+path, body)
}

// ids returns the ids of the hits of a search, in order.
func (ix osIndex) ids(query map[string]any) []string {
	ix.t.Helper()
	status, body := ix.do(http.MethodPost, "/_search", query)
	if status != http.StatusOK {
		ix.t.Fatalf("search %v: %d %s", query, status, body)
	}
	var resp struct {
		Hits struct {
			Hits []struct {
				ID string `json:"_id"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		ix.t.Fatal(err)
	}
	var ids []string
	for _, h := range resp.Hits.Hits {
		ids = append(ids, h.ID)
	}
	return ids
}
