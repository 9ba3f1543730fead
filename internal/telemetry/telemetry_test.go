package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	collmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/meter"
)

// otelVars are cleared for every test, so the machine's environment
// cannot leak in.
var otelVars = []string{
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
	"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
}

func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, v := range otelVars {
		t.Setenv(v, "")
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func lag(n uint64) *uint64 { return &n }

// sources are what a pipeline would hand Register.
func sources() Sources {
	var built, quarantined, flushes, skipped meter.Counter
	built.Add("users", 10)
	skipped.Add("public.orders", 9)
	quarantined.Add("users", 2)
	built.Add("orders", 7)
	flushes.Add("primary", 3)
	stages := health.NewRegistry()
	stages.Stage("capture").OK()
	for range 4 {
		stages.Stage("sink.primary").Fail(errors.New("refused"))
	}
	return Sources{
		Indexes: []string{"users", "orders", "idle"},
		Built:   &built, Quarantined: &quarantined, Flushes: &flushes, Skipped: &skipped, Health: stages,
		State: func() State {
			return State{
				ChangesCaptured: 12, ChangesCommitted: 4, ChangesInFlight: 5, Errors: 1,
				SlotLagBytes: lag(8192),
				Backlog:      map[string]uint64{"assembler": 6, "writer": 2},
				Quarantine:   &QuarantineUse{Bytes: 900, MaxBytes: 1000},
				Audit:        &AuditResult{LastRun: time.Unix(1700000000, 0), Drift: map[string]int64{"users": 3}},
			}
		},
	}
}

func TestPrometheusNames(t *testing.T) {
	setEnv(t, nil)
	p, err := Setup(context.Background(), Config{Version: "test", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	if err := p.Register(sources()); err != nil {
		t.Fatal(err)
	}
	p.ObserveFlush("primary", 3*time.Millisecond)
	p.ObserveFlush("primary", 2*time.Second)

	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"flusso_changes_captured_total 12",
		"flusso_changes_committed_total 4",
		"flusso_changes_in_flight 5",
		`flusso_changes_skipped_total{table="public.orders"} 9`,
		"flusso_batches_total 3",
		"flusso_errors_total 1",
		`flusso_documents_built_total{index="users"} 10`,
		`flusso_documents_built_total{index="orders"} 7`,
		`flusso_documents_quarantined_total{index="users"} 2`,
		`flusso_documents_quarantined_total{index="orders"} 0`,
		`flusso_documents_built_total{index="idle"} 0`,
		"flusso_replication_slot_lag_bytes 8192",
		`flusso_stage_backlog{stage="assembler"} 6`,
		`flusso_stage_backlog{stage="writer"} 2`,
		`flusso_stage_degraded{stage="capture"} 0`,
		`flusso_stage_degraded{stage="sink.primary"} 1`,
		`flusso_stage_failures_total{stage="capture"} 0`,
		`flusso_stage_failures_total{stage="sink.primary"} 4`,
		"flusso_quarantine_size_bytes 900",
		"flusso_quarantine_limit_bytes 1000",
		`flusso_audit_drift_documents{index="users"} 3`,
		"flusso_audit_last_run_timestamp_seconds 1.7e+09",
		`flusso_flush_duration_seconds_bucket{sink="primary",le="0.005"} 1`,
		`flusso_flush_duration_seconds_bucket{sink="primary",le="2.5"} 2`,
		`flusso_flush_duration_seconds_count{sink="primary"} 2`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "otel_scope_name") {
		t.Error("/metrics carries otel_scope_name labels")
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestNilProviderObserveFlush(t *testing.T) {
	var p *Provider
	p.ObserveFlush("primary", time.Second) // must not panic
}

func TestProtocol(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		wantTraces  string
		wantMetrics string
		wantWarning string
	}{
		{"default", nil, HTTPProtobuf, HTTPProtobuf, ""},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, GRPC, GRPC, ""},
		{"per-signal override", map[string]string{
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
		}, GRPC, HTTPProtobuf, ""},
		{"per-signal only", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, GRPC, HTTPProtobuf, ""},
		{"unknown falls back", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, HTTPProtobuf, HTTPProtobuf,
			"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported OTLP protocol, using http/protobuf"},
		{"unknown per-signal falls back", map[string]string{
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp",
		}, HTTPProtobuf, GRPC, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: unsupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			if got := protocol("TRACES", log); got != tt.wantTraces {
				t.Errorf("traces: %s, want %s", got, tt.wantTraces)
			}
			if got := protocol("METRICS", log); got != tt.wantMetrics {
				t.Errorf("metrics: %s, want %s", got, tt.wantMetrics)
			}
			if tt.wantWarning == "" && buf.Len() > 0 || !strings.Contains(buf.String(), tt.wantWarning) {
				t.Errorf("warnings %q, want %q", buf.String(), tt.wantWarning)
			}
		})
	}
}

// receiver is a test OTLP collector: it records the spans and metric names
// it is sent, over OTLP/HTTP or OTLP/gRPC.
type receiver struct {
	mu      sync.Mutex
	spans   []span
	metrics []string

	colltrace.UnimplementedTraceServiceServer
	collmetrics.UnimplementedMetricsServiceServer
}

type span struct {
	name, trace, id, parent string
}

func (r *receiver) addTraces(req *colltrace.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, span{s.GetName(), hex.EncodeToString(s.GetTraceId()),
					hex.EncodeToString(s.GetSpanId()), hex.EncodeToString(s.GetParentSpanId())})
			}
		}
	}
}

