package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Embedded is a NATS server with JetStream running in this process.
type Embedded struct {
	srv  *server.Server
	lock *os.File
	// user and password admit this process's own connections, in process
	// only: they are made up at each start and never leave memory.
	user, password string
}

// Listener opens the embedded server to TCP clients, such as the nats CLI.
// Without one the server accepts connections from this process only: any
// local process could otherwise publish documents the writers index.
type Listener struct {
	Addr     string // host:port
	User     string
	Password string
}

// inProcessUser is the account of this process's own connections.
const inProcessUser = "flusso-in-process"

// StartEmbedded starts a JetStream-enabled server that keeps its data in
// dir, so restarting the process resumes the streams where they were. It
// listens on no port unless ln is given, and then admits only ln's user.
//
// The store is locked (dir + ".lock") for as long as the server runs: two
// servers on one store would corrupt it, so a second flusso on the same
// data directory is refused.
func StartEmbedded(dir string, ln *Listener) (*Embedded, error) {
	lock, err := lockStore(dir)
	if err != nil {
		return nil, err
	}
	e := &Embedded{lock: lock, user: inProcessUser, password: rand.Text()}
	opts, err := e.options(dir, ln)
	if err != nil {
		lock.Close()
		return nil, err
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
		if ln != nil {
			return nil, fmt.Errorf("embedded NATS in %s did not start within 30s (is %s free?)", dir, ln.Addr)
		}
		return nil, fmt.Errorf("embedded NATS in %s did not start within 30s", dir)
	}
	e.srv = srv
	return e, nil
}

// options configures the server: in-process connections for this process,
// and ln's user over TCP when ln is given.
func (e *Embedded) options(dir string, ln *Listener) (*server.Options, error) {
	opts := &server.Options{
		ServerName: "flusso-embedded",
		JetStream:  true,
		StoreDir:   dir,
		MaxPayload: MaxPayload,
		NoSigs:     true,
		NoLog:      true,
		DontListen: ln == nil,
		Users: []*server.User{{
			Username: e.user, Password: e.password,
			AllowedConnectionTypes: map[string]struct{}{"IN_PROCESS": {}},
		}},
	}
	if ln == nil {
		return opts, nil
	}
	if ln.User == "" || ln.Password == "" {
		return nil, errors.New("the embedded NATS listener needs a user and a password")
	}
	if ln.User == e.user {
		return nil, fmt.Errorf("the embedded NATS listener's user may not be %s: flusso uses that name itself", e.user)
	}
	host, port, err := net.SplitHostPort(ln.Addr)
	if err != nil {
		return nil, fmt.Errorf("the embedded NATS listener address %q: %w", ln.Addr, err)
	}
	if opts.Port, err = strconv.Atoi(port); err != nil {
		return nil, fmt.Errorf("the embedded NATS listener address %q: port %q is not a number", ln.Addr, port)
	}
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	opts.Host = host
	opts.Users = append(opts.Users, &server.User{
		Username: ln.User, Password: ln.Password,
		AllowedConnectionTypes: map[string]struct{}{"STANDARD": {}},
	})
	return opts, nil
}

// Addr is the TCP address the server listens on; nil when it takes
// connections from this process only.
func (e *Embedded) Addr() net.Addr { return e.srv.Addr() }

// Connect connects this process to the server through an in-memory pipe:
// no port, and no system call per publish, fetch or ack.
func (e *Embedded) Connect(ctx context.Context, name string) (*Conn, error) {
	return Connect(ctx, "nats://in-process", name, nats.InProcessServer(e.srv), nats.UserInfo(e.user, e.password))
}

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

// ListenerUser is the user of generated listener credentials.
const ListenerUser = "flusso"

// ListenerCredentials reads the listener's user and password from the file
// at path or, when there is none, makes up a password and writes both
// there, readable by the owner only. The file is in the environment format
// the nats CLI reads (NATS_USER, NATS_PASSWORD).
func ListenerCredentials(path string) (user, password string, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newCredentials(path)
	}
	if err != nil {
		return "", "", fmt.Errorf("reading the NATS listener credentials: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "NATS_USER":
			user = v
		case "NATS_PASSWORD":
			password = v
		}
	}
	if user == "" || password == "" {
		return "", "", fmt.Errorf("%s lacks NATS_USER or NATS_PASSWORD: fix it, or delete it to have new credentials made", path)
	}
	return user, password, nil
}

// newCredentials writes new listener credentials to path. O_EXCL: a
// concurrent start that wrote first wins, and this one fails rather than
// hand out a password nobody can use.
func newCredentials(path string) (user, password string, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", "", fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("writing the NATS listener credentials: %w", err)
	}
	user, password = ListenerUser, rand.Text()
	_, err = fmt.Fprintf(f, "# The embedded NATS listener of flusso run --nats-listen.\nNATS_USER=%s\nNATS_PASSWORD=%s\n", user, password)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", "", fmt.Errorf("writing the NATS listener credentials to %s: %w", path, err)
	}
	return user, password, nil
}
