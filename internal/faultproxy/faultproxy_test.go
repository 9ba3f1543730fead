package faultproxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/testenv"
)

// bulkBody indexes one document into index.
func bulkBody(index string) string {
	return `{"index":{"_index":"` + index + `","_id":"1"}}` + "\n" + `{"n":1}` + "\n"
}

// post sends a bulk and reads its answer, which it returns as resp.Body's
// text.
func post(t *testing.T, url, body string) (*http.Response, string, error) {
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
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	return resp, string(text), err
}

// TestProxy drives each fault through the proxy against the real
// OpenSearch node: a counted fault hits exactly its requests, others pass.
func TestProxy(t *testing.T) {
	target := testenv.OpenSearch(t)
	index := testenv.IndexPrefix(t) + "proxy"
	p := New(t, target)
	bulk := p.URL + "/_bulk"

	cases := []struct {
		name   string
		fault  Fault
		status int  // wanted status of a faulted bulk; 0 means an error (reset)
		header bool // a Retry-After header is wanted
		// counted is the count of what this fault does.
		counted func(Counts) int
	}{
		{"429 with Retry-After", Fault{Status: 429, RetryAfter: 1500 * time.Millisecond, Count: 2}, 429, true, func(c Counts) int { return c.Statuses[429] }},
		{"503", Fault{Status: 503, Count: 2}, 503, false, func(c Counts) int { return c.Statuses[503] }},
		{"reset", Fault{Reset: true, Count: 2}, 0, false, func(c Counts) int { return c.Resets }},
		{"latency", Fault{Latency: 300 * time.Millisecond, Count: 2}, 200, false, func(c Counts) int { return c.Delayed }},
		{"bulk items 429", Fault{ItemStatus: 429, Count: 2}, 200, false, func(c Counts) int { return c.ItemFailures }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := p.Counts()
			p.Set(c.fault)
			for i := range c.fault.Count {
				start := time.Now()
				resp, text, err := post(t, bulk, bulkBody(index))
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
				if c.fault.ItemStatus != 0 {
					checkItemsFailed(t, text, c.fault.ItemStatus)
				}
			}
			if n := p.Pending(); n != 0 {
				t.Fatalf("%d faults still pending after %d requests", n, c.fault.Count)
			}
			// Used up: the next bulk reaches OpenSearch and indexes.
			if resp, text, err := post(t, bulk, bulkBody(index)); err != nil || resp.StatusCode != 200 || strings.Contains(text, `"errors":true`) {
				t.Fatalf("after the fault: %v %s %v", resp, text, err)
			}
			after := p.Counts()
			if got := after.Faulted - before.Faulted; got != c.fault.Count {
				t.Fatalf("faulted %d requests, want %d (%s)", got, c.fault.Count, after)
			}
			if got := c.counted(after) - c.counted(before); got != c.fault.Count {
				t.Fatalf("counted %d of this fault, want %d (%s)", got, c.fault.Count, after)
			}
			if got := after.Requests - before.Requests; got != c.fault.Count+1 {
				t.Fatalf("saw %d requests, want %d", got, c.fault.Count+1)
			}
		})
	}

	t.Run("BodyOver refuses bigger bodies only", func(t *testing.T) {
		small := bulkBody(index)
		big := `{"index":{"_index":"` + index + `","_id":"2"}}` + "\n" + `{"s":"` + strings.Repeat("x", 2*len(small)) + `"}` + "\n"
		before := p.Counts()
		p.Set(Fault{Status: http.StatusRequestEntityTooLarge, BodyOver: len(small), Count: 1})
		if resp, text, err := post(t, bulk, small); err != nil || resp.StatusCode != 200 {
			t.Fatalf("a body at the limit: %v %s %v", resp, text, err)
		}
		if n := p.Pending(); n != 1 {
			t.Fatalf("a body at the limit used the fault up: %d pending, want 1", n)
		}
		resp, text, err := post(t, bulk, big)
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || text != "" {
			t.Fatalf("a body over the limit: %v %q %v, want 413 with no body", resp, text, err)
		}
		after := p.Counts()
		if after.Faulted-before.Faulted != 1 || after.Statuses[413]-before.Statuses[413] != 1 || p.Pending() != 0 {
			t.Fatalf("want the one big body faulted: %s, %d pending", after, p.Pending())
		}
	})

	t.Run("OnFault numbers the faulted requests", func(t *testing.T) {
		var (
			mu  sync.Mutex
			got []int
		)
		p.OnFault(func(n int, f Fault) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, n)
		})
		defer p.OnFault(nil)
		first := p.Counts().Faulted + 1
		p.Set(Fault{Status: 503, Count: 3})
		for range 4 {
			_, _, _ = post(t, bulk, bulkBody(index))
		}
		mu.Lock()
		defer mu.Unlock()
		if want := []int{first, first + 1, first + 2}; !slices.Equal(got, want) {
			t.Fatalf("OnFault saw faults %v, want %v", got, want)
		}
	})

	t.Run("other paths pass, until cleared", func(t *testing.T) {
		p.Set(Fault{Status: 503})
		resp, err := http.Get(p.URL + "/_cluster/health")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("cluster health through a bulk fault: %v %v", resp, err)
		}
		resp.Body.Close()
		for range 3 {
			if resp, _, err := post(t, bulk, bulkBody(index)); err != nil || resp.StatusCode != 503 {
				t.Fatalf("bulk under an uncounted 503: %v %v", resp, err)
			}
		}
		p.Clear()
		if resp, _, err := post(t, bulk, bulkBody(index)); err != nil || resp.StatusCode != 200 {
			t.Fatalf("bulk after Clear: %v %v", resp, err)
		}
	})

	t.Run("a delayed request ends when the client gives up", func(t *testing.T) {
		p.Set(Fault{Latency: time.Minute})
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

// checkItemsFailed fails t unless every item of the bulk answer text
// failed with status, as an overloaded cluster words it for 429.
func checkItemsFailed(t *testing.T, text string, status int) {
	t.Helper()
	var got struct {
		Items []map[string]struct {
			Status int `json:"status"`
			Error  struct {
				Type string `json:"type"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(text), &got); err != nil || len(got.Items) == 0 {
		t.Fatalf("bulk answer %q: %v, want items", text, err)
	}
	for _, entry := range got.Items {
		for _, it := range entry {
			if it.Status != status || it.Error.Type != "es_rejected_execution_exception" {
				t.Fatalf("item %+v in %s, want failed with %d es_rejected_execution_exception", it, text, status)
			}
		}
	}
}
