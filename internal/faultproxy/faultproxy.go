// Package faultproxy is an HTTP reverse proxy for tests that injects the
// faults a production OpenSearch brings: latency, refusals (429 with
// Retry-After, 5xx) and connection resets. A test points a sink at the
// proxy, changes the fault while the pipeline runs and reads back how many
// faults were injected.
package faultproxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bulk is the path fragment of OpenSearch's bulk API, the requests a
// fault applies to unless it names another path.
const Bulk = "/_bulk"

// Fault is what the proxy does to the requests it matches instead of, or
// before, forwarding them.
type Fault struct {
	// Path selects the requests: those whose URL path contains it. Empty
	// means Bulk; "/" matches every request.
	Path string
	// Latency delays each matched request before it is answered or forwarded.
	Latency time.Duration
	// Status, when set, answers matched requests with it instead of
	// forwarding them, with an OpenSearch-like error body.
	Status int
	// RetryAfter, when set, goes with Status as a Retry-After header (whole
	// seconds, rounded up).
	RetryAfter time.Duration
	// Reset closes matched connections abruptly (TCP RST) without an answer.
	Reset bool
	// Count is how many requests the fault applies to before it clears
	// itself; 0 applies it until Clear or the next Set.
	Count int
}

func (f Fault) matches(path string) bool {
	p := f.Path
	if p == "" {
		p = Bulk
	}
	return strings.Contains(path, p)
}

// none reports whether f does nothing to a request.
func (f Fault) none() bool { return f.Latency == 0 && f.Status == 0 && !f.Reset }

func (f Fault) String() string {
	if f.none() {
		return "none"
	}
	var parts []string
	if f.Latency > 0 {
		parts = append(parts, "latency "+f.Latency.String())
	}
	if f.Status != 0 {
		s := strconv.Itoa(f.Status)
		if f.RetryAfter > 0 {
			s += " Retry-After " + f.RetryAfter.String()
		}
		parts = append(parts, s)
	}
	if f.Reset {
		parts = append(parts, "reset")
	}
	n := "until cleared"
	if f.Count > 0 {
		n = "×" + strconv.Itoa(f.Count)
	}
	return strings.Join(parts, "+") + " " + n
}

// Counts are what the proxy saw and did since it started.
type Counts struct {
	Requests  int         // every request received
	Forwarded int         // requests passed on to the target
	Statuses  map[int]int // injected answers by status
	Resets    int         // connections reset
	Delayed   int         // requests delayed by Latency
}

// Injected is the number of faults injected: answers, resets and delays.
func (c Counts) Injected() int {
	n := c.Resets + c.Delayed
	for _, v := range c.Statuses {
		n += v
	}
	return n
}

func (c Counts) String() string {
	return fmt.Sprintf("requests %d, forwarded %d, injected statuses %v, resets %d, delayed %d",
		c.Requests, c.Forwarded, c.Statuses, c.Resets, c.Delayed)
}

// Proxy forwards HTTP requests to one target, injecting the current fault.
type Proxy struct {
	srv   *http.Server
	ln    net.Listener
	proxy *httputil.ReverseProxy
	// closed ends the delays of requests in flight when the proxy closes.
	closed    chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	fault  Fault
	left   int // requests the current fault still applies to, when counted
	counts Counts
}

// New starts a proxy to target (a base URL such as http://127.0.0.1:9200)
// on a free loopback port.
func New(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q is not a URL", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listening: %w", err)
	}
	p := &Proxy{ln: ln, proxy: httputil.NewSingleHostReverseProxy(u), closed: make(chan struct{}), counts: Counts{Statuses: map[int]int{}}}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// URL is the proxy's base URL, to configure in place of the target's.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Close stops the proxy and the requests it is delaying.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return p.srv.Close()
}

// Set makes f the current fault, replacing any other.
func (p *Proxy) Set(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault, p.left = f, f.Count
}

// Latency delays every bulk request by d until Clear.
func (p *Proxy) Latency(d time.Duration) { p.Set(Fault{Latency: d}) }

// Reset resets the connections of the next n bulk requests.
func (p *Proxy) Reset(n int) { p.Set(Fault{Reset: true, Count: n}) }

// Clear removes the current fault: requests are forwarded untouched.
func (p *Proxy) Clear() { p.Set(Fault{}) }

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

// take returns the fault to apply to a request on path, counting it down,
// and whether there is one.
func (p *Proxy) take(path string) (Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts.Requests++
	f := p.fault
	if f.none() || !f.matches(path) {
		return Fault{}, false
	}
	if f.Count > 0 {
		if p.left == 0 {
			return Fault{}, false
		}
		p.left--
	}
	if f.Latency > 0 {
		p.counts.Delayed++
	}
	switch {
	case f.Reset:
		p.counts.Resets++
	case f.Status != 0:
		p.counts.Statuses[f.Status]++
	}
	return f, true
}

func (p *Proxy) countForwarded() {
	p.mu.Lock()
	p.counts.Forwarded++
	p.mu.Unlock()
}

// ServeHTTP applies the current fault to the request, then answers it,
// resets it or forwards it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := p.take(r.URL.Path)
	if ok && f.Latency > 0 && !p.sleep(r.Context(), f.Latency) {
		return
	}
	switch {
	case ok && f.Reset:
		reset(w)
	case ok && f.Status != 0:
		refuse(w, f)
	default:
		p.countForwarded()
		p.proxy.ServeHTTP(w, r)
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
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	fmt.Fprintf(w, `{"error":{"type":"faultproxy_injected","reason":"injected %d by faultproxy"},"status":%d}`, f.Status, f.Status)
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
