package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSetupKeepsUnknownWriters runs Setup as an old process would during a
// rolling upgrade that adds sink b: b's consumer and the documents it holds
// stay, until deleted explicitly.
func TestSetupKeepsUnknownWriters(t *testing.T) {
	ctx := ctxT(t)
	conn := testenv.BrokerAt(t, testenv.NATS(t))
	if err := conn.Setup(ctx, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.JS.Publish(ctx, broker.DocsSubject("users"), []byte("doc")); err != nil {
		t.Fatal(err)
	}
	if err := conn.Setup(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	writers, err := conn.Writers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(writers); len(writers) != 2 || writers[1].Consumer != "writer_b" || writers[1].Sink != "b" || writers[1].Pending != 1 {
		t.Fatalf("writers after Setup without b: %s, want writer_a and writer_b still holding its document", got)
	}
	if err := conn.DeleteWriter(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if writers, err = conn.Writers(ctx); err != nil || len(writers) != 1 || writers[0].Sink != "a" {
		t.Fatalf("writers after deleting b: %+v, %v; want a alone", writers, err)
	}
	if err := conn.DeleteWriter(ctx, "b"); !broker.IsNotFound(err) {
		t.Errorf("deleting b again: %v, want a not-found error", err)
	}
}

func TestQuarantineLimits(t *testing.T) {
	tests := []struct {
		name     string
		opts     []broker.SetupOption
		maxBytes int64
		maxAge   time.Duration
	}{
		{"defaults", nil, 1 << 30, 30 * 24 * time.Hour},
		{"configured", []broker.SetupOption{broker.WithQuarantineLimits(broker.QuarantineLimits{MaxBytes: 4096, MaxAge: time.Hour})}, 4096, time.Hour},
		{"one configured", []broker.SetupOption{broker.WithQuarantineLimits(broker.QuarantineLimits{MaxAge: time.Hour})}, 1 << 30, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := testenv.BrokerAt(t, testenv.NATS(t))
			// Limits change on an existing stream too.
			if err := conn.Setup(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if err := conn.Setup(ctx, nil, tt.opts...); err != nil {
				t.Fatal(err)
			}
			entry := bytes.Repeat([]byte("x"), 1000)
			for range 10 {
				if _, err := conn.JS.Publish(ctx, broker.QuarantineSubject("primary", "users"), entry); err != nil {
					t.Fatal(err)
				}
			}
			u, err := conn.Quarantine(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if u.MaxBytes != tt.maxBytes || u.MaxAge != tt.maxAge {
				t.Errorf("limits %d bytes, %v; want %d bytes, %v", u.MaxBytes, u.MaxAge, tt.maxBytes, tt.maxAge)
			}
			if u.Bytes == 0 || u.Bytes > uint64(tt.maxBytes) {
				t.Errorf("%d bytes used, want some and at most %d", u.Bytes, tt.maxBytes)
			}
			if tt.maxBytes < 10_000 && u.Entries >= 10 {
				t.Errorf("%d entries kept past the byte limit, want the oldest dropped", u.Entries)
			}
		})
	}
}

// TestConnectLogsAttempts checks that a NATS that does not answer is
// retried with a log line per attempt naming the address, its secret
// hidden, and the attempt count.
func TestConnectLogsAttempts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	_, err = broker.Connect(ctx, "nats://flusso:hunter2@"+addr, t.Name())
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	out := logs.String()
	for _, want := range []string{"attempt=1 ", "attempt=2 ", "url=nats://flusso:xxxxx@" + addr} {
		if !strings.Contains(out, want) {
			t.Errorf("logs do not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+err.Error(), "hunter2") {
		t.Errorf("the password leaked: %v\n%s", err, out)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "attempts") {
		t.Errorf("error %q does not name the address and the attempts", err)
	}
}

// TestQuarantineOnASmallServer runs Setup on a server that cannot reserve
// the quarantine's default byte limit: the pipeline still starts, the
// quarantine bounded by age alone; a limit that fits is kept.
func TestQuarantineOnASmallServer(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), JetStreamMaxStore: 64 << 20, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	ctx := ctxT(t)
	conn := testenv.BrokerAt(t, srv.ClientURL())
	for _, tt := range []struct {
		limits   broker.QuarantineLimits
		maxBytes int64
	}{
		{broker.QuarantineLimits{}, -1},
		{broker.QuarantineLimits{MaxBytes: 1 << 20}, 1 << 20},
	} {
		if err := conn.Setup(ctx, []string{"primary"}, broker.WithQuarantineLimits(tt.limits)); err != nil {
			t.Fatalf("Setup with %+v: %v", tt.limits, err)
		}
		u, err := conn.Quarantine(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if u.MaxBytes != tt.maxBytes || u.MaxAge != broker.DefaultQuarantineMaxAge {
			t.Errorf("with %+v the quarantine keeps %d bytes for %v, want %d bytes for %v", tt.limits, u.MaxBytes, u.MaxAge, tt.maxBytes, broker.DefaultQuarantineMaxAge)
		}
	}
}
