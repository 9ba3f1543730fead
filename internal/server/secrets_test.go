package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flusso/flusso/internal/logging"
	"github.com/flusso/flusso/internal/telemetry"
)

// TestNoSecretsOnAnySurface runs the surfaces over a pipeline whose
// configuration carried secrets, and whose errors quote them, then greps
// every answer and every log line for them.
func TestNoSecretsOnAnySurface(t *testing.T) {
	const (
		pgPassword    = "pg-s3cret-pw"
		osPassword    = "os-s3cret-pw"
		adminPassword = "admin-s3cret-pw"
	)
	pgURL := "postgres://flusso:" + pgPassword + "@db:5432/app"
	osURL := "https://flusso:" + osPassword + "@search:9200"
	secrets := []string{pgPassword, osPassword, adminPassword}

	var logs syncBuffer
	filter, err := logging.ParseFilter("trace")
	if err != nil {
		t.Fatal(err)
	}
	log := logging.New(&logs, logging.Options{Filter: filter, Format: logging.FormatJSON})

	// What a pipeline configured with those secrets logs and reports.
	log.With(logging.ComponentKey, "capture").Info("connecting", "url", pgURL)
	log.With(logging.ComponentKey, "writer").Error("flush failed", "sink", "primary",
		"err", fmt.Errorf("bulk to %s: %w", osURL, errors.New("connection reset")))
	log.Debug("resolved sink", "password", osPassword, "url", osURL)

	src := &fakeSource{
		status: Status{
			Phase:     Live,
			Indexes:   []IndexStatus{{Name: "users", State: Seeded, Generation: 1, DocumentsBuilt: 3}},
			Errors:    1,
			LastError: "capture: connecting to " + pgURL + ": connection refused",
		},
		indexes: []IndexInfo{{Name: "users", State: Seeded, Generation: 1, Docs: 3}},
		reindex: func(string) error { return fmt.Errorf("sink primary: %s: unauthorized", osURL) },
	}
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Version: "test", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if err := tel.Register(func() telemetry.Snapshot { return src.Status(context.Background()).Snapshot() }); err != nil {
		t.Fatal(err)
	}
	tel.ObserveFlush("primary", 1)

	srv := start(t, Config{Source: src, Metrics: tel.Handler(), Log: log, AdminUser: "ops", AdminPassword: adminPassword})
	admin := []string{"ops", adminPassword}
	var answers bytes.Buffer
	for _, r := range []struct {
		method, url string
		auth        []string
		code        int
	}{
		{"GET", srv.public + "/healthz", nil, 200},
		{"GET", srv.public + "/readyz", nil, 200},
		{"GET", srv.public + "/status", nil, 200},
		{"GET", srv.public + "/metrics", nil, 200},
		{"GET", srv.private + "/indexes", admin, 200},
		{"POST", srv.private + "/reindex?index=users", admin, 500},
		// Failed logins quoting secrets must not be echoed or logged either.
		{"GET", srv.private + "/indexes", []string{"ops", pgPassword}, 401},
		{"GET", srv.private + "/indexes", []string{adminPassword, adminPassword}, 401},
	} {
		a := do(t, r.method, r.url, r.auth)
		if a.code != r.code {
			t.Errorf("%s %s: %d, want %d", r.method, r.url, a.code, r.code)
		}
		fmt.Fprintf(&answers, "%s %s\n%v\n%s\n", r.method, r.url, a.header, a.body)
	}

	for _, s := range secrets {
		if strings.Contains(answers.String(), s) {
			t.Errorf("secret %q served:\n%s", s, &answers)
		}
		if strings.Contains(logs.String(), s) {
			t.Errorf("secret %q logged:\n%s", s, logs.String())
		}
	}
	// The greps above prove something only if the places were reached.
	for _, want := range []string{"postgres://flusso:xxxxx@db:5432/app", "https://flusso:xxxxx@search:9200", "flusso_documents_built_total"} {
		if !strings.Contains(answers.String()+logs.String(), want) {
			t.Errorf("neither answers nor logs contain %q", want)
		}
	}
}
