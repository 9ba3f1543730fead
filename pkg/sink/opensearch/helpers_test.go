package opensearch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sink"
)

// usersYAML is the schema most tests index: a field of each string shape
// and an ordered enum.
const usersYAML = `
version: 1
table: users
primary_key: id
fields:
  - long: id
  - text: name
  - keyword: code
  - identifier: sku
  - enum: priority
    variants: [low, medium, high]
  - integer: age
`

func parseSchema(t *testing.T, src string) flow.Index {
	t.Helper()
	ix, err := schema.Parse("users.schema.yml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return flow.Index{Name: "users", Schema: ix, Hash: schema.Hash(ix)}
}

// newSink returns a sink on the dev OpenSearch (or on url when given, e.g.
// a proxy) with a unique prefix, closed at cleanup.
func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = testenv.OpenSearch(t)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = testenv.IndexPrefix(t)
	}
	if cfg.Name == "" {
		cfg.Name = "primary"
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 3
	}
	if cfg.RefreshInterval == "" {
		cfg.RefreshInterval = "1s"
	}
	cfg.AutoSubfields = true
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func ensure(t *testing.T, s *Sink, ix flow.Index) sink.State {
	t.Helper()
	st, err := s.Ensure(ctxT(t), ix)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func upsert(id string, version uint64, body string) sink.Doc {
	return sink.Doc{Index: "users", ID: id, Op: sink.Upsert, Body: json.RawMessage(body), Version: version}
}

func del(id string, version uint64) sink.Doc {
	return sink.Doc{Index: "users", ID: id, Op: sink.Delete, Version: version}
}

// write writes docs and fails the test on an error or a rejection.
func write(t *testing.T, s *Sink, docs ...sink.Doc) {
	t.Helper()
	rej, err := s.Write(ctxT(t), docs)
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) > 0 {
		t.Fatalf("rejections: %+v", rej)
	}
}

// cluster is a raw client for assertions.
type cluster struct {
	t    *testing.T
	base string
}

func rawCluster(t *testing.T) cluster { return cluster{t: t, base: testenv.OpenSearch(t)} }

// do sends body as JSON and decodes a JSON object answer.
func (c cluster) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	status, raw := testenv.OpenSearchRequest(c.t, method, c.base+path, body)
	var out map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return status, out
}

func (c cluster) ok(method, path string, body any) map[string]any {
	c.t.Helper()
	status, out := c.do(method, path, body)
	if status/100 != 2 {
		c.t.Fatalf("%s %s: status %d: %v", method, path, status, out)
	}
	return out
}

func (c cluster) refresh(index string) {
	c.t.Helper()
	c.ok(http.MethodPost, "/"+index+"/_refresh", nil)
}

// ids searches an index and returns the matching ids in hit order.
func (c cluster) ids(index string, query map[string]any) []string {
	c.t.Helper()
	out := c.ok(http.MethodPost, "/"+index+"/_search", query)
	var ids []string
	for _, h := range out["hits"].(map[string]any)["hits"].([]any) {
		ids = append(ids, h.(map[string]any)["_id"].(string))
	}
	return ids
}

// source returns a document's source, nil when it does not exist.
func (c cluster) source(index, id string) map[string]any {
	c.t.Helper()
	status, out := c.do(http.MethodGet, "/"+index+"/_doc/"+id, nil)
	if status == http.StatusNotFound {
		return nil
	}
	if status != http.StatusOK {
		c.t.Fatalf("get %s/%s: status %d: %v", index, id, status, out)
	}
	return out["_source"].(map[string]any)
}

// aliasTargets lists the indexes holding an alias.
func (c cluster) aliasTargets(alias string) []string {
	c.t.Helper()
	status, out := c.do(http.MethodGet, "/_alias/"+alias, nil)
	if status == http.StatusNotFound {
		return nil
	}
	var names []string
	for k := range out {
		names = append(names, k)
	}
	return names
}

func (c cluster) exists(index string) bool {
	c.t.Helper()
	status, _ := c.do(http.MethodHead, "/"+index, nil)
	return status == http.StatusOK
}

// proxy sits between a sink and the dev OpenSearch to count bulk requests
// and inject failures.
type proxy struct {
	*httptest.Server
	mu    sync.Mutex
	bulks [][]byte // bodies of the bulk requests forwarded
	// intercept, when set, may answer a request itself (returning true).
	intercept func(w http.ResponseWriter, r *http.Request, body []byte) bool
	// rewrite, when set, may change the body of a bulk response.
	rewrite func(body []byte) []byte
}

func newProxy(t *testing.T) *proxy {
	t.Helper()
	target, err := url.Parse(testenv.OpenSearch(t))
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	director := rp.Director
	rp.Director = func(r *http.Request) {
		director(r)
		r.Header.Del("Accept-Encoding") // responses stay readable for rewrite
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		p.mu.Lock()
		rewrite := p.rewrite
		p.mu.Unlock()
		if rewrite == nil || !strings.HasSuffix(resp.Request.URL.Path, "/_bulk") {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body.Close()
		body = rewrite(body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
		return nil
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		intercept := p.intercept
		p.mu.Unlock()
		if intercept != nil && intercept(w, r, body) {
			return
		}
		if strings.HasSuffix(r.URL.Path, "/_bulk") {
			p.mu.Lock()
			p.bulks = append(p.bulks, body)
			p.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) set(f func(p *proxy)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *proxy) bulkBodies() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.bulks...)
}
