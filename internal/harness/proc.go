// Package harness runs flusso as real processes for multi-process tests
// (crash recovery, distributed mode, chaos) and checks what they leave in
// OpenSearch against a fresh build from Postgres.
package harness

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// FreeAddr returns a loopback host:port nobody listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Proc is one flusso process that can be killed and started again with the
// same arguments.
type Proc struct {
	Name    string
	Args    []string
	Env     []string
	Dir     string
	LogFile string
	Public  string // its public surface address

	t    testing.TB
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// NewProc prepares `flusso run` with args in dir, giving it its own HTTP
// ports so several processes share the machine. It is killed at cleanup.
func NewProc(t testing.TB, name, dir string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, Dir: dir, LogFile: filepath.Join(dir, name+".log"), Public: FreeAddr(t), t: t}
	p.Args = append([]string{"run", "--public-address", p.Public, "--private-address", FreeAddr(t)}, args...)
	t.Cleanup(func() { p.Kill() })
	return p
}

// Start starts the process unless it runs.
func (p *Proc) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return
	}
	logf, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatalf("opening log of %s: %v", p.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== start %s at %s\n", p.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(Binary(p.t), p.Args...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting %s: %v", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	p.cmd, p.done = cmd, done
}

// Kill sends SIGKILL, as a crash would, and waits for the process.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM and waits; it fails the test if the process does not
// end within 30s or ends with an error.
func (p *Proc) Stop() {
	p.t.Helper()
	if !p.signal(syscall.SIGTERM) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		p.t.Errorf("%s ended with %v after SIGTERM; log:\n%s", p.Name, p.err, p.tail())
	}
}

func (p *Proc) signal(sig syscall.Signal) bool {
	p.mu.Lock()
	if !p.running() {
		p.mu.Unlock()
		return false
	}
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return false
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		p.t.Errorf("%s ignored %v for 30s; killed", p.Name, sig)
	}
	return true
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running()
}

// Exited returns the exit error of a process that ended on its own.
func (p *Proc) Exited() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.running() {
		return false, nil
	}
	return true, p.err
}

func (p *Proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Tail returns the last lines of the process's log.
func (p *Proc) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tail()
}

func (p *Proc) tail() string {
	b, _ := os.ReadFile(p.LogFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// Pid is the process id, 0 when not running.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// String names the process for messages.
func (p *Proc) String() string { return p.Name + "[" + strconv.Itoa(p.Pid()) + "]" }

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
