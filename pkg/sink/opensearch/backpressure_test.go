package opensearch

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/faultproxy"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/sink"
)

// faultySink is a sink with max_retries 1 behind a fault proxy, reporting
// to its own health record, with the users index ready.
func faultySink(t *testing.T, cfg Config) (*Sink, *faultproxy.Proxy, *health.Stage) {
	t.Helper()
	p := faultproxy.New(t, testenv.OpenSearch(t))
	stage := health.NewRegistry().Stage("sink.primary")
	cfg.URL, cfg.MaxRetries, cfg.Health = p.URL, 1, stage
	s := newSink(t, cfg)
	ensure(t, s, parseSchema(t, usersYAML))
	return s, p, stage
}

// TestBackpressure writes through bursts of the answers an overloaded or
// restarting cluster gives, longer than max_retries: every write lands,
// the sink shows degraded with the last error while it retries, and ok
// after.
func TestBackpressure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault faultproxy.Fault // counted: Count is how many in a row
		// lastError is in the last error /status shows while retrying.
		lastError string
		// atLeast is how long the write must have waited: Retry-After.
		atLeast time.Duration
		timeout time.Duration // of a request; 0: the default
	}{
		{"429 with Retry-After", faultproxy.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second, Count: 2}, "status 429", 2 * time.Second, 0},
		{"429 past max_retries", faultproxy.Fault{Status: http.StatusTooManyRequests, Count: 5}, "status 429: injected_fault", 0, 0},
		{"502", faultproxy.Fault{Status: http.StatusBadGateway, Count: 3}, "status 502", 0, 0},
		{"503", faultproxy.Fault{Status: http.StatusServiceUnavailable, Count: 5}, "status 503", 0, 0},
		{"504", faultproxy.Fault{Status: http.StatusGatewayTimeout, Count: 3}, "status 504", 0, 0},
		{"connection resets", faultproxy.Fault{Reset: true, Count: 4}, "bulk request: ", 0, 0},
		{"timeouts", faultproxy.Fault{Latency: 5 * time.Second, Count: 2}, "deadline exceeded", 0, 2 * time.Second},
		{"bulk items 429 past max_retries", faultproxy.Fault{ItemStatus: http.StatusTooManyRequests, Count: 5}, "es_rejected_execution_exception", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, p, stage := faultySink(t, Config{Timeout: tt.timeout})
			var (
				mu     sync.Mutex
				during []health.Report // at each fault after the first
			)
			p.OnFault(func(n int, _ faultproxy.Fault) {
				if n > 1 {
					mu.Lock()
					during = append(during, stage.Report())
					mu.Unlock()
				}
			})
			n := tt.fault.Count
			p.Set(tt.fault)
			docs := []sink.Doc{upsert("1", 1, `{"name":"a"}`), upsert("2", 1, `{"name":"b"}`), del("3", 1)}
			start := time.Now()
			write(t, s, docs...)
			if took := time.Since(start); took < tt.atLeast {
				t.Errorf("the write took %v: Retry-After asked for at least %v", took, tt.atLeast)
			}
			if served := p.Counts().Faulted; served != n || p.Pending() != 0 {
				t.Fatalf("%d faults served, %d pending; want all %d served", served, p.Pending(), n)
			}

			mu.Lock()
			defer mu.Unlock()
			if len(during) != n-1 {
				t.Fatalf("%d health reports while failing, want %d", len(during), n-1)
			}
			for i, r := range during {
				if r.State != health.Degraded || r.Since == nil || !strings.Contains(r.LastError, tt.lastError) {
					t.Errorf("at fault %d the sink showed %+v, want degraded with a last error about %q", i+2, r, tt.lastError)
				} else if !r.Since.Equal(*during[0].Since) {
					t.Errorf("degraded since %v at fault %d, since %v before", r.Since, i+2, during[0].Since)
				}
			}
			if r := stage.Report(); r.State != health.OK || r.Failures != uint64(n) {
				t.Errorf("after the write the sink showed %+v, want ok after %d failures", r, n)
			}
			ha := s.hashAlias("users", parseSchema(t, usersYAML).Hash)
			c := rawCluster(t)
			for _, id := range []string{"1", "2"} {
				if c.source(ha, id) == nil {
					t.Errorf("document %s did not land", id)
				}
			}
		})
	}
}

// TestItemFailuresUseMaxRetries checks that items failing with an error
// that is not backpressure are retried max_retries times, then rejected
// (on_error decides), while the rest of the batch lands.
func TestItemFailuresUseMaxRetries(t *testing.T) {
	t.Parallel()
	s, p, _ := faultySink(t, Config{})
	p.Set(faultproxy.Fault{ItemStatus: http.StatusInternalServerError, Count: 5})
	rej, err := s.Write(ctxT(t), []sink.Doc{upsert("1", 1, `{"name":"a"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0].Doc.ID != "1" || !strings.Contains(rej[0].Reason, "status 500") || !strings.Contains(rej[0].Reason, "failed 2 times") {
		t.Errorf("rejections %+v, want document 1 refused with status 500 after 2 attempts", rej)
	}
	if served := p.Counts().Faulted; served != 2 {
		t.Errorf("%d attempts, want 1 + max_retries = 2", served)
	}
}

// TestTooLarge sends a document the cluster refuses for its size (413): it
// is rejected, naming index, id and size, instead of being retried, and
// the documents of its request land.
func TestTooLarge(t *testing.T) {
	t.Parallel()
	s, p, stage := faultySink(t, Config{})
	big := fmt.Sprintf(`{"name":"%s"}`, strings.Repeat("x", 3000))
	p.Set(faultproxy.Fault{Status: http.StatusRequestEntityTooLarge, BodyOver: 2000})
	docs := []sink.Doc{upsert("a", 1, `{"name":"a"}`), upsert("b", 1, `{"name":"b"}`), upsert("big", 1, big), upsert("c", 1, `{"name":"c"}`)}
	rej, err := s.Write(ctxT(t), docs)
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0].Doc.ID != "big" {
		t.Fatalf("rejections %+v, want the big document only", rej)
	}
	for _, want := range []string{"index users", "document big", fmt.Sprintf("%d bytes", len(big)), "413"} {
		if !strings.Contains(rej[0].Reason, want) {
			t.Errorf("reason %q does not say %q", rej[0].Reason, want)
		}
	}
	if refused := p.Counts().Faulted; refused < 2 {
		t.Errorf("%d requests refused as too large, want the whole request and the big document's", refused)
	}
	ha := s.hashAlias("users", parseSchema(t, usersYAML).Hash)
	c := rawCluster(t)
	for _, id := range []string{"a", "b", "c"} {
		if c.source(ha, id) == nil {
			t.Errorf("document %s of the same write did not land", id)
		}
	}
	if r := stage.Report(); r.State != health.OK || r.Failures != 0 {
		t.Errorf("a refused size counted as a sink failure: %+v", r)
	}
}
