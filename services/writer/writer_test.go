package writer

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/faultproxy"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sink/opensearch"
	"github.com/flusso/flusso/proto/flussopb"
)

// rig is a writer of sink "primary", the real OpenSearch behind a fault
// proxy with max_retries 0, on an embedded JetStream.
type rig struct {
	conn  *broker.Conn
	sink  *opensearch.Sink
	proxy *faultproxy.Proxy
	reg   *health.Registry
	w     *Writer
	done  chan error // Run's result
	stop  context.CancelFunc
}

func newRig(t *testing.T, onError flow.OnError) *rig {
	t.Helper()
	ix, err := schema.Parse("users.schema.yml", []byte("version: 1\ntable: users\nprimary_key: id\nfields:\n  - long: id\n  - text: name\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{conn: testenv.Broker(t, "primary"), proxy: faultproxy.New(t, testenv.OpenSearch(t)), reg: health.NewRegistry(), done: make(chan error, 1)}
	r.sink, err = opensearch.New(opensearch.Config{Name: "primary", URL: r.proxy.URL, Prefix: testenv.IndexPrefix(t),
		RefreshInterval: "1s", Health: r.reg.Stage("sink.primary")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.sink.Close() })
	users := flow.Index{Name: "users", Schema: ix, Hash: schema.Hash(ix), OnError: onError}
	// The pipeline prepares the sink's indexes before its writers run.
	if _, err := r.sink.Ensure(context.Background(), users); err != nil {
		t.Fatal(err)
	}
	r.w = New(Config{Sink: r.sink, Broker: r.conn, Health: r.reg.Stage("writer.primary"), Indexes: []flow.Index{users}})
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- r.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func (r *rig) publish(t *testing.T, docs ...*flussopb.Document) {
	t.Helper()
	for _, d := range docs {
		if err := r.conn.PublishDocument(context.Background(), d, ""); err != nil {
			t.Fatal(err)
		}
	}
}

// awaitAcked waits until the writer acked the first n documents, failing
// the test if Run ends meanwhile.
func (r *rig) awaitAcked(t *testing.T, n uint64) {
	t.Helper()
	cons, err := r.conn.JS.Consumer(context.Background(), broker.DocsStream, broker.WriterConsumer("primary"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		info, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.AckFloor.Stream >= n {
			return
		}
		select {
		case err := <-r.done:
			r.done <- err // for the cleanup
			t.Fatalf("the writer stopped with %v before acking %d documents (ack floor %d)", err, n, info.AckFloor.Stream)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ack floor %d after a minute, want %d", info.AckFloor.Stream, n)
		}
	}
}

// count is how many users documents OpenSearch holds.
func (r *rig) count(t *testing.T) int64 {
	t.Helper()
	if err := r.sink.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	n, err := r.sink.Count(context.Background(), "users")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func user(id int, name string) *flussopb.Document {
	return &flussopb.Document{Index: "users", Id: fmt.Sprint(id), Op: flussopb.DocOp_UPSERT, Version: 1,
		Body: []byte(fmt.Sprintf(`{"id":%d,"name":%q}`, id, name))}
}

// TestWriterWaitsOutARefusingSink puts a sink that refuses or fails, for
// longer than max_retries, in front of a running writer: the writer keeps
// running, shows degraded with the last error while it retries, writes
// everything once the sink answers again and shows ok; a shutdown while
// the sink still refuses ends it at once.
func TestWriterWaitsOutARefusingSink(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault faultproxy.Fault // counted: Count is how many in a row
		// writerSees says the sink gives up and the writer retries, so
		// the writer too shows degraded; else the sink waits it out.
		writerSees bool
		lastError  string
	}{
		{"500 past max_retries", faultproxy.Fault{Status: http.StatusInternalServerError, Count: 4}, true, "status 500"},
		{"permission refused", faultproxy.Fault{Status: http.StatusForbidden, Count: 3}, true, "status 403"},
		{"429 burst past max_retries", faultproxy.Fault{Status: http.StatusTooManyRequests, RetryAfter: time.Second, Count: 3}, false, "status 429"},
		{"connection resets", faultproxy.Fault{Reset: true, Count: 3}, false, "bulk request: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, flow.Stop)
			var (
				mu     sync.Mutex
				during []health.Report // writer, sink at the last fault
			)
			r.proxy.OnFault(func(n int, _ faultproxy.Fault) {
				if n == tt.fault.Count {
					mu.Lock()
					during = []health.Report{r.reg.Stage("writer.primary").Report(), r.reg.Stage("sink.primary").Report()}
					mu.Unlock()
				}
			})
			r.proxy.Set(tt.fault)
			const docs = 20
			for i := range docs {
				r.publish(t, user(i, "n"))
			}
			r.awaitAcked(t, docs)
			if served := r.proxy.Counts().Faulted; served != tt.fault.Count {
				t.Errorf("%d faults served, want %d", served, tt.fault.Count)
			}
			if got := r.count(t); got != docs {
				t.Errorf("OpenSearch holds %d documents, want %d", got, docs)
			}
			mu.Lock()
			writer, sk := during[0], during[1]
			mu.Unlock()
			// The stage that retries shows it. (A sink that gave up a
			// request shows ok again as its next request succeeds: the
			// writer retrying the write is what stays degraded.)
			retrying, other := sk, writer
			if tt.writerSees {
				retrying, other = writer, sk
			}
			if retrying.State != health.Degraded || !strings.Contains(retrying.LastError, tt.lastError) {
				t.Errorf("while failing %s showed %+v, want degraded with %q", retrying.Stage, retrying, tt.lastError)
			}
			if !tt.writerSees && other.Failures != 0 {
				t.Errorf("the writer saw failures the sink waits out itself: %+v", other)
			}
			for _, stage := range []string{"writer.primary", "sink.primary"} {
				if got := r.reg.Stage(stage).Report(); got.State != health.OK {
					t.Errorf("after the faults %s shows %+v, want ok", stage, got)
				}
			}

			// Shut down while the sink refuses: Run ends at once, without
			// an error, the document left for the next run.
			refusing := tt.fault
			refusing.Count = 0 // until the test ends
			r.proxy.Set(refusing)
			r.publish(t, user(docs, "late"))
			for r.proxy.Counts().Faulted < tt.fault.Count+2 {
				time.Sleep(10 * time.Millisecond)
			}
			r.stop()
			select {
			case err := <-r.done:
				if err != nil {
					t.Errorf("Run ended with %v on shutdown", err)
				}
				r.done <- err // for the cleanup
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not end within 10s of the shutdown while the sink refused")
			}
		})
	}
}

// TestTooLargeIsQuarantined has the sink refuse a document for its size
// (413) under on_error = skip: it is quarantined with a reason naming
// index, id and size, and the documents around it are written.
func TestTooLargeIsQuarantined(t *testing.T) {
	t.Parallel()
	r := newRig(t, flow.Skip)
	r.proxy.Set(faultproxy.Fault{Status: http.StatusRequestEntityTooLarge, BodyOver: 2000})
	big := user(2, strings.Repeat("x", 3000))
	r.publish(t, user(1, "a"), big, user(3, "c"))
	r.awaitAcked(t, 3)
	entries, err := r.conn.ListQuarantine(context.Background(), broker.QuarantineFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].ID != "2" || entries[0].Index != "users" || entries[0].Sink != "primary" {
		t.Fatalf("quarantine holds %+v, want document 2 of users refused by primary", entries)
	}
	for _, want := range []string{"index users", "document 2", fmt.Sprintf("%d bytes", len(big.Body)), "413"} {
		if !strings.Contains(entries[0].Reason, want) {
			t.Errorf("quarantine reason %q does not say %q", entries[0].Reason, want)
		}
	}
	if got := r.count(t); got != 2 {
		t.Errorf("OpenSearch holds %d documents, want the 2 around the big one", got)
	}
}

// TestBatchAckedWhenWritten publishes a message of one document (as
// versions before batching wrote them) and a batch of documents: the batch
// stays unacked while the sink fails, however many documents of it a write
// got through, and is acked once every document of it is written or, under
// on_error = skip, quarantined.
func TestBatchAckedWhenWritten(t *testing.T) {
	t.Parallel()
	const batch = 30
	tests := []struct {
		name        string
		onError     flow.OnError
		fault       faultproxy.Fault
		failUntil   uint64 // the writer's failures before the fault is cleared (0: it stays)
		big         bool
		quarantined int
	}{
		{name: "sink fails: the batch waits, then is written whole", onError: flow.Stop,
			fault: faultproxy.Fault{Status: http.StatusInternalServerError}, failUntil: 2},
		{name: "a document refused under skip: quarantined, the rest written", onError: flow.Skip,
			fault: faultproxy.Fault{Status: http.StatusRequestEntityTooLarge, BodyOver: 4000}, big: true, quarantined: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, tt.onError)
			r.proxy.Set(tt.fault)
			r.publish(t, user(0, "old"))
			docs := make([]*flussopb.Document, batch)
			for i := range docs {
				docs[i] = user(i+1, "n")
			}
			if tt.big {
				docs[batch/2] = user(batch/2+1, strings.Repeat("x", 5000))
			}
			msgs := 0
			refused, err := r.conn.PublishDocumentsAsync(context.Background(), docs, broker.MaxPayload, func(broker.DocumentsSent) error {
				msgs++
				return nil
			})
			if err != nil || msgs != 1 || len(refused) != 0 {
				t.Fatalf("%d messages, %d refused (%v), want one message", msgs, len(refused), err)
			}
			if tt.failUntil > 0 {
				stage := r.reg.Stage("writer.primary")
				for stage.Report().Failures < tt.failUntil {
					time.Sleep(20 * time.Millisecond)
				}
				cons, err := r.conn.JS.Consumer(context.Background(), broker.DocsStream, broker.WriterConsumer("primary"))
				if err != nil {
					t.Fatal(err)
				}
				info, err := cons.Info(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if info.AckFloor.Stream >= 2 {
					t.Fatalf("the batch was acked (ack floor %d) while the sink failed", info.AckFloor.Stream)
				}
				r.proxy.Clear()
			}
			r.awaitAcked(t, 2)
			if got, want := r.count(t), int64(batch+1-tt.quarantined); got != want {
				t.Errorf("OpenSearch holds %d documents, want %d", got, want)
			}
			entries, err := r.conn.ListQuarantine(context.Background(), broker.QuarantineFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != tt.quarantined {
				t.Errorf("%d documents quarantined, want %d", len(entries), tt.quarantined)
			}
		})
	}
}
