package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
)

// TestNext checks how Next batches: a backlog goes at once in full
// batches, a trickle waits linger for what follows its first message, and
// nothing within wait is an empty batch; a byte bound stops a batch early
// but never holds back its first message.
func TestNext(t *testing.T) {
	// Bounds on durations are loose: they tell a linger waited out from
	// one skipped, on a machine however loaded.
	tests := []struct {
		name    string
		ready   int           // messages published before Next
		later   int           // published after, 100 ms into Next
		max     int           // batch size
		bytes   int           // bound on the batch's data (0: none)
		size    int           // bytes of each message (default 1)
		wait    time.Duration // for the first message
		linger  time.Duration
		want    int
		atLeast time.Duration // Next took at least
		atMost  time.Duration // and at most
	}{
		{name: "backlog fills the batch at once", ready: 10, max: 5, wait: time.Second, linger: 5 * time.Second, want: 5, atMost: 2500 * time.Millisecond},
		{name: "no linger: what is there", ready: 1, later: 2, max: 10, wait: time.Second, want: 1},
		{name: "linger takes what follows", ready: 1, later: 2, max: 10, wait: time.Second, linger: time.Second, want: 3, atLeast: time.Second},
		{name: "bytes bound a backlog", ready: 10, max: 10, bytes: 3500, size: 1000, wait: time.Second, want: 3, atMost: 2500 * time.Millisecond},
		{name: "bytes bound lets one big message through", ready: 3, max: 10, bytes: 500, size: 1000, wait: time.Second, want: 1, atMost: 2500 * time.Millisecond},
		{name: "bytes bound with room takes all", ready: 4, max: 10, bytes: 1 << 20, size: 1000, wait: time.Second, want: 4, atMost: 2500 * time.Millisecond},
		{name: "nothing within wait", max: 10, wait: 100 * time.Millisecond, linger: 5 * time.Second, want: 0, atMost: 2500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := broker.Connect(ctx, testenv.NATS(t), t.Name())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			s, err := conn.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}})
			if err != nil {
				t.Fatal(err)
			}
			cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				t.Fatal(err)
			}
			body := []byte(strings.Repeat("x", max(tt.size, 1)))
			publish := func(n int) {
				for range n {
					if _, err := conn.JS.Publish(ctx, "t", body); err != nil {
						t.Error(err)
					}
				}
			}
			publish(tt.ready)
			published := make(chan struct{})
			go func() {
				defer close(published)
				time.Sleep(100 * time.Millisecond)
				publish(tt.later)
			}()
			defer func() { <-published }()
			start := time.Now()
			msgs, err := broker.NextBytes(ctx, cons, tt.max, tt.bytes, tt.wait, tt.linger)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != tt.want {
				t.Errorf("got %d messages, want %d", len(msgs), tt.want)
			}
			if took < tt.atLeast || (tt.atMost > 0 && took > tt.atMost) {
				t.Errorf("took %v, want %v to %v", took, tt.atLeast, tt.atMost)
			}
		})
	}
}
