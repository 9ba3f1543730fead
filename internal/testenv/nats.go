package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flusso/flusso/pkg/broker"
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

// Broker connects to a fresh embedded NATS server (NATS) and creates the
// pipeline's streams and consumers for the given sinks.
func Broker(t testing.TB, sinks ...string) *broker.Conn {
	t.Helper()
	conn := BrokerAt(t, NATS(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.Setup(ctx, sinks); err != nil {
		t.Fatalf("testenv: creating the streams: %v", err)
	}
	return conn
}

// BrokerAt connects to the NATS server at url; the connection is closed at
// cleanup.
func BrokerAt(t testing.TB, url string) *broker.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := broker.Connect(ctx, url, t.Name())
	if err != nil {
		t.Fatalf("testenv: connecting to NATS at %s: %v", url, err)
	}
	t.Cleanup(conn.Close)
	return conn
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
	*Process
	URL string // nats://127.0.0.1:<port>
}

// StartNATSProcess starts NATSServerBinary on a free loopback port with JetStream and a
// temporary store, and waits until it accepts clients; it is killed at cleanup.
func StartNATSProcess(t testing.TB) *NATSProcess {
	t.Helper()
	bin := NATSServerBinary(t)
	addr := FreeAddr(t)
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dir := t.TempDir()
	p := NewProcess(t, "nats-server", dir, bin,
		"-a", "127.0.0.1", "-p", port, "-js", "-sd", filepath.Join(dir, "store"), "-n", "testenv-"+port)
	p.Ready = func() error { return natsAnswers(addr) }
	p.Start()
	return &NATSProcess{Process: p, URL: "nats://" + addr}
}

// natsAnswers checks that a NATS server greets at addr with its INFO line.
func natsAnswers(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
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
