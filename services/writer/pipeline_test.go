package writer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/sink"
	"github.com/flusso/flusso/pkg/sink/stdout"
	"github.com/flusso/flusso/proto/flussopb"
)

// output is where the stdout sink writes; it can be made to fail.
type output struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	fail bool
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail {
		return 0, errors.New("disk full")
	}
	return o.buf.Write(p)
}

// TestPipeline runs the writer's pipeline against an embedded JetStream and
// the stdout sink: written runs are acked, a write the sink fails is
// retried (the stage degraded meanwhile) until the sink works again or the
// writer shuts down, when it is handed back for redelivery, and the last
// write of a caught-up fetch asks for a refresh.
func TestPipeline(t *testing.T) {
	tests := []struct {
		name        string
		fail        bool // the sink fails until it is seen degraded; then…
		recovers    bool // …it works again, or else the writer shuts down
		caughtUp    bool
		wantAcked   bool
		wantRefresh bool
	}{
		{name: "written and caught up", caughtUp: true, wantAcked: true, wantRefresh: true},
		{name: "written with more waiting", wantAcked: true},
		{name: "sink fails, then works again", fail: true, recovers: true, caughtUp: true, wantAcked: true, wantRefresh: true},
		{name: "sink fails until shutdown", fail: true, caughtUp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn := testenv.Broker(t, "out")
			const n = 10
			for i := range n {
				doc := &flussopb.Document{Index: "tags", Id: fmt.Sprint(i), Op: flussopb.DocOp_UPSERT, Body: []byte(`{"n":1}`), Version: 1}
				if err := conn.PublishDocument(ctx, doc, ""); err != nil {
					t.Fatal(err)
				}
			}
			docsCons, err := conn.Documents(ctx, "out")
			if err != nil {
				t.Fatal(err)
			}
			var msgs []*broker.DocumentMsg
			for len(msgs) < n && ctx.Err() == nil {
				got, err := docsCons.Next(ctx, n-len(msgs), 5*time.Second, 0)
				if err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, got...)
			}
			docs := make([]*flussopb.Document, n)
			for i, m := range msgs {
				if m.Err != nil {
					t.Fatal(m.Err)
				}
				docs[i] = m.Values[0]
			}
			// The consumer's state, as the server has it.
			cons, err := conn.JS.Consumer(ctx, broker.DocsStream, broker.WriterConsumer("out"))
			if err != nil {
				t.Fatal(err)
			}

			out := &output{fail: tt.fail}
			stage := health.NewRegistry().Stage("writer.out")
			w := New(Config{Sink: stdout.New("out", out, false, "test"), Broker: conn, Indexes: []flow.Index{{Name: "tags"}}, Health: stage})
			refresh := make(chan struct{}, 1)
			pipe := newPipeline(w, refresh)
			pipe.caughtUp.Store(tt.caughtUp)
			wctx, shutdown := context.WithCancel(ctx)
			defer shutdown()
			// With the sink failing, submits wait for the writes in flight:
			// the sink is repaired, or the writer shut down, meanwhile.
			degraded := make(chan health.Report, 1)
			if tt.fail {
				go func() {
					r := stage.Report()
					for ; r.Failures < 2 && ctx.Err() == nil; r = stage.Report() {
						time.Sleep(10 * time.Millisecond)
					}
					degraded <- r
					if !tt.recovers {
						shutdown()
						return
					}
					out.mu.Lock()
					out.fail = false
					out.mu.Unlock()
				}()
			}
			for _, part := range [][2]int{{0, 4}, {4, 7}, {7, n}} {
				if err := pipe.submit(wctx, msgs[part[0]:part[1]], docs[part[0]:part[1]]); err != nil && tt.wantAcked {
					t.Fatalf("submit: %v", err)
				}
			}
			if tt.fail {
				if r := <-degraded; r.State != health.Degraded || !strings.Contains(r.LastError, "disk full") {
					t.Fatalf("while the sink fails the writer shows %+v, want degraded, last error disk full", r)
				}
			}
			err = pipe.drain()
			if tt.wantAcked != (err == nil) {
				t.Fatalf("drain: %v, want a failure: %v", err, !tt.wantAcked)
			}
			if !tt.wantAcked && pipe.submit(ctx, msgs[:1], docs[:1]) == nil {
				t.Error("a submit after a failure was accepted")
			}
			if r := stage.Report(); tt.recovers && r.State != health.OK {
				t.Errorf("after the sink recovered the writer shows %+v, want ok", r)
			}

			if err := conn.NC.FlushWithContext(ctx); err != nil {
				t.Fatal(err)
			}
			// The server applies acks to the consumer on its own time.
			var info *jetstream.ConsumerInfo
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if info, err = cons.Info(ctx); err != nil {
					t.Fatal(err)
				}
				if !tt.wantAcked || info.AckFloor.Stream == n || time.Now().After(deadline) {
					break
				}
			}
			if acked := info.AckFloor.Stream == n && info.NumAckPending == 0; acked != tt.wantAcked {
				t.Errorf("ack floor %d, %d pending acks: every message acked is %v, want %v", info.AckFloor.Stream, info.NumAckPending, acked, tt.wantAcked)
			}
			if !tt.wantAcked {
				again, err := broker.Next(ctx, cons, n, 5*time.Second, 0)
				if err != nil || len(again) == 0 {
					t.Fatalf("nothing redelivered after the failure (%v)", err)
				}
				if meta, err := again[0].Metadata(); err != nil || meta.NumDelivered < 2 {
					t.Errorf("redelivered message metadata %+v (%v), want a second delivery", meta, err)
				}
			} else if got := strings.Count(out.buf.String(), "\n"); got != n {
				t.Errorf("the sink printed %d envelopes, want %d", got, n)
			}
			select {
			case <-refresh:
				if !tt.wantRefresh {
					t.Error("asked for a refresh, want none")
				}
			default:
				if tt.wantRefresh {
					t.Error("no refresh asked after a caught-up fetch was written")
				}
			}
		})
	}
}

