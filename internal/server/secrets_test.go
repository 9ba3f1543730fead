package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flusso/flusso/internal/logging"
	"github.com/flusso/flusso/internal/telemetry"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/meter"
)

// secretKinds are the secrets a deployment hands flusso, each in the text
// that carries it into an error or a log line.
var secretKinds = []struct{ name, secret, carrier string }{
	{"URL password", "pg-url-s3cret", "postgres://flusso:pg-url-s3cret@db:5432/app"},
	{"?password=", "pg-query-s3cret", "postgres://flusso@db:5432/app?password=pg-query-s3cret&sslmode=disable"},
	{"sslpassword=", "pg-sslkey-s3cret", "postgres://flusso@db:5432/app?sslmode=verify-full&sslpassword=pg-sslkey-s3cret"},
	{"keyword password=", "pg-keyword-s3cret", "host=db user=flusso password=pg-keyword-s3cret dbname=app"},
	{"NATS user:password", "nats-s3cret", "nats://alice:nats-s3cret@nats:4222"},
	{"NATS token", "natsTokenS3cret", "nats://natsTokenS3cret@nats:4222"},
	{"sink password", "os-s3cret", "https://flusso:os-s3cret@search:9200"},
}

// TestNoSecretsOnAnySurface runs the surfaces over a pipeline whose errors
// quote each kind of secret, then greps every output for it: /status,
// /metrics, the control surface's answers and the log.
func TestNoSecretsOnAnySurface(t *testing.T) {
	for _, kind := range secretKinds {
		t.Run(kind.name, func(t *testing.T) {
			out := surfaces(t, kind.carrier, "admin-s3cret-pw")
			for where, text := range out {
				if strings.Contains(text, kind.secret) {
					t.Errorf("%s shows the secret %q:\n%s", where, kind.secret, text)
				}
				// The grep proves something only if the text was there.
				if where != "/metrics" && !strings.Contains(text, "xxxxx") {
					t.Errorf("%s does not show the redacted text:\n%s", where, text)
				}
			}
		})
	}
}

// TestNoAdminPasswordOnAnySurface logs in to the control surface right and
// wrong, with attempts that quote the password: it is never echoed or logged.
func TestNoAdminPasswordOnAnySurface(t *testing.T) {
	const password = "admin-s3cret-pw"
	for where, text := range surfaces(t, "postgres://db/app", password) {
		if strings.Contains(text, password) {
			t.Errorf("%s shows the admin password:\n%s", where, text)
		}
	}
}

// surfaces serves a pipeline whose last error, index listing and reindex
// fail quoting carrier, and whose stages log it, and returns each output.
// The control surface takes adminPassword; failed logins quote it.
func surfaces(t *testing.T, carrier, adminPassword string) map[string]string {
	t.Helper()
	var logs syncBuffer
	filter, err := logging.ParseFilter("trace")
	if err != nil {
		t.Fatal(err)
	}
	log := logging.New(&logs, logging.Options{Filter: filter, Format: logging.FormatJSON})

	// What a pipeline given that secret logs.
	log.With(logging.ComponentKey, "capture").Info("connecting", "url", carrier)
	log.With(logging.ComponentKey, "writer").Error("flush failed", "sink", "primary",
		"err", fmt.Errorf("bulk to %s: %w", carrier, errors.New("connection reset")))
	log.Warn("retrying " + carrier)
	log.Debug("resolved", "password", adminPassword, "conn", carrier)

	cause := fmt.Errorf("connecting to %s: connection refused", carrier)
	src := &fakeSource{
		status: Status{
			Phase:     Live,
			Indexes:   []IndexStatus{{Name: "users", State: Seeded, Generation: 1, DocumentsBuilt: 3}},
			Errors:    1,
			LastError: "capture: " + cause.Error(),
		},
		listErr: cause,
		reindex: func(string) error { return fmt.Errorf("sink primary: %w", cause) },
	}
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Version: "test", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	var built meter.Counter
	built.Add("users", 3)
	stages := health.NewRegistry()
	stages.Stage("sink.primary").Fail(cause)
	err = tel.Register(telemetry.Sources{Indexes: []string{"users"}, Built: &built, Health: stages, State: func() telemetry.State {
		return telemetry.State{Errors: src.Status(context.Background()).Errors}
	}})
	if err != nil {
		t.Fatal(err)
	}
	tel.ObserveFlush("primary", 1)

	srv := start(t, Config{Source: src, Metrics: tel.Handler(), Log: log, AdminUser: "ops", AdminPassword: adminPassword})
	admin := []string{"ops", adminPassword}
	out := map[string]string{}
	for _, r := range []struct {
		method, url string
		auth        []string
		code        int
	}{
		{"GET", srv.public + "/status", nil, 200},
		{"GET", srv.public + "/metrics", nil, 200},
		{"GET", srv.private + "/indexes", admin, 500},
		{"POST", srv.private + "/reindex?index=users", admin, 500},
		// Failed logins quoting secrets must not be echoed or logged either.
		{"GET", srv.private + "/indexes?try=1", []string{"ops", carrier}, 401},
		{"GET", srv.private + "/indexes?try=2", []string{adminPassword, adminPassword}, 401},
	} {
		a := do(t, r.method, r.url, r.auth)
		if a.code != r.code {
			t.Errorf("%s %s: %d, want %d", r.method, r.url, a.code, r.code)
		}
		if r.code != 401 {
			out[strings.TrimPrefix(strings.TrimPrefix(r.url, srv.public), srv.private)] = fmt.Sprintf("%v\n%s", a.header, a.body)
		} else {
			out["401 answers"] += fmt.Sprintf("%v\n%s\n", a.header, a.body)
		}
	}
	if !strings.Contains(out["/metrics"], "flusso_documents_built_total") {
		t.Errorf("/metrics without the pipeline's metrics:\n%s", out["/metrics"])
	}
	out["401 answers"] += "xxxxx" // they quote nothing; only the grep counts
	out["the log"] = logs.String()
	return out
}

// TestRedactJSON hides secrets inside any string of an answer, escaped or
// not, and leaves valid JSON.
func TestRedactJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a":1,"b":[true,null,"plain"]}`, `{"a":1,"b":[true,null,"plain"]}`},
		{`{"stages":[{"last_error":"dial postgres://u:pw@db/x: refused"}]}`, `{"stages":[{"last_error":"dial postgres://u:xxxxx@db/x: refused"}]}`},
		{`{"e":"host=db password=pw, \"quoted\" and more"}`, `{"e":"host=db password=xxxxx \"quoted\" and more"}`},
		{`{"e":"a \\ backslash then nats://tok@n:4222"}`, `{"e":"a \\ backslash then nats://xxxxx@n:4222"}`},
		{`{"e":"escaped \u0070assword=pw"}`, `{"e":"escaped password=xxxxx"}`},
	} {
		got := string(redactJSON([]byte(tc.in)))
		if got != tc.want {
			t.Errorf("redactJSON(%s)\n got %s\nwant %s", tc.in, got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("redactJSON(%s) is not JSON: %s", tc.in, got)
		}
	}
}
