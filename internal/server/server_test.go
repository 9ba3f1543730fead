package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flusso/flusso/pkg/health"
)

// fakeSource is a Source with canned answers.
type fakeSource struct {
	mu         sync.Mutex
	status     Status
	indexes    []IndexInfo
	listErr    error
	reindexed  []string
	reindex    func(string) error
	statusHook func() // called inside Status, to hold a request open
}

func (f *fakeSource) Status(context.Context) Status {
	if f.statusHook != nil {
		f.statusHook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeSource) Indexes(context.Context) ([]IndexInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.indexes, f.listErr
}

func (f *fakeSource) Reindex(_ context.Context, index string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reindex != nil {
		if err := f.reindex(index); err != nil {
			return err
		}
	}
	f.reindexed = append(f.reindexed, index)
	return nil
}

func (f *fakeSource) setPhase(p Phase) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.Phase = p
}

// running is a server under test.
type running struct {
	public, private string // base URLs
	done            chan error
	cancel          context.CancelFunc
}

func start(t *testing.T, cfg Config) *running {
	t.Helper()
	if cfg.PublicAddress == "" {
		cfg.PublicAddress = "127.0.0.1:0"
	}
	if cfg.PrivateAddress == "" {
		cfg.PrivateAddress = "127.0.0.1:0"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{
		public:  "http://" + s.PublicAddr().String(),
		private: "http://" + s.PrivateAddr().String(),
		done:    make(chan error, 1),
		cancel:  cancel,
	}
	go func() { r.done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after the context ended")
		}
	})
	return r
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string, auth []string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != nil {
		req.SetBasicAuth(auth[0], auth[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func lag(n uint64) *uint64 { return &n }

func TestPublicSurface(t *testing.T) {
	src := &fakeSource{status: Status{Phase: Live}}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "flusso_batches_total 3")
	})
	srv := start(t, Config{Source: src, Metrics: metrics})

	tests := []struct {
		name     string
		method   string
		path     string
		phase    Phase
		wantCode int
		wantBody string
	}{
		{"healthz", "GET", "/healthz", Live, 200, "ok"},
		{"healthz head", "HEAD", "/healthz", Live, 200, ""},
		{"healthz while failed", "GET", "/healthz", Failed, 200, "ok"},
		{"healthz post", "POST", "/healthz", Live, 405, ""},
		{"readyz starting", "GET", "/readyz", Starting, 503, "not ready: starting"},
		{"readyz backfilling", "GET", "/readyz", Backfilling, 200, "ready"},
		{"readyz live", "GET", "/readyz", Live, 200, "ready"},
		{"readyz stopping", "GET", "/readyz", Stopping, 503, "not ready: stopping"},
		{"readyz failed", "GET", "/readyz", Failed, 503, "not ready: failed"},
		{"status", "GET", "/status", Backfilling, 200, `"phase": "backfilling"`},
		{"status post", "POST", "/status", Live, 405, ""},
		{"metrics", "GET", "/metrics", Live, 200, "flusso_batches_total 3"},
		{"metrics delete", "DELETE", "/metrics", Live, 405, ""},
		{"unknown path", "GET", "/nope", Live, 404, ""},
		{"control path is not public", "GET", "/indexes", Live, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src.setPhase(tt.phase)
			a := do(t, tt.method, srv.public+tt.path, nil)
			if a.code != tt.wantCode {
				t.Fatalf("%s %s: code %d, want %d (body %q)", tt.method, tt.path, a.code, tt.wantCode, a.body)
			}
			if !strings.Contains(a.body, tt.wantBody) {
				t.Errorf("%s %s: body %q does not contain %q", tt.method, tt.path, a.body, tt.wantBody)
			}
			if tt.wantCode == 405 && a.header.Get("Allow") == "" {
				t.Errorf("405 without Allow header")
			}
		})
	}
}

func TestNoMetricsHandler(t *testing.T) {
	srv := start(t, Config{Source: &fakeSource{}})
	if a := do(t, "GET", srv.public+"/metrics", nil); a.code != 404 {
		t.Fatalf("GET /metrics without a handler: %d, want 404", a.code)
	}
}

