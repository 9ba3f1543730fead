package telemetry

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDeployFilesUseServedMetrics keeps the Grafana dashboard and the
// Prometheus alert rules in deploy/ in step with the metric names /metrics
// serves.
func TestDeployFilesUseServedMetrics(t *testing.T) {
	setEnv(t, nil)
	p, err := Setup(context.Background(), Config{Version: "test", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	if err := p.Register(sources()); err != nil {
		t.Fatal(err)
	}
	p.ObserveFlush("primary", time.Millisecond)
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	served := map[string]bool{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if name, _, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			name, _, _ = strings.Cut(name, "{")
			served[name] = true
		}
	}

	files, err := filepath.Glob("../../deploy/prometheus/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	dashboards, _ := filepath.Glob("../../deploy/grafana/*.json")
	files = append(files, dashboards...)
	if len(files) < 2 {
		t.Fatalf("found %v, want the alert rules and the dashboard", files)
	}
	nameRE := regexp.MustCompile(`\bflusso_[a-z0-9_]+`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		names := nameRE.FindAllString(string(b), -1)
		if len(names) == 0 {
			t.Errorf("%s uses no flusso metric", f)
		}
		for _, n := range names {
			if !served[n] {
				t.Errorf("%s uses %s, which /metrics does not serve", f, n)
			}
		}
	}
}
