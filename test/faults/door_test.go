package faults

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
)

// TestNoOpenDoor: a one-process run listens on its two HTTP surfaces and
// nothing else (its broker is in-process); with the opt-in NATS listener a
// client without credentials cannot publish.
func TestNoOpenDoor(t *testing.T) {
	r := newRig(t, setup{})
	r.start()
	rp := &report{scenario: "no open door"}

	own := []int{port(t, r.proc.Public), port(t, r.private)}
	listening := listeningPorts(t, r.pid)
	// The surfaces must be seen, or the look at the sockets proves nothing.
	for _, p := range own {
		if !slices.Contains(listening, p) {
			t.Fatalf("expected the HTTP surface on port %d among the listening ports of pid %d; found %v", p, r.pid, listening)
		}
	}
	var doors []string
	for _, p := range listening {
		if !slices.Contains(own, p) {
			doors = append(doors, fmt.Sprintf("%d (%s)", p, publishWithoutCredentials(p)))
		}
	}
	rp.inject("nothing: a look at the listening sockets")
	rp.figure("listening TCP ports %v, HTTP surfaces %v", listening, own)
	if len(doors) > 0 {
		t.Errorf("expected one-process flusso run to listen on its HTTP surfaces %v only; it also listens on %s", own, strings.Join(doors, ", "))
	}
	r.stop()

	listen := testenv.FreeAddr(t)
	rp.inject(natsListenFlag + " " + listen + " and a publish without credentials")
	const user, password = "ops", "fault-suite-pw"
	r.newProc("flusso-listen", nil, natsListenFlag, listen, natsListenUserFlag, user, natsListenPasswordFlag, password)
	r.start()
	// The listener must be NATS and admit its user, or a refusal proves nothing.
	nc, err := nats.Connect("nats://"+listen, nats.UserInfo(user, password), nats.Timeout(3*time.Second), nats.NoReconnect())
	if err != nil {
		t.Fatalf("expected %s to admit %s with its password; connecting: %v", natsListenFlag, natsListenUserFlag, err)
	}
	nc.Close()
	if p := port(t, listen); !slices.Contains(listeningPorts(t, r.pid), p) {
		t.Errorf("expected %s %s to open a NATS listener on port %d; the process listens on %v", natsListenFlag, listen, p, listeningPorts(t, r.pid))
	}
	if res := publishWithoutCredentials(port(t, listen)); res != refused {
		t.Errorf("expected the opt-in NATS listener to refuse a client without credentials; %s", res)
	} else {
		rp.figure("opt-in listener: a publish without credentials was %s", res)
	}
	w := r.startWorkload(20 * time.Millisecond)
	out := r.finish(w)
	rp.saw = seen([]sample{r.sample(r.ctx)})
	rp.log(r, out)
}

const refused = "refused"

// publishWithoutCredentials tries what any local process could: connect to
// the port as a NATS client and publish a forged document. It says what
// happened.
func publishWithoutCredentials(port int) string {
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second), nats.NoReconnect())
	if err != nil {
		if strings.Contains(err.Error(), "Authorization") || strings.Contains(err.Error(), "authorization") {
			return refused
		}
		return "not NATS: " + err.Error()
	}
	defer nc.Close()
	if err := nc.Publish(broker.DocsSubject(indexName), []byte("forged")); err != nil {
		return refused
	}
	if err := nc.FlushTimeout(3 * time.Second); err != nil {
		return refused
	}
	return "an unauthenticated NATS client published to " + broker.DocsSubject(indexName)
}

// listeningPorts lists the TCP ports pid listens on: the listening sockets
// of /proc/<pid>/net/tcp{,6} whose inodes are among its open files.
func listeningPorts(t *testing.T, pid int) []int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("listing the open files of pid %d: %v", pid, err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, _ := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue // no IPv6
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && !slices.Contains(ports, int(p)) {
				ports = append(ports, int(p))
			}
		}
		f.Close()
	}
	slices.Sort(ports)
	return ports
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