func TestStatusDocument(t *testing.T) {
	eta := uint64(12)
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := since.Add(30 * time.Second)
	src := &fakeSource{status: Status{
		Phase:  Backfilling,
		Uptime: 90*time.Second + 300*time.Millisecond,
		Indexes: []IndexStatus{
			{Name: "users", State: IndexBackfilling, Generation: 2, DocumentsBuilt: 40, DocumentsQuarantined: 1,
				Backfill: &Backfill{RowsDone: 40, RowsTotal: 100, RowsPerSecond: 5, ETASeconds: &eta}},
			{Name: "orders", State: Seeded, Generation: 1},
		},
		ChangesCaptured: 10, ChangesCommitted: 3, ChangesInFlight: 7, ChangesSkipped: map[string]uint64{"public.orders": 6},
		DocumentsBuilt: 40, DocumentsQuarantined: 1, Batches: 4,
		LastFlush:    2500 * time.Microsecond,
		SlotLagBytes: lag(4096), ConfirmedLSN: "0/16B3748",
		Backlog: Backlog{Changes: 5, Documents: 9},
		Errors:  1, LastError: "sink primary: connection refused",
		Stages: []health.Report{
			{Stage: "capture", State: health.OK},
			{Stage: "sink.primary", State: health.Degraded, LastError: "bulk: connection refused", LastErrorAt: &at, Since: &since, Failures: 3},
		},
		Quarantine: &Quarantine{Entries: 2, Bytes: 300, MaxBytes: 1 << 30, MaxAgeSeconds: 2592000},
	}}
	srv := start(t, Config{Source: src})
	a := do(t, "GET", srv.public+"/status", nil)
	if a.code != 200 || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status: %d %s", a.code, a.header.Get("Content-Type"))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(a.body), &got); err != nil {
		t.Fatalf("decoding /status: %v\n%s", err, a.body)
	}
	want := map[string]any{
		"phase": "backfilling", "uptime_seconds": 90.0,
		"changes_captured": 10.0, "changes_committed": 3.0, "changes_in_flight": 7.0,
		"changes_skipped": map[string]any{"public.orders": 6.0},
		"documents_built": 40.0, "documents_quarantined": 1.0, "batches": 4.0,
		"last_flush_micros": 2500.0, "slot_lag_bytes": 4096.0, "confirmed_lsn": "0/16B3748",
		"backlog": map[string]any{"changes": 5.0, "documents": 9.0},
		"errors":  1.0, "last_error": "sink primary: connection refused",
		"quarantine": map[string]any{"entries": 2.0, "bytes": 300.0, "max_bytes": float64(1 << 30), "max_age_seconds": 2592000.0},
	}
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("/status %s = %v, want %v", k, got[k], v)
		}
	}
	users := got["indexes"].([]any)[0].(map[string]any)
	wantUsers := `map[backfill:map[eta_seconds:12 rows_done:40 rows_per_second:5 rows_total:100] documents_built:40 documents_quarantined:1 generation:2 name:users state:backfilling]`
	if fmt.Sprint(users) != wantUsers {
		t.Errorf("/status indexes[0] = %v, want %v", users, wantUsers)
	}
	if orders := got["indexes"].([]any)[1].(map[string]any); orders["backfill"] != nil {
		t.Errorf("a seeded index has backfill %v, want null", orders["backfill"])
	}
	stages, _ := got["stages"].([]any)
	if len(stages) != 2 {
		t.Fatalf("/status stages = %v, want capture and sink.primary", got["stages"])
	}
	for i, want := range []string{
		`map[failures:0 stage:capture state:ok]`,
		`map[failures:3 last_error:bulk: connection refused last_error_at:2026-01-02T03:04:35Z since:2026-01-02T03:04:05Z stage:sink.primary state:degraded]`,
	} {
		if fmt.Sprint(stages[i]) != want {
			t.Errorf("/status stages[%d] = %v, want %v", i, stages[i], want)
		}
	}
}

