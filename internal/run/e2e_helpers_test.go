package run

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/services/writer"
)

// Helpers of the end-to-end tests: a deployment's config, pipelines run in
// the background, and what Postgres, OpenSearch and the HTTP surfaces say.

// deployment is a flusso.toml for a test: the primary OpenSearch sink,
// extra sinks, and indexes with their on_error.
type deployment struct {
	onError string // global on_error; empty keeps the default
	sinks   string // more [sinks.*] tables
	indexes []indexSpec
}

type indexSpec struct {
	name, schema string
	onError      string // empty inherits the global one
}

// load writes the deployment into the test's directory and loads it.
func (e *e2e) load(d deployment) *config.Config {
	e.t.Helper()
	var b strings.Builder
	if d.onError != "" {
		fmt.Fprintf(&b, "on_error = %q\n\n", d.onError)
	}
	fmt.Fprintf(&b, "[source]\ntype = \"postgres\"\nconnection_url = %q\n\n", e.dbURL)
	fmt.Fprintf(&b, "[sinks.primary]\ntype = \"opensearch\"\nurl = %q\nnumber_of_replicas = 0\nrefresh_interval = \"1s\"\n\n", e.os)
	b.WriteString(d.sinks)
	for _, ix := range d.indexes {
		file := ix.name + ".schema.yml"
		if err := os.WriteFile(filepath.Join(e.dir, file), []byte(ix.schema), 0o644); err != nil {
			e.t.Fatal(err)
		}
		fmt.Fprintf(&b, "\n[[index]]\nname = %q\nschema = %q\nenabled = true\n", ix.name, file)
		if ix.onError != "" {
			fmt.Fprintf(&b, "on_error = %q\n", ix.onError)
		}
	}
	path := filepath.Join(e.dir, "flusso.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		e.t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		e.t.Fatalf("loading config: %v\n%s", err, b.String())
	}
	return cfg
}

// slot is the test's replication slot: slot names are cluster-wide.
func (e *e2e) slot() string { return "flusso_" + strings.TrimSuffix(e.prefix, "_") }

// options are the run options of a test pipeline: embedded NATS in data,
// HTTP surfaces on free ports.
func (e *e2e) options(cfg *config.Config, data string) Options {
	return Options{
		Config: cfg, Slot: e.slot(), Publication: "flusso", ManagePublication: true,
		QueueCapacity: 1000, LagPoll: time.Second, IndexPrefix: e.prefix,
		DataDir: data, Version: "test",
		PublicAddress: harness.FreeAddr(e.t), PrivateAddress: harness.FreeAddr(e.t),
		AdminUser: "admin", AdminPassword: "secret",
	}
}

// pipe is one pipeline running in the background.
type pipe struct {
	t      *testing.T
	opts   Options
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// launch runs a pipeline until stop, or until it fails.
func (e *e2e) launch(opts Options) *pipe {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipe{t: e.t, opts: opts, cancel: cancel, done: make(chan struct{})}
	go func() {
		p.err = Run(ctx, opts)
		close(p.done)
	}()
	e.t.Cleanup(func() { _ = p.stop() })
	return p
}

// stop cancels the pipeline and returns how it ended.
func (p *pipe) stop() error {
	p.cancel()
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("pipeline did not stop within 30s")
	}
}

// stopClean stops the pipeline and fails the test unless it ended cleanly.
func (p *pipe) stopClean() {
	p.t.Helper()
	if err := p.stop(); err != nil {
		p.t.Fatalf("pipeline ended with: %v", err)
	}
}

// failure waits for the pipeline to stop on its own and returns why.
func (p *pipe) failure() error {
	p.t.Helper()
	select {
	case <-p.done:
		if p.err == nil {
			p.t.Fatal("pipeline ended without an error")
		}
		return p.err
	case <-time.After(2 * time.Minute):
		p.t.Fatal("pipeline still runs; it should have stopped")
		return nil
	}
}

// running fails the test if the pipeline ended.
func (p *pipe) running() {
	p.t.Helper()
	select {
	case <-p.done:
		p.t.Fatalf("pipeline ended: %v", p.err)
	default:
	}
}

