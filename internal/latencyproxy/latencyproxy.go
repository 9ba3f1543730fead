// Package latencyproxy is a TCP proxy that delays the data of every
// connection by a fixed one-way delay in each direction, as a network
// between two hosts does: a request and its answer (a query round trip)
// cost twice the delay, while a stream of data keeps its throughput. The
// benchmark puts it in front of Postgres to show what a database on another
// host does to the stages that wait on it.
package latencyproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy accepts connections on a loopback port and forwards each to the
// target, delayed.
type Proxy struct {
	ln     net.Listener
	target string
	delay  time.Duration
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// requests counts the reads from clients: each a request the client
	// sent before it waited for an answer, so about one per round trip.
	requests atomic.Int64
}

// Start listens on listen ("127.0.0.1:0" picks a free port) and forwards
// every connection to target with delay added to each direction. The proxy
// runs until ctx ends or Close is called; both close every connection.
func Start(ctx context.Context, listen, target string, delay time.Duration) (*Proxy, error) {
	if delay < 0 {
		return nil, fmt.Errorf("latency proxy to %s: negative delay %s", target, delay)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("latency proxy to %s: listening on %s: %w", target, listen, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Proxy{ln: ln, target: target, delay: delay, cancel: cancel}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		defer p.wg.Done()
		p.accept(ctx)
	}()
	return p, nil
}

// Addr is the address clients connect to instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Requests is how many times a client sent data since the proxy started:
// about the round trips through it (a request larger than one read counts
// more than once, requests a client pipelines without waiting may count
// once).
func (p *Proxy) Requests() int64 { return p.requests.Load() }

// Close stops accepting, closes every connection and waits until all of the
// proxy's goroutines ended.
func (p *Proxy) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}

func (p *Proxy) accept(ctx context.Context) {
	var d net.Dialer
	for {
		client, err := p.ln.Accept()
		if err != nil {
			// Closed by ctx; any other accept error ends the proxy too, and
			// its clients see refused connections.
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer client.Close()
			server, err := d.DialContext(ctx, "tcp", p.target)
			if err != nil {
				return
			}
			defer server.Close()
			p.serve(ctx, client, server)
		}()
	}
}

// serve forwards both directions until both ended or ctx is done.
func (p *Proxy) serve(ctx context.Context, client, server net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ended, closed := make(chan struct{}), make(chan struct{})
	go func() {
		// Unblocks reads and writes stuck on either side.
		defer close(closed)
		select {
		case <-ctx.Done():
		case <-ended:
		}
		client.Close()
		server.Close()
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(ctx, cancel, server, client, &p.requests) }()
	go func() { defer wg.Done(); p.pipe(ctx, cancel, client, server, nil) }()
	wg.Wait()
	close(ended)
	<-closed
}

// chunk is data read from one side at a time, due on the other side at
// a later time; a nil data marks the end of the stream.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst, each read held back until delay after it was
// read. Reading goes on while earlier chunks wait, so the delay adds to
// the latency and not to the transfer time of a large answer. An error
// on either side ends the whole connection (cancel); a clean end of src
// half-closes dst, as the peer did. reads, when set, counts src's reads.
func (p *Proxy) pipe(ctx context.Context, cancel context.CancelFunc, dst, src net.Conn, reads *atomic.Int64) {
	// Bounded: a reader far ahead of a slow writer waits, as TCP would.
	queue := make(chan chunk, 256)
	read := make(chan struct{})
	// The reader ends once src is closed or ctx is done (serve then
	// closes src).
	defer func() { <-read }()
	go func() {
		defer close(read)
		defer close(queue)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				if reads != nil {
					reads.Add(1)
				}
				select {
				case queue <- chunk{buf[:n], time.Now().Add(p.delay)}:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					select {
					case queue <- chunk{nil, time.Now().Add(p.delay)}:
					case <-ctx.Done():
					}
				} else {
					cancel()
				}
				return
			}
		}
	}()
	for c := range queue {
		if wait := time.Until(c.due); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if c.data == nil {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
		if _, err := dst.Write(c.data); err != nil {
			cancel()
			return
		}
	}
}
