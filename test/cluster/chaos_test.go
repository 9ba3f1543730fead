// Package cluster tests flusso past one machine: a 3-node NATS cluster with
// replicated streams and a 2-node OpenSearch cluster, their nodes killed
// under load while the pipeline runs as separate processes.
package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
)

// Environment of the dev cluster (deploy/dev/services.sh cluster up writes
// it to .dev/cluster.env).
const (
	envOpenSearch = "FLUSSO_TEST_CLUSTER_OPENSEARCH_URL"
	envServices   = "FLUSSO_TEST_CLUSTER_SERVICES"
)

// TestChaosCluster runs two captures, three assemblers and two writers as
// processes on a 3-node NATS cluster (its own, every stream and bucket at
// 3 replicas) and the dev 2-node OpenSearch cluster (indexes with one
// replica), under the chaos workload, while it SIGKILLs a NATS node at a
// time (every other time the changes stream's leader), an OpenSearch node
// now and then, and pipeline processes in between. Then the index must
// equal a fresh build: nothing missing, extra or stale; and the captures
// must never have seen the changes stream hand a sequence out again, which
// a replicated stream prevents. FLUSSO_CHAOS_SECS sets the length of the
// storm (make chaos-cluster: 120; default 60), FLUSSO_CHAOS_SEED the seed.
func TestChaosCluster(t *testing.T) {
	nodes, services := os.Getenv(envOpenSearch), os.Getenv(envServices)
	if nodes == "" || services == "" {
		t.Skipf("the dev cluster is not up (%s unset): make chaos-cluster starts it, or make services CLUSTER=1 and source .dev/cluster.env", envOpenSearch)
	}
	secs := envInt("FLUSSO_CHAOS_SECS", 60)
	seed := uint64(envInt("FLUSSO_CHAOS_SEED", 1))

	nats := testenv.StartNATSCluster(t, 3)
	d := harness.NewDeployment(t, harness.CustomersDDL)
	// Compared on the cluster, through its first node.
	d.OpenSearch = strings.Split(nodes, ",")[0]
	t.Cleanup(func() { dropPrefix(d.OpenSearch, d.Prefix) })
	d.WriteConfig(harness.Config{OnError: "stop", MaxRetries: 8, Nodes: nodes, Replicas: 1,
		Indexes: []harness.Index{{Name: "customers", Schema: harness.CustomersSchema}}})

	procs, role := harness.ChaosRoles(func(name string, args ...string) *harness.Proc {
		args = append([]string{"--config", "flusso.toml", "--nats-url", nats.URL, "--nats-replicas", "3",
			"--lock", name + ".lock", "--slot", d.Slot()}, args...)
		return harness.NewProc(t, name, d.Dir, args...)
	})
	for _, p := range procs {
		p.Start()
	}
	d.Converge("customers", harness.CustomersSchema, 3*time.Minute, procs...)
	t.Logf("seeded: %d processes up", len(procs))

	leaders := watchLeaders(t, testenv.BrokerAt(t, nats.URL))
	w := d.StartWorkload(seed)
	rng := rand.New(rand.NewPCG(seed, 99))
	var (
		natsKills, leaderKills, osKills int
		roleKills                       = map[string]int{}
		restarts                        = map[string]int{}
		lastNATS                        time.Time
		osDown                          atomic.Bool
		osBack                          sync.WaitGroup
		osErr                           = make(chan error, 2)
	)
	start := time.Now()
	storm := time.Duration(secs) * time.Second
	for step := 0; time.Since(start) < storm; step++ {
		time.Sleep(time.Duration(1500+rng.IntN(2000)) * time.Millisecond)
		for _, p := range procs {
			if done, _ := p.Exited(); done {
				restarts["exited "+role[p]]++
				p.Start()
			}
		}
		switch {
		case step%2 == 0 && time.Since(lastNATS) > 8*time.Second:
			// One NATS node at a time, every other time the changes
			// stream's leader; the cluster keeps a quorum throughout.
			node := nats.Nodes[rng.IntN(len(nats.Nodes))]
			if natsKills%2 == 0 {
				if l := nats.Node(leaders.leader(broker.ChangesStream)); l != nil {
					node = l
					leaderKills++
				}
			}
			node.Kill()
			natsKills++
			time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
			node.Start()
			lastNATS = time.Now()
		case osKills < 2 && !osDown.Load() && time.Since(start) > time.Duration(osKills+1)*storm/3:
			// An OpenSearch node dies and comes back in the background (a
			// JVM takes a while): the other kills go on meanwhile.
			node := "opensearch-" + strconv.Itoa(osKills%2)
			t.Logf("killing %s", node)
			if err := devCluster(services, "kill", node); err != nil {
				t.Fatal(err)
			}
			osKills++
			osDown.Store(true)
			osBack.Add(1)
			go func() {
				defer osBack.Done()
				defer osDown.Store(false)
				time.Sleep(3 * time.Second)
				// It returns once the cluster holds the node again.
				if err := devCluster(services, "start", node); err != nil {
					osErr <- err
				}
			}()
		default:
			p := procs[rng.IntN(len(procs))]
			p.Kill()
			roleKills[role[p]]++
			time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
			p.Start()
		}
	}
	w.Stop()
	osBack.Wait()
	select {
	case err := <-osErr:
		t.Fatal(err)
	default:
	}
	for _, p := range procs {
		if done, _ := p.Exited(); done {
			restarts["exited "+role[p]]++
		}
		p.Start()
	}
	caught := time.Now()
	res := d.Converge("customers", harness.CustomersSchema, 5*time.Minute, procs...)
	changes := leaders.stop()
	reused := 0
	for _, p := range procs {
		if role[p] == "capture" {
			log, _ := os.ReadFile(p.LogFile)
			reused += strings.Count(string(log), "handed out sequence")
		}
	}
	report := fmt.Sprintf("cluster chaos report: seed %d, storm %s, changes applied %d (failed %d), NATS node kills %d (of the changes stream's leader %d), OpenSearch node kills %d, role kills %v, restarts %v, leader changes %v, reused-sequence events %d, documents compared %d, missing %d, extra %d, stale %d, caught up in %s",
		seed, storm, w.Applied.Load(), w.Failed.Load(), natsKills, leaderKills, osKills, roleKills, restarts, changes, reused,
		res.Compared, len(res.Missing), len(res.Extra), len(res.Mismatches), time.Since(caught).Round(100*time.Millisecond))
	t.Log(report)
	fmt.Println(report)
	if reused > 0 {
		t.Errorf("the changes stream handed out %d sequences again: a replicated stream must not lose what it acknowledged", reused)
	}
	for _, p := range procs {
		p.Stop()
	}
}

