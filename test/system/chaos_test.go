package system

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
)

// The customers deployment of the chaos tests (internal/harness).
const (
	customersSchema = harness.CustomersSchema
	customersDDL    = harness.CustomersDDL
)

// TestChaos runs the distributed shape — a real nats-server, two captures
// (one a standby), three assemblers and two writers as separate processes —
// under a seeded random workload with deletes and parent moves, while it
// SIGKILLs and restarts a random process every few seconds and restarts
// NATS, OpenSearch and Postgres once each. Then every document must equal a
// fresh build and no extra document may exist. FLUSSO_CHAOS_SECS sets the
// length of the storm (make chaos: 300; default 40); FLUSSO_CHAOS_SEED the
// workload's seed.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: the chaos test needs the dev services and minutes")
	}
	secs := envInt("FLUSSO_CHAOS_SECS", 40)
	seed := uint64(envInt("FLUSSO_CHAOS_SEED", 1))
	d := newDeployment(t, customersDDL)
	d.writeConfig(map[string]string{"customers": customersSchema}, "stop")

	procs, role := harness.ChaosRoles(d.proc)
	for _, p := range procs {
		p.Start()
	}
	d.Converge("customers", customersSchema, 3*time.Minute, procs...)
	t.Logf("seeded: %d processes up", len(procs))

	w := d.StartWorkload(seed)
	rng := rand.New(rand.NewPCG(seed, 99))
	kills := map[string]int{}
	restarts := map[string]int{}
	services := []string{"nats", "opensearch", "postgres"}
	rng.Shuffle(len(services), func(i, j int) { services[i], services[j] = services[j], services[i] })
	start := time.Now()
	storm := time.Duration(secs) * time.Second
	for time.Since(start) < storm || len(services) > 0 {
		time.Sleep(time.Duration(2000+rng.IntN(3000)) * time.Millisecond)
		// Processes that stopped on their own (a sink down past its retries)
		// come back, as an orchestrator would bring them.
		for _, p := range procs {
			if done, _ := p.Exited(); done {
				restarts["exited "+role[p]]++
				p.Start()
			}
		}
		// Each service restarts once, spread over the storm.
		if len(services) > 0 && time.Since(start) > time.Duration(4-len(services))*storm/4 {
			svc := services[0]
			services = services[1:]
			t.Logf("restarting %s at WAL %s", svc, d.WALPosition())
			if svc == "nats" {
				d.nats.Kill()
				time.Sleep(time.Second)
				d.nats.Start()
			} else {
				testenv.RestartService(t, svc, svc == "postgres")
			}
			restarts[svc]++
			continue
		}
		p := procs[rng.IntN(len(procs))]
		p.Kill()
		kills[role[p]]++
		time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
		p.Start()
	}
	w.Stop()
	for _, p := range procs {
		if done, _ := p.Exited(); done {
			restarts["exited "+role[p]]++
		}
		p.Start()
	}
	caught := time.Now()
	res := d.Converge("customers", customersSchema, 5*time.Minute, procs...)
	report := fmt.Sprintf("chaos report: seed %d, storm %s, changes applied %d (failed %d during outages), kills %v, restarts %v, documents compared %d, mismatches %d, missing %d, extra %d, caught up in %s",
		seed, storm, w.Applied.Load(), w.Failed.Load(), kills, restarts, res.Compared, len(res.Mismatches), len(res.Missing), len(res.Extra), time.Since(caught).Round(100*time.Millisecond))
	t.Log(report)
	fmt.Println(report)
	for _, p := range procs {
		p.Stop()
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
