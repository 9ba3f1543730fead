package broker_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

// natsCluster starts n real NATS servers in this process, each with
// JetStream and a store of its own, joined by routes on loopback, and
// returns them with the client URL list of them all, as soon as each takes
// clients: JetStream elects its leaders a moment later.
func natsCluster(t *testing.T, n int, tags ...string) ([]*server.Server, string) {
	servers, _, urls := natsClusterOpts(t, n, tags...)
	return servers, urls
}

// natsClusterOpts is natsCluster that also returns each server's options,
// to start it again on its store.
func natsClusterOpts(t *testing.T, n int, tags ...string) ([]*server.Server, []*server.Options, string) {
	t.Helper()
	routes := make([]string, n)
	for i := range routes {
		routes[i] = testenv.FreeAddr(t)
	}
	var urls []*url.URL
	for _, r := range routes {
		urls = append(urls, &url.URL{Scheme: "nats", Host: r})
	}
	servers := make([]*server.Server, n)
	all := make([]*server.Options, n)
	var clients []string
	for i := range servers {
		host, port, _ := net.SplitHostPort(routes[i])
		p, _ := strconv.Atoi(port)
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, Tags: tags,
			Cluster: server.ClusterOpts{Name: "flusso-test", Host: host, Port: p},
			Routes:  urls,
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(s.Shutdown)
		servers[i], all[i] = s, opts
	}
	for _, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("a NATS server was not ready in 10s")
		}
		clients = append(clients, s.ClientURL())
	}
	return servers, all, strings.Join(clients, ",")
}

// setup runs Setup on a cluster that may still be electing its leaders:
// Setup waits that out.
func setup(t *testing.T, conn *broker.Conn, opts ...broker.SetupOption) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return conn.Setup(ctx, []string{"primary"}, opts...)
}

// TestSetupReplicas lays the pipeline out on a 3-server cluster with 3
// replicas, then changes the count on the existing deployment both ways:
// every stream, bucket and durable consumer follows.
func TestSetupReplicas(t *testing.T) {
	_, urls := natsCluster(t, 3)
	conn := testenv.BrokerAt(t, urls)
	for _, replicas := range []int{3, 1, 3} {
		if err := setup(t, conn, broker.WithPlacement(broker.Placement{Replicas: replicas})); err != nil {
			t.Fatalf("Setup with %d replicas: %v", replicas, err)
		}
		ctx := ctxT(t)
		for _, name := range []string{broker.ChangesStream, broker.DocsStream, broker.QuarantineStream, "KV_" + broker.StateBucket, "KV_" + broker.LeaseBucket} {
			s, err := conn.JS.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			info := s.CachedInfo()
			if info.Config.Replicas != replicas {
				t.Errorf("R%d: stream %s has %d replicas", replicas, name, info.Config.Replicas)
			}
		}
		for _, c := range []struct{ stream, name string }{{broker.ChangesStream, broker.AssemblerConsumer}, {broker.DocsStream, broker.WriterConsumer("primary")}} {
			cons, err := conn.JS.Consumer(ctx, c.stream, c.name)
			if err != nil {
				t.Fatal(err)
			}
			if got := cons.CachedInfo().Config.Replicas; got != replicas {
				t.Errorf("R%d: consumer %s has %d replicas", replicas, c.name, got)
			}
		}
	}
}

// TestSetupReplicasRefused: a count the servers cannot keep fails with
// what to do, naming the flag.
func TestSetupReplicasRefused(t *testing.T) {
	_, urls := natsCluster(t, 3)
	clustered := testenv.BrokerAt(t, urls)
	single := testenv.BrokerAt(t, testenv.NATS(t))
	tests := []struct {
		name  string
		conn  *broker.Conn
		place broker.Placement
		want  string
	}{
		{"more replicas than servers", clustered, broker.Placement{Replicas: 5}, "the cluster needs at least 5 JetStream servers with room for it: lower --nats-replicas (FLUSSO_NATS_REPLICAS)"},
		{"tags no server has", clustered, broker.Placement{Replicas: 3, Tags: []string{"ssd"}}, "JetStream servers tagged ssd"},
		{"a single server", single, broker.Placement{Replicas: 3}, "not part of a JetStream cluster, so it keeps 1 copy: run with --nats-replicas 1 (FLUSSO_NATS_REPLICAS)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := setup(t, tt.conn, broker.WithPlacement(tt.place))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Setup with %+v: %v; want an error saying %q", tt.place, err, tt.want)
			}
			if !strings.Contains(err.Error(), broker.ChangesStream) {
				t.Errorf("error %q does not name the stream", err)
			}
		})
	}
}

// TestPlacementTags puts every replica on servers carrying the tag.
func TestPlacementTags(t *testing.T) {
	_, urls := natsCluster(t, 3, "ssd")
	conn := testenv.BrokerAt(t, urls)
	if err := setup(t, conn, broker.WithPlacement(broker.Placement{Replicas: 3, Tags: []string{"ssd"}})); err != nil {
		t.Fatal(err)
	}
	s, err := conn.JS.Stream(ctxT(t), broker.DocsStream)
	if err != nil {
		t.Fatal(err)
	}
	if p := s.CachedInfo().Config.Placement; p == nil || strings.Join(p.Tags, ",") != "ssd" {
		t.Errorf("placement %+v, want tags [ssd]", p)
	}
}

// TestPublishAcrossLeaderChange takes the changes stream's leader and one
// more server down, so the stream has no quorum and no leader, and
// publishes through the server that stays; one server comes back seconds
// later. The publish waits out the election instead of failing, and a
// repeated id is stored once.
func TestPublishAcrossLeaderChange(t *testing.T) {
	servers, opts, urls := natsClusterOpts(t, 3)
	conn := testenv.BrokerAt(t, urls)
	if err := setup(t, conn, broker.WithPlacement(broker.Placement{Replicas: 3})); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	s, err := conn.JS.Stream(ctx, broker.ChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	leader := s.CachedInfo().Cluster.Leader
	var survivor string
	for _, srv := range servers {
		if srv.Name() != leader && survivor == "" {
			survivor = srv.ClientURL()
		}
	}
	// A client on a server that stays: its connection lives through the
	// election, so only the retry can carry the publish over it.
	pub := testenv.BrokerAt(t, survivor)
	ch := &flussopb.Change{Op: flussopb.ChangeOp_INSERT, Table: "t"}
	if _, err := pub.PublishChange(ctx, ch, "before"); err != nil {
		t.Fatal(err)
	}
	var back *server.Options
	for i, srv := range servers {
		if srv.ClientURL() != survivor {
			if back == nil {
				back = opts[i]
			}
			srv.Shutdown()
		}
	}
	go func() {
		time.Sleep(3 * time.Second)
		srv, err := server.NewServer(back)
		if err != nil {
			t.Error(err)
			return
		}
		srv.Start()
		t.Cleanup(srv.Shutdown)
	}()
	start := time.Now()
	for i := range 3 {
		if _, err := pub.PublishChange(ctx, ch, "after-"+strconv.Itoa(i)); err != nil {
			t.Fatalf("publish %d after the leader %s went (%v later): %v", i, leader, time.Since(start).Round(time.Millisecond), err)
		}
	}
	// The same id again is deduplicated.
	if _, err := pub.PublishChange(ctx, ch, "after-0"); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 4 || info.Cluster.Leader == leader {
		t.Errorf("after the election: %d messages (want 4), leader %s (was %s)", info.State.Msgs, info.Cluster.Leader, leader)
	}
}