// gatedSink is the stdout sink with writes that wait for a gate, recording
// how many documents each write got.
type gatedSink struct {
	*stdout.Sink
	gate chan struct{} // closed: writes go on
	mu   sync.Mutex
	runs []int
}

func (g *gatedSink) Write(ctx context.Context, docs []sink.Doc) ([]sink.Rejection, error) {
	g.mu.Lock()
	g.runs = append(g.runs, len(docs))
	g.mu.Unlock()
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Sink.Write(ctx, docs)
}

func (g *gatedSink) written() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.runs)
}

// TestFetchAfterAWriteIsFree holds both writes of a running writer in the
// sink while documents arrive in two bursts further apart than the fetch
// linger: the writer fetches only once a write can start, so the next
// write takes both bursts in one run (one bulk request), not the first
// burst alone fetched while the writes were still in flight.
func TestFetchAfterAWriteIsFree(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := testenv.Broker(t, "out")
	s := &gatedSink{Sink: stdout.New("out", io.Discard, false, "test"), gate: make(chan struct{})}
	w := New(Config{Sink: s, Broker: conn, Indexes: []flow.Index{{Name: "tags"}}})
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		stop()
		<-done
	}()
	id := 0
	publish := func(n int) {
		t.Helper()
		for range n {
			id++
			doc := &flussopb.Document{Index: "tags", Id: fmt.Sprint(id), Op: flussopb.DocOp_UPSERT, Body: []byte(`{"n":1}`), Version: 1}
			if err := conn.PublishDocument(ctx, doc, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	awaitRuns := func(n int) []int {
		t.Helper()
		for ctx.Err() == nil {
			if got := s.written(); len(got) >= n {
				return got
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("the sink got writes %v, want %d", s.written(), n)
		return nil
	}
	// Both writes in flight, held by the sink.
	publish(1)
	awaitRuns(1)
	publish(1)
	awaitRuns(2)
	const burst = 10
	publish(burst)
	time.Sleep(4 * broker.Linger)
	publish(burst)
	time.Sleep(2 * broker.Linger)
	close(s.gate)
	if got := awaitRuns(3); got[2] != 2*burst {
		t.Errorf("writes of %v documents: the third took %d, want both bursts (%d)", got, got[2], 2*burst)
	}
}

// TestRefreshGap: a refresh of a few documents is followed soon by the
// next, one that takes long keeps them apart for up to a second.
func TestRefreshGap(t *testing.T) {
	tests := []struct {
		took, want time.Duration
	}{
		{took: time.Millisecond, want: refreshMin},
		{took: 25 * time.Millisecond, want: 250 * time.Millisecond},
		{took: 75 * time.Millisecond, want: 750 * time.Millisecond},
		{took: 150 * time.Millisecond, want: refreshEvery},
	}
	for _, tt := range tests {
		if got := refreshGap(tt.took); got != tt.want {
			t.Errorf("refreshGap(%s) = %s, want %s", tt.took, got, tt.want)
		}
	}
}
