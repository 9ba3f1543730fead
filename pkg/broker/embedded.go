package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Embedded is a NATS server with JetStream running in this process.
type Embedded struct {
	srv  *server.Server
	lock *os.File
}

// StartEmbedded starts a JetStream-enabled server that keeps its data in
// dir and listens on loopback only (port 0 picks a free one), so restarting
// the process resumes the streams where they were.
//
// The store is locked (dir + ".lock") for as long as the server runs: two
// servers on one store would corrupt it, so a second flusso on the same
// data directory is refused.
func StartEmbedded(dir string, port int) (*Embedded, error) {
	lock, err := lockStore(dir)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: "flusso-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		MaxPayload: MaxPayload,
		NoSigs:     true,
		NoLog:      true,
	}
	if port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("configuring embedded NATS in %s: %w", dir, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("embedded NATS in %s did not start within 30s", dir)
	}
	return &Embedded{srv: srv, lock: lock}, nil
}

// URL is the client URL of the server.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// InProcess is the connection option that reaches the server through an
// in-memory pipe rather than loopback TCP: every publish, fetch and ack
// then costs no system call.
func (e *Embedded) InProcess() nats.Option { return nats.InProcessServer(e.srv) }

// Close shuts the server down and waits for it.
func (e *Embedded) Close() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.lock.Close()
}

// lockStore takes an exclusive lock beside the store directory.
func lockStore(dir string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", filepath.Dir(dir), err)
	}
	path := filepath.Clean(dir) + ".lock"
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the embedded NATS data in %s is in use by another flusso: stop it first, or use --nats-url with an external NATS", dir)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return f, nil
}
