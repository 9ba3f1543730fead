package opensearch

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/faultproxy"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/sink"
)

func TestNodes(t *testing.T) {
	tests := []struct {
		setting string
		want    []string
	}{
		{"http://a:9200", []string{"http://a:9200"}},
		{"http://a:9200,https://b:9200", []string{"http://a:9200", "https://b:9200"}},
		{" http://a:9200 , http://b:9200/ ,http://c ", []string{"http://a:9200", "http://b:9200/", "http://c"}},
		// A comma not followed by a scheme stays: a password may hold one.
		{"https://u:p,w@a:9200,https://b:9200", []string{"https://u:p,w@a:9200", "https://b:9200"}},
		{"http://a:9200,", []string{"http://a:9200,"}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := Nodes(tt.setting); !slices.Equal(got, tt.want) {
			t.Errorf("Nodes(%q) = %q, want %q", tt.setting, got, tt.want)
		}
	}
}

// TestSeveralNodes writes through two nodes (two proxies in front of the
// dev node): requests go to both, and when one fails — refusing
// connections, resetting them mid-bulk, answering 500 or 503 — every
// write still lands through the other, with max_retries 0: a failing node
// costs a retry on the next one, not a document.
func TestSeveralNodes(t *testing.T) {
	tests := []struct {
		name  string
		fault faultproxy.Fault
	}{
		{"connection reset mid-bulk", faultproxy.Fault{Reset: true}},
		{"500", faultproxy.Fault{Status: http.StatusInternalServerError}},
		{"503", faultproxy.Fault{Status: http.StatusServiceUnavailable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := testenv.OpenSearch(t)
			a, b := faultproxy.New(t, target), faultproxy.New(t, target)
			s := newSink(t, Config{URL: a.URL + "," + b.URL})
			s.cfg.MaxRetries = 0 // newSink makes 0 its default
			if len(s.nodes.nodes) != 2 {
				t.Fatalf("%d nodes, want two", len(s.nodes.nodes))
			}
			ix := parseSchema(t, usersYAML)
			ensure(t, s, ix)
			id := 0
			batch := func() []sink.Doc {
				var docs []sink.Doc
				for range 5 {
					id++
					docs = append(docs, upsert(fmt.Sprint(id), 1, fmt.Sprintf(`{"name":"n%d"}`, id)))
				}
				return docs
			}
			// A fault of no consequence counts the bulk requests each node takes.
			a.Set(faultproxy.Fault{Latency: time.Microsecond})
			b.Set(faultproxy.Fault{Latency: time.Microsecond})
			for range 4 {
				write(t, s, batch()...)
			}
			if ca, cb := a.Counts().Delayed, b.Counts().Delayed; ca != 2 || cb != 2 {
				t.Fatalf("bulk requests taken by node a %d, node b %d: want 2 each", ca, cb)
			}
			b.Clear()
			a.Set(tt.fault) // until the end of the test
			for range 6 {
				write(t, s, batch()...)
			}
			if a.Counts().Faulted == 0 {
				t.Fatal("no bulk request met the failing node")
			}
			c := rawCluster(t)
			alias := s.hashAlias("users", ix.Hash)
			c.refresh(alias)
			if got := c.ids(alias, map[string]any{"size": 1000}); len(got) != id {
				t.Errorf("%d documents stored, want %d: %s", len(got), id, strings.Join(got, ","))
			}
		})
	}
}
