package capture_test

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/services/capture"
)

// TestSilentConnectionLossIsNoticed cuts the path to Postgres without a
// reset: the capture must notice the silence, show it on its health
// record, reconnect and go on, healthy again.
func TestSilentConnectionLossIsNoticed(t *testing.T) {
	t.Cleanup(capture.SetLiveness(200*time.Millisecond, 2*time.Second))
	r := newRig(t, `CREATE TABLE users (id int PRIMARY KEY, email text);
		CREATE TABLE orders (id int PRIMARY KEY, user_id int, status text);`, "")
	u, err := url.Parse(r.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	u.Host = p.addr()
	cfg := r.config(map[string]string{"users": usersSchema})
	cfg.DatabaseURL = u.String()
	cfg.Health = health.NewRegistry().Stage("capture")
	c := r.start(cfg)
	r.waitStreaming()
	r.exec(`INSERT INTO users VALUES (1, 'before')`)
	r.read(1, true)

	p.freeze()
	r.eventually("the capture to notice the silence", 30*time.Second, func() bool {
		return len(r.logs.lines("no answer from postgres")) > 0
	})
	// The silence is reported, and the session after it may already have
	// failed too: the dead connection still holds the slot on the server for
	// a moment. Health keeps the last error, so a later one counts a second
	// failure.
	rep := cfg.Health.Report()
	silence := strings.Contains(rep.LastError, "no answer from postgres") && rep.Failures >= 1
	after := strings.Contains(rep.LastError, "is in use by another process") && rep.Failures >= 2
	if rep.LastErrorAt == nil || !(silence || after) {
		t.Errorf("health while reconnecting: %s, %d failures, last error %q; want the silence reported", rep.State, rep.Failures, rep.LastError)
	}
	// The server side of the dead path goes too, freeing the slot.
	p.cut()
	r.exec(`INSERT INTO users VALUES (2, 'after')`)
	if got := r.read(1, true)[0]; got.New.Columns["id"].GetText() != "2" {
		t.Fatalf("after reconnecting got %v, want the insert made meanwhile", image(got.New))
	}
	if !c.Stats().Streaming {
		t.Fatal("the capture is not streaming after reconnecting")
	}
	r.eventually("the capture to report itself healthy", 30*time.Second, func() bool { return cfg.Health.Report().State == health.OK })
}

// proxy forwards TCP connections to a target. Frozen connections stay open
// but carry nothing either way, like a network path that died without a
// reset; new connections work.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []*link
}

type link struct {
	client, server net.Conn
	frozen, cut    atomic.Bool
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target}
	t.Cleanup(func() {
		l.Close()
		p.freeze()
		p.cut()
	})
	go func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			k := &link{client: client, server: server}
			p.mu.Lock()
			p.conns = append(p.conns, k)
			p.mu.Unlock()
			go k.pipe(server, client)
			go k.pipe(client, server)
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

// freeze stops every current connection.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.conns {
		k.frozen.Store(true)
	}
}

// cut closes the frozen connections.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.conns {
		if k.frozen.Load() {
			k.cut.Store(true)
			k.client.Close()
			k.server.Close()
		}
	}
}

func (k *link) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for k.frozen.Load() && !k.cut.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if k.cut.Load() {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				src.Close()
			}
			return
		}
	}
}
