package run_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/internal/harness"
)

// spanSink is a real OTLP/HTTP trace receiver.
type spanSink struct {
	mu    sync.Mutex
	spans map[string][]string // span name → trace ids
}

func (s *spanSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				s.spans[sp.Name] = append(s.spans[sp.Name], string(sp.TraceId))
			}
		}
	}
	s.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// sharedTrace reports whether some capture.change span's trace continues
// in an assembler.build span and on into a writer.write span.
func (s *spanSink) sharedTrace() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]int{}
	for i, name := range []string{"capture.change", "assembler.build", "writer.write"} {
		for _, id := range s.spans[name] {
			if seen[id] == i {
				seen[id] = i + 1
			}
		}
	}
	for _, n := range seen {
		if n == 3 {
			return true
		}
	}
	return false
}

// TestStatusMovesAndTracesFollowAChange runs a pipeline with OTLP traces on
// and watches /status go live, count documents and confirm the slot, and a
// change's trace continue from the capture through the assembler into the
// writer.
func TestStatusMovesAndTracesFollowAChange(t *testing.T) {
	recv := &spanSink{spans: map[string][]string{}}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", srv.URL+"/v1/traces")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")

	e := newE2E(t, `
		CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, deleted boolean NOT NULL DEFAULT false);
		CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users, total numeric NOT NULL, status text NOT NULL, note text);
		INSERT INTO users (email) SELECT 'u' || g || '@x.io' FROM generate_series(1, 50) g;
		INSERT INTO orders (user_id, total, status) VALUES (1, 5, 'paid');`)
	cfg := e.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "users", Schema: usersSchema}}})
	p := harness.Launch(t, e.Options(cfg, t.TempDir()))

	type status struct {
		Phase           string            `json:"phase"`
		DocumentsBuilt  uint64            `json:"documents_built"`
		ChangesCaptured uint64            `json:"changes_captured"`
		ChangesSkipped  map[string]uint64 `json:"changes_skipped"`
		ConfirmedLSN    string            `json:"confirmed_lsn"`
		Indexes         []struct {
			State string `json:"state"`
		} `json:"indexes"`
	}
	read := func() status {
		var st status
		resp, err := http.Get(p.PublicURL() + "/status")
		if err != nil {
			return st
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return st
	}
	waitUntil := func(what string, cond func(status) bool) status {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			st := read()
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; status now %+v", what, st)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	first := waitUntil("live and seeded", func(s status) bool {
		return s.Phase == "live" && len(s.Indexes) == 1 && s.Indexes[0].State == "seeded" && s.DocumentsBuilt >= 50
	})
	// A change of a column no index reads is counted as skipped, not captured.
	e.Exec(`UPDATE orders SET note = 'gift' WHERE id = 1`)
	waitUntil("the update of orders.note counted as skipped", func(s status) bool { return s.ChangesSkipped["public.orders"] == 1 })
	e.Exec(`UPDATE users SET email = 'moved@x.io' WHERE id = 7`)
	waitUntil("the change counted and confirmed", func(s status) bool {
		return s.ChangesCaptured > first.ChangesCaptured && s.DocumentsBuilt > first.DocumentsBuilt && s.ConfirmedLSN != first.ConfirmedLSN
	})
	deadline := time.Now().Add(30 * time.Second)
	for !recv.sharedTrace() {
		if time.Now().After(deadline) {
			t.Fatalf("no trace went from capture.change through assembler.build into writer.write; spans seen: %v", recv.names())
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.StopClean() // before the deferred close of the trace receiver
}

func (s *spanSink) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n, ids := range s.spans {
		out = append(out, fmt.Sprintf("%s×%d", n, len(ids)))
	}
	return out
}
