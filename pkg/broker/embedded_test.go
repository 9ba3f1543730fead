package broker_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flusso/flusso/pkg/broker"
)

// TestEmbeddedListensNowhere starts the embedded server as a one-process
// pipeline does: it must open no TCP port at all (any local process could
// publish documents on it), and still serve this process.
func TestEmbeddedListensNowhere(t *testing.T) {
	before := listeningSockets(t)
	emb, err := broker.StartEmbedded(filepath.Join(t.TempDir(), "nats"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	if a := emb.Addr(); a != nil {
		t.Errorf("the embedded server listens on %s", a)
	}
	for inode := range listeningSockets(t) {
		if !before[inode] {
			t.Errorf("a TCP socket of this process started listening with the embedded server (inode %s)", inode)
		}
	}
	useJetStream(t, inProcess(t, emb))
}

// TestEmbeddedListener opens the embedded server to TCP clients: they get
// in with the listener's credentials only.
func TestEmbeddedListener(t *testing.T) {
	emb, err := broker.StartEmbedded(filepath.Join(t.TempDir(), "nats"), &broker.Listener{Addr: "127.0.0.1:0", User: "ops", Password: "open-sesame"})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	if emb.Addr() == nil {
		t.Fatal("no listener")
	}
	url := "nats://" + emb.Addr().String()
	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"no credentials", nil},
		{"a wrong password", []nats.Option{nats.UserInfo("ops", "guess")}},
		{"a token", []nats.Option{nats.Token("open-sesame")}},
	} {
		if nc, err := nats.Connect(url, tc.opts...); err == nil {
			nc.Close()
			t.Errorf("%s: connected", tc.name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization violation", tc.name, err)
		}
	}
	nc, err := nats.Connect(url, nats.UserInfo("ops", "open-sesame"))
	if err != nil {
		t.Fatalf("with the credentials: %v", err)
	}
	defer nc.Close()
	useJetStream(t, inProcess(t, emb)) // this process's own connections still work
	if _, err := nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Errorf("JetStream over TCP: %v", err)
	}
}

func TestEmbeddedListenerNeedsCredentials(t *testing.T) {
	for _, ln := range []broker.Listener{
		{Addr: "127.0.0.1:0", User: "ops"},
		{Addr: "127.0.0.1:0", Password: "pw"},
	} {
		if emb, err := broker.StartEmbedded(filepath.Join(t.TempDir(), "nats"), &ln); err == nil {
			emb.Close()
			t.Errorf("started with %+v", ln)
		}
	}
}

// TestListenerCredentials makes credentials once, readable by the owner
// only, and reads the same ones back.
func TestListenerCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "nats-listen.env")
	user, password, err := broker.ListenerCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if user != broker.ListenerUser || len(password) < 20 {
		t.Errorf("made %q / %d characters", user, len(password))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("written %v, want 0600", fi.Mode().Perm())
	}
	u2, p2, err := broker.ListenerCredentials(path)
	if err != nil || u2 != user || p2 != password {
		t.Errorf("read back %q %q %v", u2, p2, err)
	}

	if err := os.WriteFile(path, []byte("NATS_USER=ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := broker.ListenerCredentials(path); err == nil || !strings.Contains(err.Error(), "NATS_PASSWORD") {
		t.Errorf("a file without a password: %v", err)
	}
}

func inProcess(t *testing.T, emb *broker.Embedded) *broker.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := emb.Connect(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

func useJetStream(t *testing.T, conn *broker.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Setup(ctx, []string{"primary"}); err != nil {
		t.Fatalf("setting up the streams in process: %v", err)
	}
}

// listeningSockets returns the inodes of the TCP sockets this process
// listens on, from /proc.
func listeningSockets(t *testing.T) map[string]bool {
	t.Helper()
	listening := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			t.Skipf("no %s: %v", table, err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) > 9 && fields[3] == "0A" { // TCP_LISTEN
				listening[fields[9]] = true
			}
		}
		f.Close()
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("reading /proc/self/fd: %v", err)
	}
	own := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			if inode = strings.TrimSuffix(inode, "]"); listening[inode] {
				own[inode] = true
			}
		}
	}
	return own
}
