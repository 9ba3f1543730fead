package cluster

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
)

// TestTopologyThroughput prints what the distributed topology costs next
// to one process on this machine, on the same data and the same 2-node
// OpenSearch cluster: the backfill of the customers deployment (2,000 root
// documents of four levels), then a burst of single-row transactions, each
// touching one document, timed from the first commit until the index
// equals Postgres again. One process runs every stage around its embedded
// NATS; the distributed one is the chaos test's (two captures, three
// assemblers, two writers, a 3-node NATS cluster at 3 replicas). It asserts
// only that both converge: the figures are for reading. FLUSSO_BURST sets
// the number of transactions (default 3000).
func TestTopologyThroughput(t *testing.T) {
	nodes, services := os.Getenv(envOpenSearch), os.Getenv(envServices)
	if nodes == "" || services == "" {
		t.Skipf("the dev cluster is not up (%s unset): make services CLUSTER=1 and source .dev/cluster.env", envOpenSearch)
	}
	burst := envInt("FLUSSO_BURST", 3000)
	var lines []string
	for _, mode := range []string{"one process", "distributed"} {
		d := harness.NewDeployment(t, harness.CustomersDDL)
		d.OpenSearch = strings.Split(nodes, ",")[0]
		t.Cleanup(func() { dropPrefix(d.OpenSearch, d.Prefix) })
		d.WriteConfig(harness.Config{OnError: "stop", Nodes: nodes, Replicas: 1,
			Indexes: []harness.Index{{Name: "customers", Schema: harness.CustomersSchema}}})
		base := []string{"--config", "flusso.toml", "--slot", d.Slot()}
		var procs []*harness.Proc
		if mode == "one process" {
			procs = append(procs, harness.NewProc(t, "flusso", d.Dir, append(base, "--lock", "flusso.lock", "--data-dir", t.TempDir())...))
		} else {
			nats := testenv.StartNATSCluster(t, 3)
			for _, p := range []struct{ name, args string }{
				{"capture-1", "--role capture"}, {"capture-2", "--role capture"},
				{"assembler-1", "--role assembler"}, {"assembler-2", "--role assembler"}, {"assembler-3", "--role assembler"},
				{"writer-1", "--role writer --sink primary"}, {"writer-2", "--role writer --sink primary"},
			} {
				args := append(append([]string{}, base...), "--lock", p.name+".lock", "--nats-url", nats.URL, "--nats-replicas", "3")
				procs = append(procs, harness.NewProc(t, p.name, d.Dir, append(args, strings.Fields(p.args)...)...))
			}
		}
		start := time.Now()
		for _, p := range procs {
			p.Start()
		}
		res := d.Converge("customers", harness.CustomersSchema, 10*time.Minute, procs...)
		backfill := time.Since(start)

		start = time.Now()
		for i := 1; i <= burst; i++ {
			d.Exec(`UPDATE items SET qty = qty + 1 WHERE id = $1`, 1+(i*7919)%12000)
		}
		committed := time.Since(start)
		d.Converge("customers", harness.CustomersSchema, 10*time.Minute, procs...)
		total := time.Since(start)
		lines = append(lines, fmt.Sprintf("%s (%d processes): backfill of %d documents %s (%.0f/s); %d transactions committed in %s, all in OpenSearch %s after the first (%.0f changes/s end to end, the last %s after its commit)",
			mode, len(procs), res.Compared, backfill.Round(100*time.Millisecond), float64(res.Compared)/backfill.Seconds(),
			burst, committed.Round(100*time.Millisecond), total.Round(100*time.Millisecond), float64(burst)/total.Seconds(), (total-committed).Round(100*time.Millisecond)))
		for _, p := range procs {
			p.Stop()
		}
	}
	var load string
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	report := "throughput report (load average " + load + ", " + strconv.Itoa(burst) + " transactions):\n  " + strings.Join(lines, "\n  ")
	t.Log(report)
	fmt.Println(report)
}
