// Package testenv gives tests the real services flusso runs against: a PostgreSQL 15
// cluster with logical replication, an OpenSearch 2.19 node and NATS JetStream servers
// (embedded in the test process or the real nats-server binary).
//
// PostgreSQL and OpenSearch are started outside the tests by deploy/dev/services.sh
// (`make services`), or by docker-compose.yml, and found through the environment:
//
//	FLUSSO_TEST_PG_URL          superuser URL of the dev cluster
//	                            (default postgres://flusso:flusso@127.0.0.1:54329/postgres?sslmode=disable)
//	FLUSSO_TEST_OPENSEARCH_URL  default http://127.0.0.1:59200
//	FLUSSO_TEST_NATS_SERVER     path of a nats-server binary (default <repo>/bin/nats-server)
//
// Every helper isolates the test: a fresh database, a unique index prefix, a private
// NATS server, all removed at cleanup. When a service is missing the test is skipped
// with the command that starts it, except under CI=true where it fails: a CI run that
// silently skips everything would prove nothing. With -short, helpers that need the
// external services skip.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Environment variables naming the services.
const (
	EnvPostgresURL   = "FLUSSO_TEST_PG_URL"
	EnvOpenSearchURL = "FLUSSO_TEST_OPENSEARCH_URL"
	EnvNATSServer    = "FLUSSO_TEST_NATS_SERVER"
)

// Defaults match deploy/dev/services.sh and docker-compose.yml.
const (
	DefaultPostgresURL   = "postgres://flusso:flusso@127.0.0.1:54329/postgres?sslmode=disable"
	DefaultOpenSearchURL = "http://127.0.0.1:59200"

	// UnprivilegedRole may log in and replicate but is no superuser, cannot create
	// databases or publications and owns nothing.
	UnprivilegedRole     = "flusso_unpriv"
	unprivilegedPassword = "flusso"
)

const startHint = "start the dev services with `make services` (or `docker compose up -d`)"

// inCI reports whether missing services must fail the test instead of skipping it.
func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// unavailable fails (CI) or skips (elsewhere) a test whose service cannot be used.
func unavailable(t testing.TB, service string, err error) {
	t.Helper()
	msg := fmt.Sprintf("testenv: %s is not available: %v; %s", service, err, startHint)
	if inCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// needsServices skips tests that use external services in -short mode.
func needsServices(t testing.TB, service string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("testenv: %s needed; skipped in -short mode", service)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// randomHex returns n random bytes as lowercase hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("testenv: reading random bytes: %v", err))
	}
	return hex.EncodeToString(b)
}

// RepoRoot returns the root of the flusso checkout (the directory holding go.work or the
// flusso go.mod), found upwards from the working directory of the test.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("testenv: getting the working directory: %v", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/flusso/flusso\n") {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("testenv: no flusso go.mod above %s", dir)
		}
	}
}
