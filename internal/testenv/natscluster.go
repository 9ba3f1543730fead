package testenv

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// NATSCluster is n real nats-server processes with JetStream, joined by
// routes on loopback, owned by one test: cluster tests kill its nodes one
// at a time. Each node keeps its ports and store across Kill and Start.
type NATSCluster struct {
	Nodes []*NATSProcess
	URL   string // every node's client URL, comma-separated
}

// StartNATSCluster starts NATSServerBinary n times on free loopback ports,
// each with a store of its own, and waits until each accepts clients (the
// JetStream cluster elects its leaders shortly after). The nodes are
// killed at cleanup.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	bin := NATSServerBinary(t)
	clients, routes := make([]string, n), make([]string, n)
	for i := range n {
		clients[i], routes[i] = FreeAddr(t), "nats://"+FreeAddr(t)
	}
	c := &NATSCluster{}
	var urls []string
	for i := range n {
		_, port, err := net.SplitHostPort(clients[i])
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		dir := t.TempDir()
		name := fmt.Sprintf("nats-%d", i)
		p := NewProcess(t, name, dir, bin,
			"-a", "127.0.0.1", "-p", port, "-js", "-sd", filepath.Join(dir, "store"), "-n", "testenv-"+name,
			"--cluster_name", "testenv", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
		addr := clients[i]
		p.Ready = func() error { return natsAnswers(addr) }
		c.Nodes = append(c.Nodes, &NATSProcess{Process: p, URL: "nats://" + addr})
		urls = append(urls, "nats://"+addr)
	}
	for _, node := range c.Nodes {
		node.Start()
	}
	c.URL = strings.Join(urls, ",")
	return c
}

// Node is the node whose server name (as a stream's cluster info names
// its leader) is name; nil when none is.
func (c *NATSCluster) Node(name string) *NATSProcess {
	for _, n := range c.Nodes {
		if "testenv-"+n.Name == name {
			return n
		}
	}
	return nil
}