func (r *receiver) addMetrics(req *collmetrics.ExportMetricsServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				r.metrics = append(r.metrics, m.GetName())
			}
		}
	}
}

func (r *receiver) Export(_ context.Context, req *colltrace.ExportTraceServiceRequest) (*colltrace.ExportTraceServiceResponse, error) {
	r.addTraces(req)
	return &colltrace.ExportTraceServiceResponse{}, nil
}

// metricsService adapts the receiver to the metrics service, whose Export
// has the same name as the trace service's.
type metricsService struct {
	*receiver
}

func (m metricsService) Export(_ context.Context, req *collmetrics.ExportMetricsServiceRequest) (*collmetrics.ExportMetricsServiceResponse, error) {
	m.addMetrics(req)
	return &collmetrics.ExportMetricsServiceResponse{}, nil
}

// serveGRPC starts an OTLP/gRPC receiver and returns its endpoint URL.
func (r *receiver) serveGRPC(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	colltrace.RegisterTraceServiceServer(s, r)
	collmetrics.RegisterMetricsServiceServer(s, metricsService{r})
	go s.Serve(ln) //nolint:errcheck // ends with Stop
	t.Cleanup(s.Stop)
	return "http://" + ln.Addr().String()
}

// serveHTTP starts an OTLP/HTTP receiver and returns its base URL.
func (r *receiver) serveHTTP(t *testing.T) string {
	t.Helper()
	read := func(w http.ResponseWriter, req *http.Request, msg proto.Message) bool {
		if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
			return false
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return false
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err == nil {
			err = proto.Unmarshal(b, msg)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return false
		}
		return true
	}
	write := func(w http.ResponseWriter, msg proto.Message) {
		b, _ := proto.Marshal(msg)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(b) //nolint:errcheck // the client may be gone
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, req *http.Request) {
		var msg colltrace.ExportTraceServiceRequest
		if read(w, req, &msg) {
			r.addTraces(&msg)
			write(w, &colltrace.ExportTraceServiceResponse{})
		}
	})
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, req *http.Request) {
		var msg collmetrics.ExportMetricsServiceRequest
		if read(w, req, &msg) {
			r.addMetrics(&msg)
			write(w, &collmetrics.ExportMetricsServiceResponse{})
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestOTLPExport(t *testing.T) {
	tests := []struct {
		name string
		// env builds the environment from the receivers' endpoints.
		env         func(httpURL, grpcURL string) map[string]string
		wantHTTP    []string // signals the HTTP receiver gets
		wantGRPC    []string // signals the gRPC receiver gets
		wantWarning string
	}{
		{"http/protobuf by default", func(h, _ string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": h}
		}, []string{"traces", "metrics"}, nil, ""},
		{"grpc", func(_, g string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": g, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
		}, nil, []string{"traces", "metrics"}, ""},
		{"per-signal endpoints and protocols", func(h, g string) map[string]string {
			return map[string]string{
				"OTEL_EXPORTER_OTLP_PROTOCOL":         "grpc",
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":  g,
				"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": h + "/v1/metrics",
				"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
			}
		}, []string{"metrics"}, []string{"traces"}, ""},
		{"traces only", func(h, _ string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": h + "/v1/traces"}
		}, []string{"traces"}, nil, ""},
		{"metrics only", func(_, g string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": g, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}
		}, nil, []string{"metrics"}, ""},
		{"unknown protocol falls back to http/protobuf", func(h, _ string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": h, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
		}, []string{"traces", "metrics"}, nil, "unsupported OTLP protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			httpRecv, grpcRecv := &receiver{}, &receiver{}
			setEnv(t, tt.env(httpRecv.serveHTTP(t), grpcRecv.serveGRPC(t)))
			var logs bytes.Buffer
			ctx := context.Background()
			p, err := Setup(ctx, Config{Version: "test", Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Register(sources()); err != nil {
				t.Fatal(err)
			}
			p.ObserveFlush("primary", 40*time.Millisecond)

			// One change crossing two stages through message headers, with
			// the propagator Setup installs (pkg/broker carries it so).
			capCtx, capture := Tracer().Start(ctx, "capture")
			headers := propagation.HeaderCarrier{}
			otel.GetTextMapPropagator().Inject(capCtx, headers)
			capture.End()
			_, assemble := Tracer().Start(otel.GetTextMapPropagator().Extract(ctx, headers), "assembler")
			assemble.End()

			shutCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := p.Shutdown(shutCtx); err != nil {
				t.Fatalf("Shutdown: %v\n%s", err, &logs)
			}
			if !strings.Contains(logs.String(), tt.wantWarning) {
				t.Errorf("logs lack %q:\n%s", tt.wantWarning, &logs)
			}
			check(t, "OTLP/HTTP", httpRecv, tt.wantHTTP)
			check(t, "OTLP/gRPC", grpcRecv, tt.wantGRPC)
		})
	}
}

func check(t *testing.T, name string, r *receiver, want []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(want, "traces") {
		if len(r.spans) > 0 {
			t.Errorf("%s received spans %v, want none", name, r.spans)
		}
	} else {
		if len(r.spans) != 2 {
			t.Fatalf("%s received spans %v, want capture and assembler", name, r.spans)
		}
		c, a := r.spans[0], r.spans[1]
		if c.name != "capture" || a.name != "assembler" {
			t.Fatalf("%s received spans %v, want capture then assembler", name, r.spans)
		}
		if a.trace != c.trace || a.parent != c.id {
			t.Errorf("%s: assembler span %v does not continue capture span %v", name, a, c)
		}
	}
	if !slices.Contains(want, "metrics") {
		if len(r.metrics) > 0 {
			t.Errorf("%s received metrics %v, want none", name, r.metrics)
		}
		return
	}
	for _, m := range []string{"flusso.changes.captured", "flusso.documents.quarantined", "flusso.replication.slot_lag",
		"flusso.stage.backlog", "flusso.stage.degraded", "flusso.stage.failures", "flusso.flush.duration"} {
		if !slices.Contains(r.metrics, m) {
			t.Errorf("%s did not receive %s (got %v)", name, m, r.metrics)
		}
	}
}