// leaderWatch counts the changes of leader of the pipeline's streams and
// the lease bucket.
type leaderWatch struct {
	mu      sync.Mutex
	current map[string]string
	changes map[string]int
	cancel  context.CancelFunc
	done    chan struct{}
}

var watched = []string{broker.ChangesStream, broker.DocsStream, "KV_" + broker.LeaseBucket}

func watchLeaders(t *testing.T, conn *broker.Conn) *leaderWatch {
	ctx, cancel := context.WithCancel(context.Background())
	lw := &leaderWatch{current: map[string]string{}, changes: map[string]int{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(lw.done)
		for ctx.Err() == nil {
			for _, name := range watched {
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				s, err := conn.JS.Stream(rctx, name)
				rcancel()
				if err != nil || s.CachedInfo().Cluster == nil || s.CachedInfo().Cluster.Leader == "" {
					continue // no leader for now: an election
				}
				lw.saw(name, s.CachedInfo().Cluster.Leader)
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { lw.stop() })
	return lw
}

func (lw *leaderWatch) saw(stream, leader string) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if prev := lw.current[stream]; prev != "" && prev != leader {
		lw.changes[stream]++
	}
	lw.current[stream] = leader
}

func (lw *leaderWatch) leader(stream string) string {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.current[stream]
}

// stop ends the watch and returns the leader changes seen per stream.
func (lw *leaderWatch) stop() map[string]int {
	lw.cancel()
	<-lw.done
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.changes
}

// devCluster runs deploy/dev/services.sh cluster with args.
func devCluster(script string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, script, append([]string{"cluster"}, args...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s cluster %v: %w\n%s", script, args, err, out)
	}
	return nil
}

// dropPrefix deletes the test's indexes from the cluster.
func dropPrefix(base, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _, _ = testenv.OpenSearchDo(ctx, http.MethodDelete, base+"/"+prefix+"*?expand_wildcards=all", nil)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
