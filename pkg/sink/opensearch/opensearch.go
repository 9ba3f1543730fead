// Package opensearch is the sink flusso deploys: it owns one OpenSearch index
// per logical index and writes documents to it with the bulk API.
//
// # Names
//
// For logical index users with schema hash H under prefix dev_:
//
//   - dev_users_H_1, dev_users_H_2, …: concrete generations holding the
//     data, created with the mapping derived from the schema (dynamic:
//     strict) and never modified afterwards;
//   - dev_users_H: the hash alias on the current generation, what flusso
//     and query clients address;
//   - dev_users: the convenience alias, best-effort: failing to set it is a
//     warning, nothing depends on it;
//   - dev_flusso_meta: a hidden index with one document per logical index
//     (id users) holding the hash, the current and next generation, the
//     seeded flag and timestamps;
//   - dev_flusso_tombstones: a hidden index recording recent deletes and
//     purges, by hash alias and id (see Versions).
//
// # Lifecycle
//
// Ensure reads the meta document. The same hash resumes its generations;
// a new hash (or none) starts a fresh generation behind its own hash alias.
// The convenience alias stays where it is (the previous schema's data) until
// MarkSeeded of the new generation moves it, in the same _aliases call that
// moves the hash alias; when nothing holds it yet, as on the first run, it
// points at the new generation at once. Indexes of a previous hash are left
// in place, unmaintained, for the operator to delete: clients built for the
// old schema may still read them during a rollout. A later return to an old
// hash starts a fresh generation, since the old one missed every change in
// between. So two deployments with different schemas must not share a
// prefix: each Ensure would restart the other's index. A writer that finds
// another hash in the meta document while running keeps writing its own
// hash alias only.
//
// BeginReindex creates generation N+1 and records it as next; writes with
// Generation 0 then go to both until MarkSeeded(N+1) repoints the aliases and
// deletes the older generations of that hash.
//
// # Several writer processes
//
// Every Write reads the meta documents of its indexes (one realtime _mget)
// before building the bulk request, so a writer learns about a reindex
// started by another process no later than its next Write: a change
// committed after the reindex backfill's snapshot is built after
// BeginReindex returned, hence written to both generations. Current
// generation writes go through the hash alias (require_alias), so a writer
// that read the meta just before another process swapped and deleted a
// generation lands in the new one instead of recreating the deleted name.
//
// # Versions
//
// Upserts and deletes carry the document's version as an external version:
// OpenSearch refuses (409) anything not newer than what it holds, which the
// sink counts as applied. Created indexes keep delete tombstones for an hour
// (index.gc_deletes) so a late, older upsert cannot resurrect a deleted
// document; since OpenSearch forgets them when a shard recovers, the sink
// also records deletes in dev_flusso_tombstones (see tombstones.go).
package opensearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	opensearchgo "github.com/opensearch-project/opensearch-go/v4"

	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/mapping"
	"github.com/flusso/flusso/pkg/retry"
	"github.com/flusso/flusso/pkg/sink"
)

// Config is a sink's resolved settings: secrets and overrides already read
// from the environment, defaults applied where a field is zero.
type Config struct {
	Name string // sink name from flusso.toml
	// URL is the cluster's base URL, or several nodes' base URLs
	// comma-separated (see Nodes): requests go round-robin over them, and
	// a failed one is retried on the next node.
	URL      string
	Username string
	Password string
	// InsecureSkipVerify turns off TLS certificate verification
	// (tls_verify = false); the zero value verifies.
	InsecureSkipVerify bool

	BatchSize int           // documents per bulk request; default 1000
	MaxBytes  int           // bytes per bulk request; default 10 MiB
	Timeout   time.Duration // per HTTP request; default 30s
	// MaxRetries bounds the retries of a failure that may pass but is not
	// backpressure or an outage (a 500, a shard recovering, an item
	// failing with a 500); an overloaded or unreachable cluster (429,
	// 502-504, no answer) is waited out without end.
	MaxRetries      int
	Pipeline        string // ingest pipeline for every index operation
	Shards          int    // default 1
	Replicas        int
	RefreshInterval string // after seeding; default "10s"
	TextAnalysis    string // mapping.Builtin (default) or mapping.ICU
	AutoSubfields   bool
	Prefix          string // index prefix, already validated
	// Health records failed requests being retried and the recovery after them;
	// may be nil.
	Health *health.Stage
}

