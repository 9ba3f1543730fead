package faultproxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/testenv"
)

// bulkBody indexes one document into index.
func bulkBody(index string) string {
	return `{"index":{"_index":"` + index + `","_id":"1"}}` + "\n" + `{"n":1}` + "\n"
}

func post(t *testing.T, url, body string) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	// A fresh connection each time: a reset must hit this request, not a
	// pooled connection's next one.
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// TestProxy drives each fault through the proxy against the real
// OpenSearch node: a counted fault hits exactly its requests, others pass.
func TestProxy(t *testing.T) {
	target := testenv.OpenSearch(t)
	index := testenv.IndexPrefix(t) + "proxy"
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	bulk := p.URL() + "/_bulk"

	cases := []struct {
		name   string
		fault  Fault
		status int  // wanted status of a faulted bulk; 0 means an error (reset)
		header bool // a Retry-After header is wanted
	}{
		{"429 with Retry-After", Fault{Status: 429, RetryAfter: 1500 * time.Millisecond, Count: 2}, 429, true},
		{"503", Fault{Status: 503, Count: 2}, 503, false},
		{"reset", Fault{Reset: true, Count: 2}, 0, false},
		{"latency", Fault{Latency: 300 * time.Millisecond, Count: 2}, 200, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := p.Counts()
			p.Set(c.fault)
			for i := range c.fault.Count {
				start := time.Now()
				resp, err := post(t, bulk, bulkBody(index))
				switch {
				case c.status == 0:
					if err == nil {
						t.Fatalf("request %d: answered %d, want a reset connection", i, resp.StatusCode)
					}
				case err != nil:
					t.Fatalf("request %d: %v", i, err)
				case resp.StatusCode != c.status:
					t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, c.status)
				case c.header && resp.Header.Get("Retry-After") != "2":
					t.Fatalf("request %d: Retry-After %q, want \"2\" (1.5s rounded up)", i, resp.Header.Get("Retry-After"))
				}
				if c.fault.Latency > 0 && time.Since(start) < c.fault.Latency {
					t.Fatalf("request %d answered after %v, before its latency %v", i, time.Since(start), c.fault.Latency)
				}
			}
			if n := p.Pending(); n != 0 {
				t.Fatalf("%d faults still pending after %d requests", n, c.fault.Count)
			}
			// Used up: the next bulk reaches OpenSearch and indexes.
			resp, err := post(t, bulk, bulkBody(index))
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("after the fault: %v %v", resp, err)
			}
			after := p.Counts()
			if got := after.Injected() - before.Injected(); got != c.fault.Count {
				t.Fatalf("injected %d faults, want %d (%s)", got, c.fault.Count, after)
			}
			if got := after.Requests - before.Requests; got != c.fault.Count+1 {
				t.Fatalf("saw %d requests, want %d", got, c.fault.Count+1)
			}
		})
	}

	t.Run("other paths pass, until cleared", func(t *testing.T) {
		p.Set(Fault{Status: 503})
		resp, err := http.Get(p.URL() + "/_cluster/health")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("cluster health through a bulk fault: %v %v", resp, err)
		}
		resp.Body.Close()
		for range 3 {
			if resp, err := post(t, bulk, bulkBody(index)); err != nil || resp.StatusCode != 503 {
				t.Fatalf("bulk under an uncounted 503: %v %v", resp, err)
			}
		}
		p.Clear()
		if resp, err := post(t, bulk, bulkBody(index)); err != nil || resp.StatusCode != 200 {
			t.Fatalf("bulk after Clear: %v %v", resp, err)
		}
	})

	t.Run("a delayed request ends when the client gives up", func(t *testing.T) {
		p.Latency(time.Minute)
		defer p.Clear()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, bulk, strings.NewReader(bulkBody(index)))
		_, err := http.DefaultClient.Do(req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want the client's deadline, got %v", err)
		}
	})
}