// await polls cond until it holds; what names it in the failure.
func await(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last seen: %s", what, last)
}

// call performs an HTTP request and returns status and body.
func call(t *testing.T, method, url string, body []byte, auth ...string) (int, []byte) {
	t.Helper()
	code, b, err := tryCall(method, url, body, auth...)
	if err != nil {
		t.Fatal(err)
	}
	return code, b
}

// tryCall is call for a server that may not listen yet.
func tryCall(method, url string, body []byte, auth ...string) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	return resp.StatusCode, b, nil
}

// docsAt returns the documents under an index or alias by id (after a
// refresh), nil when it does not exist.
func (e *e2e) docsAt(name string) map[string]map[string]any {
	e.t.Helper()
	call(e.t, http.MethodPost, e.os+"/"+name+"/_refresh", nil)
	status, body := call(e.t, http.MethodGet, e.os+"/"+name+"/_search?size=10000&version=true", nil)
	if status == http.StatusNotFound {
		return nil
	}
	if status != http.StatusOK {
		e.t.Fatalf("search %s: %d %s", name, status, body)
	}
	var out struct {
		Hits struct {
			Hits []struct {
				ID      string         `json:"_id"`
				Version int64          `json:"_version"`
				Source  map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		e.t.Fatalf("decoding search of %s: %v", name, err)
	}
	docs := map[string]map[string]any{}
	for _, h := range out.Hits.Hits {
		h.Source["_version"] = float64(h.Version)
		docs[h.ID] = h.Source
	}
	return docs
}

// awaitDocs waits until the documents under the convenience alias of index
// satisfy cond.
func (e *e2e) awaitDocs(what, index string, cond func(map[string]map[string]any) bool) {
	e.t.Helper()
	await(e.t, what, func() (bool, string) {
		d := e.docsAt(e.prefix + index)
		b, _ := json.Marshal(d)
		return cond(d), string(b)
	})
}

// field reads a field of a document of docs, nil when absent.
func field(docs map[string]map[string]any, id, name string) any {
	return docs[id][name]
}

// slotState is the test's replication slot as Postgres has it.
func (e *e2e) slotState() (active bool, confirmed pglogrepl.LSN) {
	e.t.Helper()
	var lsn string
	err := e.db.QueryRow(context.Background(),
		`SELECT active, coalesce(confirmed_flush_lsn, '0/0')::text FROM pg_replication_slots WHERE slot_name = $1`, e.slot()).Scan(&active, &lsn)
	if err != nil {
		e.t.Fatalf("reading slot %s: %v", e.slot(), err)
	}
	confirmed, err = pglogrepl.ParseLSN(lsn)
	if err != nil {
		e.t.Fatal(err)
	}
	return active, confirmed
}

// walNow is the server's current WAL position.
func (e *e2e) walNow() pglogrepl.LSN {
	e.t.Helper()
	var lsn string
	if err := e.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		e.t.Fatal(err)
	}
	l, err := pglogrepl.ParseLSN(lsn)
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// execXID runs statements in one transaction and returns its xid as the
// replication stream names it.
func (e *e2e) execXID(sql string) string {
	e.t.Helper()
	ctx := context.Background()
	tx, err := e.db.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, sql); err != nil {
		e.t.Fatalf("exec %q: %v", sql, err)
	}
	var xid string
	if err := tx.QueryRow(ctx, `SELECT (txid_current() % 4294967296)::text`).Scan(&xid); err != nil {
		e.t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		e.t.Fatal(err)
	}
	return xid
}

// unconfirmed lists the transactions the stopped pipeline's slot still
// holds, by xid: what a restart will stream again.
func (e *e2e) unconfirmed() map[string]bool {
	e.t.Helper()
	await(e.t, "the slot to be released", func() (bool, string) {
		active, _ := e.slotState()
		return !active, "active"
	})
	rows, err := e.db.Query(context.Background(),
		`SELECT DISTINCT xid::text FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', 'flusso')`, e.slot())
	if err != nil {
		e.t.Fatalf("peeking slot %s: %v", e.slot(), err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var xid string
		if err := rows.Scan(&xid); err != nil {
			e.t.Fatal(err)
		}
		out[xid] = true
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// awaitConfirmed waits until the slot is confirmed past lsn: everything
// committed before it is durable in every sink.
func (e *e2e) awaitConfirmed(lsn pglogrepl.LSN) {
	e.t.Helper()
	await(e.t, "the slot to be confirmed past "+lsn.String(), func() (bool, string) {
		_, confirmed := e.slotState()
		return confirmed >= lsn, "confirmed " + confirmed.String()
	})
}

// publicURL is the base URL of a pipeline's public surface.
func (p *pipe) publicURL() string { return "http://" + p.opts.PublicAddress }

// privateURL is the base URL of a pipeline's control surface.
func (p *pipe) privateURL() string { return "http://" + p.opts.PrivateAddress }

// status reads the pipeline's /status; nil while it does not answer yet.
func (p *pipe) status() map[string]any {
	p.t.Helper()
	code, body, err := tryCall(http.MethodGet, p.publicURL()+"/status", nil)
	if err != nil {
		return nil
	}
	if code != http.StatusOK {
		p.t.Fatalf("/status: %d %s", code, body)
	}
	var st map[string]any
	if err := json.Unmarshal(body, &st); err != nil {
		p.t.Fatalf("decoding /status: %v", err)
	}
	return st
}

// indexStatus finds one index in a /status document.
func indexStatus(st map[string]any, name string) map[string]any {
	list, _ := st["indexes"].([]any)
	for _, ix := range list {
		if m, _ := ix.(map[string]any); m["name"] == name {
			return m
		}
	}
	return nil
}

// quarantined reads the quarantine stream of the NATS at url.
func quarantined(t *testing.T, url string, f writer.Filter) []writer.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := broker.Connect(ctx, url, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	entries, err := writer.ListQuarantine(ctx, conn.JS, f)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// flusso runs the built CLI and returns its standard output; it fails the
// test unless the command succeeds.
func flusso(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(harness.Binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("flusso %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// hashAlias is the prefixed hash alias of a configured index.
func (e *e2e) hashAlias(cfg *config.Config, index string) string {
	e.t.Helper()
	for _, ix := range cfg.Indexes {
		if ix.Name == index {
			return e.prefix + index + "_" + schema.Hash(ix.Schema)
		}
	}
	e.t.Fatalf("no index %s in the config", index)
	return ""
}

// aliasHolders lists the indexes an alias points at.
func (e *e2e) aliasHolders(alias string) []string {
	e.t.Helper()
	code, body := call(e.t, http.MethodGet, e.os+"/_alias/"+alias, nil)
	if code == http.StatusNotFound {
		return nil
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		e.t.Fatalf("alias %s: %d %s", alias, code, body)
	}
	out := make([]string, 0, len(got))
	for name := range got {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// concrete lists the concrete indexes matching a pattern.
func (e *e2e) concrete(pattern string) []string {
	e.t.Helper()
	_, body := call(e.t, http.MethodGet, e.os+"/_cat/indices/"+pattern+"?format=json&h=index&expand_wildcards=all", nil)
	var rows []struct{ Index string }
	_ = json.Unmarshal(body, &rows)
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.Index)
	}
	slices.Sort(out)
	return out
}

// compare checks that what alias holds equals a fresh build of the index.
func (e *e2e) compare(cfg *config.Config, index, alias string) {
	e.t.Helper()
	for _, ix := range cfg.Indexes {
		if ix.Name != index {
			continue
		}
		res, err := harness.Compare(context.Background(), e.dbURL, e.os, alias, index, ix.Schema)
		if err != nil {
			e.t.Fatalf("comparing %s: %v", alias, err)
		}
		if !res.OK() || res.Compared == 0 {
			e.t.Fatalf("%s differs from a fresh build: %s", alias, res)
		}
		return
	}
	e.t.Fatalf("no index %s in the config", index)
}

// searcher counts an index through its aliases until stopped and records
// every answer that is not the full index.
type searcher struct {
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	bad    []string
	counts int
}

func (e *e2e) search(want int, aliases ...string) *searcher {
	s := &searcher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			for _, alias := range aliases {
				resp, err := http.Get(e.os + "/" + alias + "/_count")
				if err != nil {
					s.fail(fmt.Sprintf("%s: %v", alias, err))
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var got struct {
					Count  int `json:"count"`
					Shards struct {
						Failed int `json:"failed"`
					} `json:"_shards"`
				}
				if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Shards.Failed > 0 || got.Count != want {
					s.fail(fmt.Sprintf("%s: %d %s", alias, resp.StatusCode, body))
				}
				s.mu.Lock()
				s.counts++
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *searcher) fail(msg string) {
	s.mu.Lock()
	s.bad = append(s.bad, msg)
	s.mu.Unlock()
}

// finish stops the searcher and returns its failures and searches made.
func (s *searcher) finish() ([]string, int) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad, s.counts
}

// indexes reads GET /indexes by name; nil while it does not answer yet.
func (p *pipe) indexes() map[string]map[string]any {
	p.t.Helper()
	code, body, err := tryCall(http.MethodGet, p.privateURL()+"/indexes", nil, p.opts.AdminUser, p.opts.AdminPassword)
	if err != nil {
		return nil
	}
	if code != http.StatusOK {
		p.t.Fatalf("/indexes: %d %s", code, body)
	}
	var list []map[string]any
	if err := json.Unmarshal(body, &list); err != nil {
		p.t.Fatalf("decoding /indexes: %v", err)
	}
	out := map[string]map[string]any{}
	for _, ix := range list {
		out[ix["name"].(string)] = ix
	}
	return out
}

// liveWriter runs an update on random rows until finished.
type liveWriter struct {
	stop chan struct{}
	done chan struct{}
	n    int
	err  error
}

func (e *e2e) liveUpdates(sql string, rows int) *liveWriter {
	e.t.Helper()
	conn := testenv.Conn(e.t, e.dbURL)
	l := &liveWriter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			if _, err := conn.Exec(context.Background(), sql, 1+(i*7919)%rows); err != nil {
				l.err = err
				return
			}
			l.n++
		}
	}()
	return l
}

// finish stops the updates and returns how many were made.
func (l *liveWriter) finish(t *testing.T) int {
	t.Helper()
	close(l.stop)
	<-l.done
	if l.err != nil {
		t.Fatalf("live updates: %v", l.err)
	}
	return l.n
}

// envelopes reads the stdout sink's envelopes out of a process log (its
// stdout and stderr), from the log's n-th start on.
func envelopes(t *testing.T, log string, fromStart int) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	starts := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "=== start ") {
			starts++
		}
		if starts < fromStart || !strings.HasPrefix(line, "{") {
			continue
		}
		var env map[string]any
		if json.Unmarshal([]byte(line), &env) == nil && env["sink"] == "audit" {
			out = append(out, env)
		}
	}
	return out
}

// segment is a process log from its n-th start on.
func segment(t *testing.T, log string, fromStart int) string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(b), "=== start ")
	if len(parts) <= fromStart {
		return ""
	}
	return strings.Join(parts[fromStart:], "=== start ")
}

// ownedState is what a deployment owns in OpenSearch under its prefix:
// concrete indexes with their document counts, and aliases.
func (e *e2e) ownedState() string {
	e.t.Helper()
	call(e.t, http.MethodPost, e.os+"/"+e.prefix+"*/_refresh?expand_wildcards=all", nil)
	_, indexes := call(e.t, http.MethodGet, e.os+"/_cat/indices/"+e.prefix+"*?h=index,docs.count&s=index&expand_wildcards=all", nil)
	_, aliases := call(e.t, http.MethodGet, e.os+"/_cat/aliases/"+e.prefix+"*?h=alias,index&s=alias", nil)
	return string(indexes) + "--\n" + string(aliases)
}