// Defaults of the settings a sink's Config leaves zero; pkg/config fills
// in the same for keys flusso.toml leaves out.
const (
	DefaultBatchSize       = 1000
	DefaultMaxBytes        = 10 << 20
	DefaultTimeout         = 30 * time.Second
	DefaultMaxRetries      = 3
	DefaultShards          = 1
	DefaultReplicas        = 1
	DefaultRefreshInterval = "10s"
)

func (c *Config) applyDefaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.Shards <= 0 {
		c.Shards = DefaultShards
	}
	if c.RefreshInterval == "" {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.TextAnalysis == "" {
		c.TextAnalysis = mapping.Builtin
	}
}

// gcDeletes is how long a delete's version is remembered. It has to outlast
// the longest a stale upsert can be delayed (redeliveries after a writer
// crash), or the upsert would recreate the deleted document.
const gcDeletes = "1h"

// Sink writes to one OpenSearch cluster.
type Sink struct {
	cfg   Config
	nodes *pool
	log   *slog.Logger

	retries *retry.Runner

	mu        sync.Mutex
	owned     map[string]owned // by logical name, filled by Ensure
	metaReady bool
	swept     time.Time // last removal of expired tombstones
}

// owned is what Ensure learned about an index this sink writes.
type owned struct {
	ix        flow.Index
	hashAlias string
}

var _ sink.Sink = (*Sink)(nil)

// New returns a sink for cfg. It does not contact the cluster.
func New(cfg Config) (*Sink, error) {
	cfg.applyDefaults()
	if cfg.TextAnalysis != mapping.Builtin && cfg.TextAnalysis != mapping.ICU {
		return nil, fmt.Errorf("opensearch sink %q: text_analysis %q is neither builtin nor icu", cfg.Name, cfg.TextAnalysis)
	}
	nodes, err := newPool(cfg)
	if err != nil {
		return nil, fmt.Errorf("opensearch sink %q: %w", cfg.Name, err)
	}
	log := slog.Default().With("sink", cfg.Name)
	return &Sink{
		cfg:     cfg,
		nodes:   nodes,
		log:     log,
		retries: &retry.Runner{Health: cfg.Health, Log: log},
		owned:   map[string]owned{},
	}, nil
}

// Name is the sink's name from flusso.toml.
func (s *Sink) Name() string { return s.cfg.Name }

// Close releases the clients' connections.
func (s *Sink) Close() error { return s.nodes.close() }

// Names.

func (s *Sink) hashAlias(logical, hash string) string  { return HashAlias(s.cfg.Prefix, logical, hash) }
func (s *Sink) convenienceAlias(logical string) string { return s.cfg.Prefix + logical }
func (s *Sink) metaIndex() string                      { return s.cfg.Prefix + "flusso_meta" }

// HashAlias is the alias flusso and query clients address for logical index
// logical with schema hash hash under prefix (see Names).
func HashAlias(prefix, logical, hash string) string { return prefix + logical + "_" + hash }

func generationName(hashAlias string, gen uint32) string { return fmt.Sprintf("%s_%d", hashAlias, gen) }

// HTTP.

// request is one call to the cluster.
type request struct {
	path   string
	query  url.Values
	body   []byte
	ndjson bool
}

func (r request) GetRequest(method string) (*http.Request, error) {
	u := r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, err
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
		if r.ndjson {
			req.Header.Set("Content-Type", "application/x-ndjson")
		}
	}
	return req, nil
}

// response is a status and body; status 0 never reaches callers.
type response struct {
	status     int
	body       []byte
	retryAfter time.Duration // the Retry-After header; 0 when absent
}

func (r response) ok() bool { return r.status >= 200 && r.status < 300 }

// transient reports whether a status is worth retrying.
func transient(status int) bool { return status == http.StatusTooManyRequests || status >= 500 }

