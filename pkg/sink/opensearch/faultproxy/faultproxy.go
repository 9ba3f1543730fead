// Package faultproxy is a reverse proxy for tests that puts the faults of
// a production cluster between a client and a real OpenSearch: answers of
// a chosen status (429 with Retry-After, 502-504), reset connections, slow
// answers, bulk items refused (429, 500), bodies too large. Faults go to the next bulk
// requests in the order they were injected; once they are used up, every
// request passes through untouched. Requests other than bulk always pass.
package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault is what the proxy does to one bulk request.
type Fault struct {
	// Status answers with this status instead of passing the request on,
	// with an OpenSearch-like error body and RetryAfter as the Retry-After
	// header when set.
	Status     int
	RetryAfter string
	// Reset drops the connection without an answer.
	Reset bool
	// Delay holds the request this long, then passes it on: a slow
	// cluster, or one a client times out on.
	Delay time.Duration
	// ItemStatus passes the request on, then answers every item as failed
	// with this status (429: es_rejected_execution_exception): the cluster
	// applied them, the client must not believe it did.
	ItemStatus int
}

func (f Fault) String() string {
	switch {
	case f.Reset:
		return "reset"
	case f.ItemStatus != 0:
		return fmt.Sprintf("items %d", f.ItemStatus)
	case f.Delay > 0:
		return fmt.Sprintf("delay %v", f.Delay)
	}
	return fmt.Sprintf("status %d", f.Status)
}

// Proxy is a fault-injecting reverse proxy in front of one cluster.
type Proxy struct {
	URL string // what clients address instead of the cluster

	mu      sync.Mutex
	queue   []Fault
	maxBody int
	served  int
	onFault func(n int, f Fault)
}

type itemStatusKey struct{}

// New starts a proxy in front of the cluster at target; it stops at cleanup.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("faultproxy: target %q: %v", target, err)
	}
	p := &Proxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	director := rp.Director
	rp.Director = func(r *http.Request) {
		director(r)
		r.Header.Del("Accept-Encoding") // bulk responses stay readable for ItemStatus
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		status, ok := resp.Request.Context().Value(itemStatusKey{}).(int)
		if !ok {
			return nil
		}
		return failItems(resp, status)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := p.next(r)
		switch {
		case !ok:
		case f.Reset:
			reset(w)
			return
		case f.ItemStatus != 0:
			r = r.WithContext(context.WithValue(r.Context(), itemStatusKey{}, f.ItemStatus))
		case f.Delay > 0:
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done(): // the client gave up
				return
			}
		default:
			answer(w, f)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Inject queues n faults f for the next bulk requests, after those queued.
func (p *Proxy) Inject(n int, f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range n {
		p.queue = append(p.queue, f)
	}
}

// MaxBody answers 413, as a cluster's http.max_content_length does, every
// bulk request whose body is over n bytes; 0 lifts the limit.
func (p *Proxy) MaxBody(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxBody = n
}

// OnFault calls fn as the proxy serves each fault, with its number from 1
// (413s of MaxBody included), before the client sees it.
func (p *Proxy) OnFault(fn func(n int, f Fault)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onFault = fn
}

// Served is how many faults were served.
func (p *Proxy) Served() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.served
}

// Pending is how many injected faults are still to serve.
func (p *Proxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// next takes the fault for request r, if any. It reads r's body to check
// its size and leaves it readable.
func (p *Proxy) next(r *http.Request) (Fault, bool) {
	if !strings.HasSuffix(r.URL.Path, "/_bulk") {
		return Fault{}, false
	}
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	p.mu.Lock()
	var f Fault
	switch {
	case err != nil:
		f = Fault{Reset: true}
	case p.maxBody > 0 && len(body) > p.maxBody:
		f = Fault{Status: http.StatusRequestEntityTooLarge}
	case len(p.queue) > 0:
		f, p.queue = p.queue[0], p.queue[1:]
	default:
		p.mu.Unlock()
		return Fault{}, false
	}
	p.served++
	n, fn := p.served, p.onFault
	p.mu.Unlock()
	if fn != nil {
		fn(n, f)
	}
	return f, true
}

// answer answers with f's status as OpenSearch would.
func answer(w http.ResponseWriter, f Fault) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	if f.Status == http.StatusRequestEntityTooLarge {
		// OpenSearch's HTTP layer refuses the body before any handler,
		// with no error document.
		w.WriteHeader(f.Status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	fmt.Fprintf(w, `{"error":{"type":"injected_fault","reason":"faultproxy answered %d"},"status":%d}`, f.Status, f.Status)
}

// reset drops the request's connection so the client reads a reset, not
// an answer.
func reset(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(fmt.Sprintf("faultproxy: hijacking a connection to reset it: %v", err))
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close sends RST
	}
	conn.Close()
}

// failItems rewrites a bulk response so every item failed with status.
func failItems(resp *http.Response, status int) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	var got struct {
		Items []map[string]map[string]any `json:"items"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("faultproxy: bulk response %q: %w", body, err)
	}
	kind := "injected_fault"
	if status == http.StatusTooManyRequests {
		kind = "es_rejected_execution_exception"
	}
	for _, entry := range got.Items {
		for _, it := range entry {
			it["status"] = status
			it["error"] = map[string]any{"type": kind, "reason": "faultproxy failed the item"}
			delete(it, "result")
		}
	}
	if body, err = json.Marshal(got); err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
	return nil
}
