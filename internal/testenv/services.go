package testenv

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// RestartService restarts a dev service ("postgres", "opensearch" or "nats") started by
// deploy/dev/services.sh, keeping its data, and returns once it serves again. With hard
// it is killed first as a crash would (SIGKILL; PostgreSQL: immediate shutdown).
// Services from docker compose cannot be restarted this way.
func RestartService(t testing.TB, service string, hard bool) {
	t.Helper()
	needsServices(t, service)
	args := []string{"restart"}
	if hard {
		args = append(args, "--hard")
	}
	args = append(args, service)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	script := filepath.Join(RepoRoot(t), "deploy", "dev", "services.sh")
	out, err := exec.CommandContext(ctx, script, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: %s %v: %v\n%s", script, args, err, out)
	}
	t.Logf("testenv: %s", out)
}