// busy reports whether a status says the cluster is overloaded or not
// reachable behind a proxy: worth retrying without end.
func busy(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// failure is the error of a transient status, retryable as the status says.
func (r response) failure() error {
	return &retryable{err: r.errorOf(), busy: busy(r.status), after: r.retryAfter}
}

// errorOf renders an OpenSearch error body.
func (r response) errorOf() error {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(r.body, &e) == nil && len(e.Error) > 0 {
		return fmt.Errorf("status %d: %s", r.status, describe(e.Error))
	}
	return fmt.Errorf("status %d: %s", r.status, truncate(string(r.body), 500))
}

// describe renders an error object as "type: reason (caused by type: reason)".
func describe(raw json.RawMessage) string {
	var e struct {
		Type     string          `json:"type"`
		Reason   string          `json:"reason"`
		CausedBy json.RawMessage `json:"caused_by"`
	}
	if json.Unmarshal(raw, &e) != nil || e.Type == "" {
		return truncate(string(raw), 500)
	}
	out := e.Type + ": " + e.Reason
	if len(e.CausedBy) > 0 {
		out += " (caused by " + describe(e.CausedBy) + ")"
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// send performs one request without retrying, on the next node in turn.
func (s *Sink) send(ctx context.Context, method string, r request) (response, error) {
	n := s.nodes.pick(strings.HasSuffix(r.path, "/_bulk"))
	resp, err := opensearchgo.Do[opensearchgo.NoBody](ctx, n.client, method, r, nil)
	s.nodes.answered(n, err == nil || ctx.Err() != nil)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("read response: %w", err)
	}
	return response{status: resp.StatusCode, body: body, retryAfter: retryAfter(resp.Header.Get("Retry-After"))}, nil
}

// attempt performs one request and turns what is worth retrying into a
// *retryable error: no answer (refused, reset, timed out) and failing
// statuses. Any other status is returned as is.
func (s *Sink) attempt(ctx context.Context, method string, r request) (response, error) {
	resp, err := s.send(ctx, method, r)
	switch {
	case err != nil:
		return resp, &retryable{err: err, busy: true}
	case transient(resp.status):
		return resp, resp.failure()
	}
	return resp, nil
}

// call performs a request, retrying as retry does. Any status but a failing
// one is returned as is.
func (s *Sink) call(ctx context.Context, method string, r request) (response, error) {
	var resp response
	err := s.retry(ctx, func() error {
		var err error
		resp, err = s.attempt(ctx, method, r)
		return err
	})
	return resp, err
}

// callOK is call that also fails on any status but 2xx and the ones listed.
func (s *Sink) callOK(ctx context.Context, method string, r request, accept ...int) (response, error) {
	resp, err := s.call(ctx, method, r)
	if err != nil {
		return resp, err
	}
	if resp.ok() {
		return resp, nil
	}
	for _, st := range accept {
		if resp.status == st {
			return resp, nil
		}
	}
	return resp, resp.errorOf()
}

// retryable is a failed attempt worth making again.
type retryable struct {
	err error
	// busy says the cluster is overloaded or unreachable: that is waited
	// out however long it lasts. Other failures may pass too (a 500, a
	// shard recovering) but are tried MaxRetries more times only.
	busy  bool
	after time.Duration // the cluster's Retry-After; 0 when it gave none
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// retry runs fn until it succeeds, fails for good or ctx ends (see pause).
// Each failed attempt marks the sink degraded on /status; the next success
// marks it ok.
func (s *Sink) retry(ctx context.Context, fn func() error) error {
	return s.retries.Do(ctx, "opensearch request", fn, s.pause())
}

// pause is the retry policy of one operation. With several nodes, the
// first failures in a row are retried at once, one per other node (the
// client sends each request to the next node): a node that died or fails
// costs a retry, not a wait. A *retryable busy failure is retried without
// end: backpressure and outages pass, and giving up would only stop the
// pipeline. It waits as long as the cluster asks (Retry-After, up to
// retry.Cap), else retry.Backoff. Other *retryable failures are retried
// MaxRetries times; any other error ends at once.
func (s *Sink) pause() retry.Pause {
	limited := 0
	return func(attempt int, err error) (time.Duration, error) {
		var r *retryable
		if !errors.As(err, &r) {
			return 0, err
		}
		if attempt < len(s.nodes.nodes)-1 && r.after == 0 {
			return 0, nil
		}
		if !r.busy {
			if limited >= s.cfg.MaxRetries {
				return 0, fmt.Errorf("gave up after %d attempts: %w", attempt+1, err)
			}
			limited++
		}
		return delay(attempt, r.after), nil
	}
}

// delay is the wait before retry number attempt+1: what the cluster asked
// for, else backoff.
func delay(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, retry.Cap)
	}
	return retry.Backoff(attempt)
}

// retryAfter reads a Retry-After header in seconds; 0 when absent or not
// seconds.
func retryAfter(h string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(min(n, 24*3600)) * time.Second
}

// joinNames joins index names for a multi-target path.
func joinNames(names []string) string {
	escaped := make([]string, len(names))
	for i, n := range names {
		escaped[i] = url.PathEscape(n)
	}
	return strings.Join(escaped, ",")
}

var errConflict = errors.New("concurrent update of flusso_meta")
