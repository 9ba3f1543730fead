// Package harness runs flusso for end-to-end tests: a deployment (database,
// index prefix, flusso.toml), its pipeline in the test's process or as real
// processes (crash recovery, distributed mode, chaos), and checks of what
// lands in OpenSearch against a fresh build from Postgres.
package harness

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/flusso/flusso/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/flusso once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flusso-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "flusso")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/flusso")
		cmd.Dir = testenv.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building flusso: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Proc is `flusso run` as a process of its own, with its HTTP surfaces on
// ports of its own so several processes share the machine.
type Proc struct {
	*testenv.Process
	Public string // its public surface address
}

// NewProc prepares `flusso run` with args in dir, logging to <dir>/<name>.log.
// It is killed at cleanup.
func NewProc(t testing.TB, name, dir string, args ...string) *Proc {
	t.Helper()
	public := testenv.FreeAddr(t)
	args = append([]string{"run", "--public-address", public, "--private-address", testenv.FreeAddr(t)}, args...)
	return &Proc{Process: testenv.NewProcess(t, name, dir, Binary(t), args...), Public: public}
}

// Status fetches the process's /status document (for failure messages).
func (p *Proc) Status() string {
	resp, err := http.Get("http://" + p.Public + "/status")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
