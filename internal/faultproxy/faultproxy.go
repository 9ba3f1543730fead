// Package faultproxy is an HTTP reverse proxy for tests that puts the
// faults of a production OpenSearch between a client and a real cluster:
// latency, refusals (429 with Retry-After, 5xx), connection resets, bulk
// items failed one by one and bodies refused as too large (413). A test
// points a sink at the proxy, sets a fault (for a number of requests or
// until cleared) while the sink runs and reads back what the proxy did.
// Faults apply to bulk requests only; every other request passes.
package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault is what the proxy does to the bulk requests it applies to, instead
// of or on top of forwarding them. Latency comes first; then Reset wins
// over Status, which wins over ItemStatus.
type Fault struct {
	// Latency delays each request before it is answered or forwarded: a
	// slow cluster, or one a client times out on.
	Latency time.Duration
	// Status, when set, answers with it instead of forwarding, with an
	// OpenSearch-like error body (none for 413, as OpenSearch's HTTP layer
	// refuses a body before any handler).
	Status int
	// RetryAfter, when set, goes with Status as a Retry-After header (whole
	// seconds, rounded up).
	RetryAfter time.Duration
	// Reset closes the connection abruptly (TCP RST) without an answer.
	Reset bool
	// ItemStatus forwards the request, then answers every item as failed
	// with this status (429: es_rejected_execution_exception): the cluster
	// applied them, the client must not believe it did.
	ItemStatus int
	// BodyOver, when set, narrows the fault to requests whose body is over
	// this many bytes, as a cluster's http.max_content_length does with
	// Status 413; smaller requests pass and do not count.
	BodyOver int
	// Count is how many requests the fault applies to before it clears
	// itself; 0 applies it until Clear or the next Set.
	Count int
}

// Counts are what the proxy saw and did since it started.
type Counts struct {
	Requests     int         // every request received
	Forwarded    int         // requests passed on to the target
	Faulted      int         // requests a fault applied to
	Statuses     map[int]int // injected answers by status
	Resets       int         // connections reset
	Delayed      int         // requests delayed by Latency
	ItemFailures int         // forwarded bulks whose items were all failed
}

// Proxy forwards HTTP requests to one target, applying the current fault.
type Proxy struct {
	URL string // what clients address instead of the target

	srv   *http.Server
	proxy *httputil.ReverseProxy
	// closed ends the delays of requests in flight when the proxy closes.
	closed chan struct{}

	mu      sync.Mutex
	fault   Fault
	left    int // requests the current fault still applies to, when counted
	counts  Counts
	onFault func(n int, f Fault)
}

// bulk is the path suffix of OpenSearch's bulk API, the requests faults
// apply to.
const bulk = "/_bulk"

// itemStatusKey carries a request's ItemStatus to the response rewrite.
type itemStatusKey struct{}

// New starts a proxy to target (a base URL such as http://127.0.0.1:9200)
// on a free loopback port; it stops when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		t.Fatalf("faultproxy: target %q is not a URL", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listening: %v", err)
	}
	p := &Proxy{URL: "http://" + ln.Addr().String(), proxy: forwarder(u), closed: make(chan struct{}), counts: Counts{Statuses: map[int]int{}}}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() {
		// Delayed requests end first: the server does not wait for them.
		close(p.closed)
		_ = p.srv.Close()
	})
	return p
}

// forwarder is a reverse proxy to u that fails the items of the bulk
// answers its requests ask it to.
func forwarder(u *url.URL) *httputil.ReverseProxy {
	rp := httputil.NewSingleHostReverseProxy(u)
	director := rp.Director
	rp.Director = func(r *http.Request) {
		director(r)
		r.Header.Del("Accept-Encoding") // bulk answers stay readable to fail their items
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		status, ok := resp.Request.Context().Value(itemStatusKey{}).(int)
		if !ok {
			return nil
		}
		return failItems(resp, status)
	}
	return rp
}

// Set makes f the current fault, replacing any other.
func (p *Proxy) Set(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault, p.left = f, f.Count
}

// Clear removes the current fault: requests are forwarded untouched.
func (p *Proxy) Clear() { p.Set(Fault{}) }

// OnFault calls fn as the proxy applies a fault to a request, before the
// client sees it, with n counting faulted requests from 1 (Counts.Faulted).
func (p *Proxy) OnFault(fn func(n int, f Fault)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onFault = fn
}

// Pending is how many more requests the current counted fault applies to;
// 0 once it is used up or when none is set.
func (p *Proxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault.Count == 0 {
		return 0
	}
	return p.left
}