// TestReadyzNamesDegradedStages: /readyz answers 503 with the stages
// degraded past the grace period, whatever the phase, and does not
// mind a stage degraded for less.
func TestReadyzNamesDegradedStages(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sink := health.Report{Stage: "sink.primary", State: health.Degraded, LastError: "dial tcp 127.0.0.1:1: connection refused", Since: &since, Failures: 7}
	capture := health.Report{Stage: "capture", State: health.Degraded, LastError: "connecting to postgres://flusso:hunter2@db/app: refused", Since: &since, Failures: 2}
	tests := []struct {
		name     string
		status   Status
		wantCode int
		want     []string
	}{
		{"live, degraded within grace", Status{Phase: Live, Stages: []health.Report{sink}}, 200, []string{"ready"}},
		{"live, degraded past grace", Status{Phase: Live, Stages: []health.Report{sink}, Unready: []health.Report{sink}}, 503, []string{
			`"error": "not ready: stage sink.primary degraded since 2026-01-02T03:04:05Z: dial tcp 127.0.0.1:1: connection refused"`,
			`"phase": "live"`, `"stage": "sink.primary"`, `"failures": 7`,
		}},
		{"starting, capture failing", Status{Phase: Starting, Unready: []health.Report{capture, sink}}, 503, []string{
			"not ready: stage capture degraded since", "postgres://flusso:xxxxx@db/app", "(and 1 more)", `"stage": "sink.primary"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := start(t, Config{Source: &fakeSource{status: tt.status}})
			a := do(t, "GET", srv.public+"/readyz", nil)
			if a.code != tt.wantCode {
				t.Fatalf("GET /readyz: %d, want %d (body %s)", a.code, tt.wantCode, a.body)
			}
			for _, w := range tt.want {
				if !strings.Contains(a.body, w) {
					t.Errorf("GET /readyz: body %s does not contain %s", a.body, w)
				}
			}
			if strings.Contains(a.body, "hunter2") {
				t.Errorf("GET /readyz serves a secret: %s", a.body)
			}
			if tt.wantCode == 503 && a.header.Get("Content-Type") != "application/json" {
				t.Errorf("GET /readyz: Content-Type %q, want application/json", a.header.Get("Content-Type"))
			}
		})
	}
}

func TestStatusNulls(t *testing.T) {
	b, err := json.Marshal(Status{Phase: Starting})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"slot_lag_bytes":null`, `"last_error":null`, `"indexes":[]`, `"stages":[]`, `"uptime_seconds":0`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s does not contain %s", b, want)
		}
	}
}

func TestNewBackfill(t *testing.T) {
	tests := []struct {
		name        string
		done, total uint64
		elapsed     time.Duration
		wantRate    float64
		wantETA     *uint64
	}{
		{"not started", 0, 100, time.Second, 0, nil},
		{"no time yet", 10, 100, 0, 0, nil},
		{"halfway", 50, 100, 10 * time.Second, 5, lag(10)},
		{"rounds up", 10, 25, 2 * time.Second, 5, lag(3)},
		{"past the estimate", 120, 100, 10 * time.Second, 12, lag(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBackfill(tt.done, tt.total, tt.elapsed)
			if b.RowsPerSecond != tt.wantRate {
				t.Errorf("rate %v, want %v", b.RowsPerSecond, tt.wantRate)
			}
			if (b.ETASeconds == nil) != (tt.wantETA == nil) || (b.ETASeconds != nil && *b.ETASeconds != *tt.wantETA) {
				t.Errorf("eta %v, want %v", b.ETASeconds, tt.wantETA)
			}
		})
	}
}

const (
	user     = "ops"
	password = "correct horse battery staple"
)

func TestPrivateSurface(t *testing.T) {
	src := &fakeSource{
		indexes: []IndexInfo{{Name: "users", State: Seeded, Generation: 3, Docs: 1200}},
		reindex: func(name string) error {
			switch name {
			case "users":
				return nil
			case "orders":
				return fmt.Errorf("index orders: %w", ErrReindexRunning)
			case "stdout_only":
				return fmt.Errorf("index stdout_only: %w", ErrNothingToRebuild)
			case "broken":
				return errors.New("connecting to postgres://flusso:hunter2@db/app: refused")
			}
			return fmt.Errorf("index %s: %w", name, ErrUnknownIndex)
		},
	}
	srv := start(t, Config{Source: src, AdminUser: user, AdminPassword: password})
	good := []string{user, password}

	tests := []struct {
		name     string
		method   string
		path     string
		auth     []string
		wantCode int
		wantBody string
	}{
		{"indexes", "GET", "/indexes", good, 200, `"docs": 1200`},
		{"indexes post", "POST", "/indexes", good, 405, ""},
		{"reindex", "POST", "/reindex?index=users", good, 202, `"status": "queued"`},
		{"reindex get", "GET", "/reindex?index=users", good, 405, ""},
		{"reindex no name", "POST", "/reindex", good, 400, "missing ?index=NAME"},
		{"reindex empty name", "POST", "/reindex?index=", good, 400, "missing"},
		{"reindex bad name", "POST", "/reindex?index=Users%21", good, 400, "invalid index name"},
		{"reindex too long", "POST", "/reindex?index=" + strings.Repeat("a", 64), good, 400, "invalid index name"},
		{"reindex unknown", "POST", "/reindex?index=nope", good, 404, `unknown index \"nope\"`},
		{"reindex running", "POST", "/reindex?index=orders", good, 409, "already running"},
		{"reindex without generations", "POST", "/reindex?index=stdout_only", good, 409, "no sink keeps generations"},
		{"reindex failing", "POST", "/reindex?index=broken", good, 500, "postgres://flusso:xxxxx@db/app"},
		{"unknown path", "GET", "/status", good, 404, ""},
		// Every failed authentication is the same 401, before routing.
		{"no credentials", "GET", "/indexes", nil, 401, "authentication required"},
		{"no credentials, wrong method", "DELETE", "/reindex", nil, 401, ""},
		{"no credentials, unknown path", "GET", "/nope", nil, 401, ""},
		{"wrong password", "GET", "/indexes", []string{user, "wrong"}, 401, ""},
		{"wrong user", "GET", "/indexes", []string{"admin", password}, 401, ""},
		{"password prefix", "GET", "/indexes", []string{user, password[:len(password)-1]}, 401, ""},
		{"password with more", "GET", "/indexes", []string{user, password + "!"}, 401, ""},
		{"password case", "GET", "/indexes", []string{user, strings.ToUpper(password)}, 401, ""},
		{"user prefix", "GET", "/indexes", []string{user[:2], password}, 401, ""},
		{"swapped", "GET", "/indexes", []string{password, user}, 401, ""},
		{"empty", "GET", "/indexes", []string{"", ""}, 401, ""},
		{"defaults are not accepted", "GET", "/indexes", []string{DefaultAdminUser, DefaultAdminPassword}, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, tt.method, srv.private+tt.path, tt.auth)
			if a.code != tt.wantCode {
				t.Fatalf("%s %s: code %d, want %d (body %q)", tt.method, tt.path, a.code, tt.wantCode, a.body)
			}
			if !strings.Contains(a.body, tt.wantBody) {
				t.Errorf("body %q does not contain %q", a.body, tt.wantBody)
			}
			if got := a.header.Get("WWW-Authenticate"); (tt.wantCode == 401) != (got != "") {
				t.Errorf("WWW-Authenticate = %q on %d", got, a.code)
			}
			if tt.wantCode == 401 && !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("WWW-Authenticate = %q, want Basic", a.header.Get("WWW-Authenticate"))
			}
		})
	}
	if fmt.Sprint(src.reindexed) != "[users]" {
		t.Errorf("reindexed %v, want only [users]", src.reindexed)
	}
}

