package run_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/schema"
)

// Helpers of the end-to-end tests: what Postgres, OpenSearch and the HTTP
// surfaces of a deployment's pipelines (harness.Pipeline) say.

// e2e is one deployment under test.
type e2e struct{ *harness.Deployment }

func newE2E(t *testing.T, tables string) *e2e { return &e2e{harness.NewDeployment(t, tables)} }

// await polls cond until it holds; what names it in the failure.
func await(t testing.TB, what string, cond func() (bool, string)) {
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
func call(t testing.TB, method, url string, body []byte, auth ...string) (int, []byte) {
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
	e.T.Helper()
	call(e.T, http.MethodPost, e.OpenSearch+"/"+name+"/_refresh", nil)
	code, body := call(e.T, http.MethodGet, e.OpenSearch+"/"+name+"/_search?size=10000&version=true", nil)
	if code == http.StatusNotFound {
		return nil
	}
	if code != http.StatusOK {
		e.T.Fatalf("search %s: %d %s", name, code, body)
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
		e.T.Fatalf("decoding search of %s: %v", name, err)
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
	e.T.Helper()
	await(e.T, what, func() (bool, string) {
		d := e.docsAt(e.Prefix + index)
		b, _ := json.Marshal(d)
		return cond(d), string(b)
	})
}

// field reads a field of a document of docs, nil when absent.
func field(docs map[string]map[string]any, id, name string) any {
	return docs[id][name]
}

// execXID runs statements in one transaction and returns its xid as the
// replication stream names it.
func (e *e2e) execXID(sql string) string {
	e.T.Helper()
	ctx := context.Background()
	tx, err := e.DB.Begin(ctx)
	if err != nil {
		e.T.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, sql); err != nil {
		e.T.Fatalf("exec %q: %v", sql, err)
	}
	var xid string
	if err := tx.QueryRow(ctx, `SELECT (txid_current() % 4294967296)::text`).Scan(&xid); err != nil {
		e.T.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		e.T.Fatal(err)
	}
	return xid
}

// unconfirmed lists the transactions the stopped pipeline's slot still
// holds, by xid: what a restart will stream again.
func (e *e2e) unconfirmed() map[string]bool {
	e.T.Helper()
	await(e.T, "the slot to be released", func() (bool, string) {
		active, _ := e.SlotState()
		return !active, "active"
	})
	rows, err := e.DB.Query(context.Background(),
		`SELECT DISTINCT xid::text FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', 'flusso')`, e.Slot())
	if err != nil {
		e.T.Fatalf("peeking slot %s: %v", e.Slot(), err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var xid string
		if err := rows.Scan(&xid); err != nil {
			e.T.Fatal(err)
		}
		out[xid] = true
	}
	if err := rows.Err(); err != nil {
		e.T.Fatal(err)
	}
	return out
}

// lockTable takes an ACCESS EXCLUSIVE lock on table, which keeps any
// backfill from reading it, until unlock or the end of the test.
func (e *e2e) lockTable(table string) (unlock func()) {
	e.T.Helper()
	ctx := context.Background()
	tx, err := testenv.Conn(e.T, e.DBURL).Begin(ctx)
	if err != nil {
		e.T.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{table}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		e.T.Fatalf("locking %s: %v", table, err)
	}
	unlock = sync.OnceFunc(func() {
		if err := tx.Rollback(ctx); err != nil {
			e.T.Errorf("unlocking %s: %v", table, err)
		}
	})
	e.T.Cleanup(unlock)
	return unlock
}

// awaitConfirmed waits until the slot is confirmed past lsn: everything
// committed before it is durable in every sink.
func (e *e2e) awaitConfirmed(lsn pglogrepl.LSN) {
	e.T.Helper()
	await(e.T, "the slot to be confirmed past "+lsn.String(), func() (bool, string) {
		_, confirmed := e.SlotState()
		return confirmed >= lsn, "confirmed " + confirmed.String()
	})
}

// status reads the pipeline's /status; nil while it does not answer yet.
func status(t testing.TB, p *harness.Pipeline) map[string]any {
	t.Helper()
	code, body, err := tryCall(http.MethodGet, p.PublicURL()+"/status", nil)
	if err != nil {
		return nil
	}
	if code != http.StatusOK {
		t.Fatalf("/status: %d %s", code, body)
	}
	var st map[string]any
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("decoding /status: %v", err)
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
func quarantined(t *testing.T, url string, f broker.QuarantineFilter) []broker.QuarantineEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	entries, err := testenv.BrokerAt(t, url).ListQuarantine(ctx, f)
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
	e.T.Helper()
	for _, ix := range cfg.Indexes {
		if ix.Name == index {
			return e.Prefix + index + "_" + schema.Hash(ix.Schema)
		}
	}
	e.T.Fatalf("no index %s in the config", index)
	return ""
}

// aliasHolders lists the indexes an alias points at.
func (e *e2e) aliasHolders(alias string) []string {
	e.T.Helper()
	code, body := call(e.T, http.MethodGet, e.OpenSearch+"/_alias/"+alias, nil)
	if code == http.StatusNotFound {
		return nil
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		e.T.Fatalf("alias %s: %d %s", alias, code, body)
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
	e.T.Helper()
	_, body := call(e.T, http.MethodGet, e.OpenSearch+"/_cat/indices/"+pattern+"?format=json&h=index&expand_wildcards=all", nil)
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
	e.T.Helper()
	for _, ix := range cfg.Indexes {
		if ix.Name != index {
			continue
		}
		res, err := harness.Compare(context.Background(), e.DBURL, e.OpenSearch, alias, index, ix.Schema)
		if err != nil {
			e.T.Fatalf("comparing %s: %v", alias, err)
		}
		if !res.OK() || res.Compared == 0 {
			e.T.Fatalf("%s differs from a fresh build: %s", alias, res)
		}
		return
	}
	e.T.Fatalf("no index %s in the config", index)
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
				resp, err := http.Get(e.OpenSearch + "/" + alias + "/_count")
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
func indexes(t testing.TB, p *harness.Pipeline) map[string]map[string]any {
	t.Helper()
	code, body, err := tryCall(http.MethodGet, p.PrivateURL()+"/indexes", nil, p.Options.AdminUser, p.Options.AdminPassword)
	if err != nil {
		return nil
	}
	if code != http.StatusOK {
		t.Fatalf("/indexes: %d %s", code, body)
	}
	var list []map[string]any
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("decoding /indexes: %v", err)
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
	e.T.Helper()
	conn := testenv.Conn(e.T, e.DBURL)
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
			// Paced: the point is writes during the reindex, not a backlog
			// that takes minutes to drain on a loaded machine.
			time.Sleep(2 * time.Millisecond)
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
	e.T.Helper()
	call(e.T, http.MethodPost, e.OpenSearch+"/"+e.Prefix+"*/_refresh?expand_wildcards=all", nil)
	_, indexes := call(e.T, http.MethodGet, e.OpenSearch+"/_cat/indices/"+e.Prefix+"*?h=index,docs.count&s=index&expand_wildcards=all", nil)
	_, aliases := call(e.T, http.MethodGet, e.OpenSearch+"/_cat/aliases/"+e.Prefix+"*?h=alias,index&s=alias", nil)
	return string(indexes) + "--\n" + string(aliases)
}
