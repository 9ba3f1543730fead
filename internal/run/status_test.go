package run

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/flusso/flusso/internal/server"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/backfill"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/sink"
	"github.com/flusso/flusso/pkg/sink/stdout"
)

// TestReindexWithoutGenerationsIsRefused: a reindex asked of a process
// whose sinks keep no generations (stdout only) or that runs no sink is a
// 409 with the reason on the control surface, not a server error, and
// queues no backfill.
func TestReindexWithoutGenerationsIsRefused(t *testing.T) {
	ctx := context.Background()
	bc := testenv.Broker(t, "audit")
	kv, err := bc.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jobs := backfill.NewStore(kv)
	indexes := []flow.Index{{Name: "users", Hash: "h"}}
	tests := []struct {
		name  string
		sinks []sink.Sink
		want  string
	}{
		{"stdout only", []sink.Sink{stdout.New("audit", io.Discard, false, "test")}, "stdout sinks, which keep no index"},
		{"no sink", nil, "runs no sink (assembler only)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStatus(&Pipeline{Broker: bc, Sinks: tt.sinks, Indexes: indexes}, jobs, DefaultReadyGrace)
			srv, err := server.Listen(server.Config{
				PublicAddress: "127.0.0.1:0", PrivateAddress: "127.0.0.1:0",
				AdminUser: "admin", AdminPassword: "secret", Source: st, Log: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			sctx, stop := context.WithCancel(ctx)
			served := make(chan error, 1)
			go func() { served <- srv.Serve(sctx) }()
			defer func() {
				stop()
				if err := <-served; err != nil {
					t.Error(err)
				}
			}()

			req, _ := http.NewRequest(http.MethodPost, "http://"+srv.PrivateAddr().String()+"/reindex?index=users", nil)
			req.SetBasicAuth("admin", "secret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), tt.want) {
				t.Fatalf("POST /reindex: %d %s, want 409 saying %q", resp.StatusCode, body, tt.want)
			}
			if j, err := jobs.Get(ctx, "users"); err != nil || j != nil {
				t.Fatalf("a refused reindex left job %+v (%v)", j, err)
			}
		})
	}
}