func TestIndexesError(t *testing.T) {
	src := &fakeSource{listErr: errors.New("sink primary: 503")}
	srv := start(t, Config{Source: src, AdminUser: user, AdminPassword: password})
	a := do(t, "GET", srv.private+"/indexes", []string{user, password})
	if a.code != 500 || !strings.Contains(a.body, "sink primary: 503") {
		t.Fatalf("GET /indexes failing: %d %q", a.code, a.body)
	}
	src.mu.Lock()
	src.listErr = nil
	src.mu.Unlock()
	if a := do(t, "GET", srv.private+"/indexes", []string{user, password}); a.code != 200 || strings.TrimSpace(a.body) != "[]" {
		t.Fatalf("GET /indexes with none: %d %q, want []", a.code, a.body)
	}
}

// TestBasicAuthComparesWholeValues checks the comparison decides on the
// whole of both values, whatever their lengths or shared prefixes.
func TestBasicAuthComparesWholeValues(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	long := strings.Repeat("p", 4096)
	h := basicAuth(next, "u", long, slog.New(slog.DiscardHandler))
	tests := []struct {
		user, password string
		want           int
	}{
		{"u", long, 204},
		{"u", long[:4095], 401},
		{"u", long + "p", 401},
		{"u", long[:4095] + "q", 401},
		{"u", "q" + long[1:], 401},
		{"u\x00", long, 401},
		{"U", long, 401},
		{"", long, 401},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(tt.user, tt.password)
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, req)
		if rec.code != tt.want {
			t.Errorf("user %q, password of %d bytes: %d, want %d", tt.user, len(tt.password), rec.code, tt.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a server goroutine to log into.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

func TestDefaultCredentialsWarning(t *testing.T) {
	tests := []struct {
		name           string
		user, password string
		wantWarning    bool
	}{
		{"unset means the defaults", "", "", true},
		{"explicit defaults", DefaultAdminUser, DefaultAdminPassword, true},
		{"own password", DefaultAdminUser, "s3cret", false},
		{"own user and password", "ops", "s3cret", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf syncBuffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			start(t, Config{Source: &fakeSource{}, AdminUser: tt.user, AdminPassword: tt.password, Log: log})
			got := strings.Contains(buf.String(), "default credentials")
			if got != tt.wantWarning {
				t.Errorf("warning logged: %v, want %v\n%s", got, tt.wantWarning, buf.String())
			}
			if strings.Contains(buf.String(), "s3cret") {
				t.Errorf("the password was logged:\n%s", buf.String())
			}
		})
	}
}

func TestDefaultCredentialsAccepted(t *testing.T) {
	srv := start(t, Config{Source: &fakeSource{}})
	if a := do(t, "GET", srv.private+"/indexes", []string{DefaultAdminUser, DefaultAdminPassword}); a.code != 200 {
		t.Fatalf("default credentials: %d, want 200", a.code)
	}
}

func TestBindErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"public in use", Config{PublicAddress: addr, PrivateAddress: "127.0.0.1:0"},
			"public surface: " + addr + " already in use: set --public-address"},
		{"private in use", Config{PublicAddress: "127.0.0.1:0", PrivateAddress: addr},
			"private surface: " + addr + " already in use: set --private-address"},
		{"bad address", Config{PublicAddress: "127.0.0.1:99999", PrivateAddress: "127.0.0.1:0"},
			"public surface: listening on 127.0.0.1:99999 (set --public-address)"},
		{"no source", Config{}, "no Source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.PublicAddress != "" {
				tt.cfg.Source = &fakeSource{}
			}
			s, err := Listen(tt.cfg)
			if err == nil {
				s.publicLn.Close()
				s.privateLn.Close()
				t.Fatal("Listen succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
	// The public listener of a failed Listen is released.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	if _, err := Listen(Config{Source: &fakeSource{}, PublicAddress: freeAddr, PrivateAddress: addr}); err == nil {
		t.Fatal("Listen succeeded")
	}
	ln, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Fatalf("public address still bound after a failed Listen: %v", err)
	}
	ln.Close()
}

// TestGracefulShutdown checks a request in progress when the context ends
// is answered before Serve returns.
func TestGracefulShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	src := &fakeSource{status: Status{Phase: Live}}
	src.statusHook = func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}
	cfg := Config{Source: src, PublicAddress: "127.0.0.1:0", PrivateAddress: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	answered := make(chan answer, 1)
	go func() { answered <- do(t, "GET", "http://"+s.PublicAddr().String()+"/status", nil) }()
	<-entered
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v with a request in progress", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if a := <-answered; a.code != 200 {
		t.Errorf("request in progress: %d, want 200", a.code)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", s.PublicAddr().String()); err == nil {
		t.Error("public surface still accepting after shutdown")
	}
}
