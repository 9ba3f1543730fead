package testenv

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The dev services are shared by every test process on the machine: `make test` runs
// two packages at once, and several checkouts may use the same services. A test that
// restarts a service must not pull it from under the others, so tests using a service
// hold its shared lock (one per process, counted per test), and RestartService takes it
// exclusively: it waits until no other process runs a test using that service, and
// other processes' new tests wait for the restart to end. A second lock per service,
// the gate, is held by a pending restart so that a stream of new tests cannot starve it.

// serviceLock is this process's hold on one service's lock.
type serviceLock struct {
	mu      sync.Mutex
	holders int
	f       *os.File // holds LOCK_SH while holders > 0
}

var serviceLocks = struct {
	sync.Mutex
	m map[string]*serviceLock
}{m: map[string]*serviceLock{}}

func lockOf(service string) *serviceLock {
	serviceLocks.Lock()
	defer serviceLocks.Unlock()
	l := serviceLocks.m[service]
	if l == nil {
		l = &serviceLock{}
		serviceLocks.m[service] = l
	}
	return l
}

// restartLockWait bounds how long RestartService waits for other processes' tests.
const restartLockWait = 10 * time.Minute

// lockPath is keyed by the service addresses, so every process using the same services,
// from any checkout, shares the lock.
func lockPath(service, kind string) string {
	sum := sha1.Sum([]byte(PostgresAdminURL() + "\x00" + OpenSearchURL()))
	return filepath.Join(os.TempDir(), "flusso-testenv-"+hex.EncodeToString(sum[:6])+"-"+service+"."+kind)
}

// holdService takes the shared lock of service for the rest of test t.
func holdService(t testing.TB, service string) {
	t.Helper()
	l := lockOf(service)
	l.mu.Lock()
	defer l.mu.Unlock()
	// With holders > 0 this process already has the lock; otherwise no cleanup of this
	// process waits for l.mu, so waiting here while holding it cannot deadlock.
	if l.holders == 0 {
		gate, err := lockFile(service, "gate", syscall.LOCK_EX, restartLockWait)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		f, err := lockFile(service, "lock", syscall.LOCK_SH, restartLockWait)
		gate.Close()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		l.f = f
	}
	l.holders++
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.holders--
		if l.holders == 0 && l.f != nil {
			l.f.Close() // releases the lock
			l.f = nil
		}
	})
}

// lockFile opens a lock file and locks it (LOCK_SH or LOCK_EX), polling until wait.
func lockFile(service, kind string, how int, wait time.Duration) (*os.File, error) {
	path := lockPath(service, kind)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("opening the %s lock %s: %w", service, path, err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("locking %s: still held by other test processes after %v", path, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RestartService restarts a dev service ("postgres", "opensearch" or "nats") started by
// deploy/dev/services.sh, keeping its data, and returns once it serves again. With hard
// it is killed first as a crash would (SIGKILL; PostgreSQL: immediate shutdown).
//
// It first waits until no test of another process uses that service (Postgres,
// OpenSearch), and holds their new ones back meanwhile; tests of this process running
// in parallel are not held back. Services from docker compose cannot be restarted
// this way.
func RestartService(t testing.TB, service string, hard bool) {
	t.Helper()
	needsServices(t, service)
	script := filepath.Join(RepoRoot(t), "deploy", "dev", "services.sh")
	args := []string{"restart"}
	if hard {
		args = append(args, "--hard")
	}
	args = append(args, service)

	l := lockOf(service)
	l.mu.Lock()
	defer l.mu.Unlock()
	// Drop this process's shared hold, or the exclusive lock could never be had (and two
	// processes restarting at once would wait for each other).
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	start := time.Now()
	gate, err := lockFile(service, "gate", syscall.LOCK_EX, restartLockWait)
	if err != nil {
		t.Fatalf("testenv: restarting %s: %v", service, err)
	}
	defer gate.Close()
	excl, err := lockFile(service, "lock", syscall.LOCK_EX, restartLockWait)
	if err != nil {
		t.Fatalf("testenv: restarting %s: %v", service, err)
	}
	waited := time.Since(start)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	out, runErr := exec.CommandContext(ctx, script, args...).CombinedOutput()
	cancel()
	// Shared again before the gate opens (deferred), so no restart slips in between.
	if l.holders > 0 {
		if err := syscall.Flock(int(excl.Fd()), syscall.LOCK_SH); err != nil {
			t.Fatalf("testenv: downgrading the %s lock: %v", service, err)
		}
		l.f = excl
	} else {
		excl.Close()
	}
	if runErr != nil {
		t.Fatalf("testenv: %s %v: %v\n%s", script, args, runErr, out)
	}
	t.Logf("testenv: waited %v for other tests using %s, then: %s", waited.Round(time.Millisecond), service, out)
}
