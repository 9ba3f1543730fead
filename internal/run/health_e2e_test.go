package run_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
)

// stageReport finds one stage in a /status document.
func stageReport(st map[string]any, name string) map[string]any {
	list, _ := st["stages"].([]any)
	for _, s := range list {
		if m, _ := s.(map[string]any); m["stage"] == name {
			return m
		}
	}
	return nil
}

// TestUnreachableSinkShowsDegradedThenRecovers points the OpenSearch sink
// at a port nobody listens on: /status shows the sink's stage degraded with
// the error (the sink waits out a refused connection itself, so it names
// the request and the address), /readyz answers 503 naming it once the grace is over, and once
// the port leads to OpenSearch the stage recovers and documents land.
func TestUnreachableSinkShowsDegradedThenRecovers(t *testing.T) {
	e := newE2E(t, `
		CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, deleted boolean NOT NULL DEFAULT false);
		CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users, total numeric NOT NULL, status text NOT NULL);
		INSERT INTO users (email) VALUES ('ada@x.io'), ('bob@x.io');`)
	cfg := e.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "users", Schema: usersSchema}}})
	closed := testenv.FreeAddr(t)
	t.Setenv("PRIMARY_OPENSEARCH_URL", "http://"+closed)
	opts := e.Options(cfg, t.TempDir())
	opts.ReadyGrace = time.Second
	started := time.Now()
	p := harness.Launch(t, opts)

	await(t, "the sink stage degraded on /status", func() (bool, string) {
		st := status(t, p)
		sink := stageReport(st, "sink.primary")
		msg, _ := sink["last_error"].(string)
		failures, _ := sink["failures"].(float64)
		ok := sink["state"] == "degraded" && sink["since"] != nil && failures >= 1 &&
			strings.Contains(msg, closed) && strings.Contains(msg, "connection refused")
		return ok, fmt.Sprint(st["stages"])
	})
	await(t, "/readyz to answer 503 naming the sink", func() (bool, string) {
		code, body := call(t, http.MethodGet, p.PublicURL()+"/readyz", nil)
		var answer struct {
			Error    string `json:"error"`
			Degraded []struct {
				Stage     string `json:"stage"`
				LastError string `json:"last_error"`
			} `json:"degraded"`
		}
		_ = json.Unmarshal(body, &answer)
		ok := code == http.StatusServiceUnavailable && strings.Contains(answer.Error, "stage sink.primary degraded") &&
			len(answer.Degraded) == 1 && answer.Degraded[0].Stage == "sink.primary" && strings.Contains(answer.Degraded[0].LastError, closed)
		return ok, fmt.Sprintf("%d %s", code, body)
	})
	t.Logf("/readyz 503 %v after start", time.Since(started).Round(10*time.Millisecond))
	p.CheckRunning()

	// The cause goes away: the port now leads to OpenSearch.
	fixed := time.Now()
	forward(t, closed, e.OpenSearch)
	e.awaitDocs("the backfill after the sink came back", "users", func(d map[string]map[string]any) bool { return len(d) == 2 })
	await(t, "the sink stage ok and /readyz 200", func() (bool, string) {
		code, body := call(t, http.MethodGet, p.PublicURL()+"/readyz", nil)
		sink := stageReport(status(t, p), "sink.primary")
		return code == http.StatusOK && sink["state"] == "ok" && sink["since"] == nil, fmt.Sprintf("%d %s %v", code, body, sink)
	})
	t.Logf("recovered (documents in, /readyz 200) %v after the port opened", time.Since(fixed).Round(10*time.Millisecond))
	p.StopClean()
}

// forward accepts connections on addr and relays each to the host of
// target, until the test ends.
func forward(t *testing.T, addr, target string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			track(in)
			out, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			track(out)
			wg.Add(2)
			go relay(&wg, in, out)
			go relay(&wg, out, in)
		}
	}()
}

// relay copies src to dst, then closes both so the other direction ends too.
func relay(wg *sync.WaitGroup, dst, src net.Conn) {
	defer wg.Done()
	_, _ = io.Copy(dst, src) // a reset ends the relay like EOF does
	dst.Close()
	src.Close()
}
