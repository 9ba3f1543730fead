package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is an OS process owned by one test: started, stopped (SIGTERM) or killed
// (SIGKILL, as a crash would), and started again with the same command. Its output is
// appended to LogFile across starts, each start marked by a line "=== start <name>", so
// a test can read what one run printed. It is killed at cleanup.
type Process struct {
	Name    string
	Path    string
	Args    []string
	Env     []string // added to the test's environment
	Dir     string
	LogFile string
	// Ready, when set, is polled after each start: Start returns once it returns nil.
	Ready func() error

	t    testing.TB
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd exited
	err  error         // how cmd exited; read after done is closed
}

// processWait bounds how long a process may take to get ready after a start
// and to end after a signal.
const processWait = 30 * time.Second

// NewProcess prepares path with args, run in dir and logging to <dir>/<name>.log.
// Nothing runs before Start.
func NewProcess(t testing.TB, name, dir, path string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, Path: path, Args: args, Dir: dir, LogFile: filepath.Join(dir, name+".log"), t: t}
	t.Cleanup(p.Kill)
	return p
}

// Start starts the process unless it runs, and waits until Ready.
func (p *Process) Start() {
	p.t.Helper()
	done, err := p.start()
	if err != nil {
		p.t.Fatalf("testenv: starting %s: %v", p.Name, err)
	}
	if p.Ready == nil || done == nil {
		return
	}
	deadline := time.Now().Add(processWait)
	for {
		err := p.Ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("testenv: %s not ready in %v (%v); log:\n%s", p.Name, processWait, err, p.Tail())
		}
		select {
		case <-done:
			p.t.Fatalf("testenv: %s exited while starting; log:\n%s", p.Name, p.Tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// start starts the command and returns its done channel, nil when it was running.
func (p *Process) start() (chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return nil, nil
	}
	logf, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening its log: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== start %s at %s\n", p.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		p.err = cmd.Wait()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return done, nil
}

// Stop sends SIGTERM and waits; the test fails if the process ends with an error.
func (p *Process) Stop() {
	p.t.Helper()
	exit, err := p.signal(syscall.SIGTERM)
	if err == nil && exit != nil {
		err = fmt.Errorf("it ended with %w", exit)
	}
	if err != nil {
		p.t.Errorf("testenv: stopping %s: %v; log:\n%s", p.Name, err, p.Tail())
	}
}

// Kill sends SIGKILL, as a crash would, and waits for the process. How it
// exited is of no interest: it may have been ending on its own.
func (p *Process) Kill() {
	p.t.Helper()
	if _, err := p.signal(syscall.SIGKILL); err != nil {
		p.t.Errorf("testenv: killing %s: %v", p.Name, err)
	}
}

// signal sends sig to a running process and waits for it: exit is how it
// ended, err why it could not be made to.
func (p *Process) signal(sig syscall.Signal) (exit, err error) {
	p.mu.Lock()
	if !p.running() {
		p.mu.Unlock()
		return nil, nil
	}
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return nil, fmt.Errorf("sending %v: %w", sig, err)
	}
	select {
	case <-done:
		return p.err, nil
	case <-time.After(processWait):
		_ = cmd.Process.Kill()
		<-done
		return p.err, fmt.Errorf("it ignored %v for %v; killed", sig, processWait)
	}
}

// Exited reports whether a started process ended, and how.
func (p *Process) Exited() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.running() {
		return false, nil
	}
	return true, p.err
}

func (p *Process) running() bool {
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
func (p *Process) Tail() string {
	b, _ := os.ReadFile(p.LogFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// FreeAddr returns a loopback host:port nobody listens on. Another process could take it
// before the test binds it; the test then fails naming the address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