// Counts returns what the proxy saw and did so far.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	c.Statuses = make(map[int]int, len(p.counts.Statuses))
	for k, v := range p.counts.Statuses {
		c.Statuses[k] = v
	}
	return c
}

// ServeHTTP applies the current fault to the request, then answers it,
// resets it or forwards it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	size := -1
	if strings.HasSuffix(r.URL.Path, bulk) {
		// Buffered to measure it for BodyOver, and still forwarded.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the client went away mid-body
		}
		r.Body, size = io.NopCloser(bytes.NewReader(body)), len(body)
	}
	f, ok := p.take(size)
	if ok && f.Latency > 0 && !p.sleep(r.Context(), f.Latency) {
		return
	}
	switch {
	case ok && f.Reset:
		reset(w)
	case ok && f.Status != 0:
		refuse(w, f)
	default:
		if ok && f.ItemStatus != 0 {
			r = r.WithContext(context.WithValue(r.Context(), itemStatusKey{}, f.ItemStatus))
		}
		p.countForwarded(ok && f.ItemStatus != 0)
		p.proxy.ServeHTTP(w, r)
	}
}

// take returns the fault to apply to a request whose bulk body has size
// bytes (-1 when it is not a bulk), counting it, and whether there is one.
func (p *Proxy) take(size int) (Fault, bool) {
	p.mu.Lock()
	p.counts.Requests++
	f := p.fault
	if size < 0 || f.none() || size <= f.BodyOver || (f.Count > 0 && p.left == 0) {
		p.mu.Unlock()
		return Fault{}, false
	}
	if f.Count > 0 {
		p.left--
	}
	p.count(f)
	n, fn := p.counts.Faulted, p.onFault
	p.mu.Unlock()
	if fn != nil {
		fn(n, f)
	}
	return f, true
}

// count records that f applies to one more request; p.mu is held.
func (p *Proxy) count(f Fault) {
	p.counts.Faulted++
	if f.Latency > 0 {
		p.counts.Delayed++
	}
	switch {
	case f.Reset:
		p.counts.Resets++
	case f.Status != 0:
		p.counts.Statuses[f.Status]++
	}
}

func (p *Proxy) countForwarded(itemsFailed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts.Forwarded++
	if itemsFailed {
		p.counts.ItemFailures++
	}
}

// sleep waits d unless the client goes away or the proxy closes first.
func (p *Proxy) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-p.closed:
		return false
	}
}

// refuse answers with f.Status the way OpenSearch words a refusal.
func refuse(w http.ResponseWriter, f Fault) {
	if f.RetryAfter > 0 {
		secs := int((f.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	if f.Status == http.StatusRequestEntityTooLarge {
		w.WriteHeader(f.Status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	fmt.Fprintf(w, `{"error":{"type":"injected_fault","reason":"faultproxy answered %d"},"status":%d}`, f.Status, f.Status)
}

// reset drops the client's connection with a TCP RST: a linger of zero
// makes close discard unsent data and reset instead of a clean FIN.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// failItems rewrites a bulk answer so every item failed with status.
func failItems(resp *http.Response, status int) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("faultproxy: reading a bulk answer: %w", err)
	}
	var got struct {
		Items []map[string]map[string]any `json:"items"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("faultproxy: decoding bulk answer %q: %w", body, err)
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
		return fmt.Errorf("faultproxy: encoding bulk answer: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// none reports whether f does nothing to a request.
func (f Fault) none() bool {
	return f.Latency == 0 && f.Status == 0 && !f.Reset && f.ItemStatus == 0
}

func (f Fault) String() string {
	if f.none() {
		return "none"
	}
	var parts []string
	if f.Latency > 0 {
		parts = append(parts, "latency "+f.Latency.String())
	}
	switch {
	case f.Reset:
		parts = append(parts, "reset")
	case f.Status != 0:
		s := strconv.Itoa(f.Status)
		if f.RetryAfter > 0 {
			s += " Retry-After " + f.RetryAfter.String()
		}
		parts = append(parts, s)
	case f.ItemStatus != 0:
		parts = append(parts, "items "+strconv.Itoa(f.ItemStatus))
	}
	s := strings.Join(parts, "+")
	if f.BodyOver > 0 {
		s += " on bodies over " + strconv.Itoa(f.BodyOver) + " B"
	}
	if f.Count > 0 {
		return s + " ×" + strconv.Itoa(f.Count)
	}
	return s + " until cleared"
}

func (c Counts) String() string {
	return fmt.Sprintf("requests %d, forwarded %d, faulted %d: statuses %v, resets %d, delayed %d, items failed in %d",
		c.Requests, c.Forwarded, c.Faulted, c.Statuses, c.Resets, c.Delayed, c.ItemFailures)
}
