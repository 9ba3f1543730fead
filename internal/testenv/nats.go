package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS starts an embedded NATS server with JetStream (in this process, random loopback
// port, store in a temporary directory) and returns its client URL. It is shut down at
// cleanup. It needs no external service, so it also runs with -short.
func NATS(t testing.TB) string {
	t.Helper()
	return NATSServer(t).ClientURL()
}

// NATSServer is NATS returning the server itself, for tests that inspect or stop it.
func NATSServer(t testing.TB) *server.Server {
	t.Helper()
	opts := &server.Options{
		ServerName: "testenv-" + randomHex(4),
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("testenv: configuring the embedded NATS server: %v", err)
	}
	s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("testenv: the embedded NATS server was not ready in 10s")
	}
	return s
}

// NATSServerBinary returns the path of the real nats-server binary
// (FLUSSO_TEST_NATS_SERVER, default <repo>/bin/nats-server, built by `make services`
// from the nats-server module pinned in go.mod) for multi-process tests.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(EnvNATSServer)
	if bin == "" {
		bin = filepath.Join(RepoRoot(t), "bin", "nats-server")
	}
	fi, err := os.Stat(bin)
	if err == nil && (fi.IsDir() || fi.Mode()&0o111 == 0) {
		err = errors.New("not an executable file")
	}
	if err != nil {
		if testing.Short() {
			t.Skipf("testenv: nats-server binary %s: %v; skipped in -short mode", bin, err)
		}
		unavailable(t, "the nats-server binary "+bin, err)
	}
	return bin
}

// NATSProcess is a real nats-server process with JetStream, owned by one test. It keeps
// its port and store across Stop/Kill and Start, so clients reconnect to the same URL
// and find their streams: chaos tests kill the broker with it.
type NATSProcess struct {
	URL      string // nats://127.0.0.1:<port>
	StoreDir string // JetStream store, kept across restarts
	LogFile  string // server output, appended across restarts

	t    testing.TB
	bin  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exited
}

// StartNATSProcess starts NATSServerBinary on a free loopback port with JetStream and a
// temporary store; it is killed at cleanup.
func StartNATSProcess(t testing.TB) *NATSProcess {
	t.Helper()
	bin := NATSServerBinary(t)
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: finding a free port for nats-server: %v", err)
	}
	dir := t.TempDir()
	p := &NATSProcess{
		URL:      "nats://127.0.0.1:" + strconv.Itoa(port),
		StoreDir: filepath.Join(dir, "store"),
		LogFile:  filepath.Join(dir, "nats-server.log"),
		t:        t,
		bin:      bin,
		port:     port,
	}
	t.Cleanup(func() {
		if err := p.Kill(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	if err := p.Start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// Start starts the server if it is not running and waits until it accepts clients.
func (p *NATSProcess) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return nil
	}
	logf, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening the nats-server log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(p.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(p.port),
		"-js", "-sd", p.StoreDir, "-n", "testenv-"+strconv.Itoa(p.port))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	p.cmd, p.done = cmd, done

	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := natsAnswers(p.port); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("nats-server on port %d not ready in 30s (%v); log %s", p.port, err, p.LogFile)
		}
		select {
		case <-done:
			return fmt.Errorf("nats-server on port %d exited during start; log %s", p.port, p.LogFile)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop shuts the server down cleanly (SIGTERM) and waits for it.
func (p *NATSProcess) Stop() error { return p.signal(syscall.SIGTERM) }

// Kill kills the server (SIGKILL), as a crash would, and waits for it.
func (p *NATSProcess) Kill() error { return p.signal(syscall.SIGKILL) }

func (p *NATSProcess) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sending %v to nats-server: %w", sig, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("nats-server on port %d ignored %v for 30s; killed", p.port, sig)
	}
}

func (p *NATSProcess) running() bool {
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

// natsAnswers checks that a NATS server greets on port with its INFO line.
func natsAnswers(port int) error {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the greeting: %w", err)
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	return nil
}

// freePort asks the kernel for a free loopback port. Another process could take it
// before the server binds it; Start then fails with the server's log named.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
