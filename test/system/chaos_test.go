package system

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
)

// customersSchema folds four levels (customers → orders → items → notes),
// a belongs_to and two aggregates into one document.
const customersSchema = `version: 1
table: customers
primary_key: id
fields:
  - long: id
  - keyword: name
  - has_many: orders
    table: orders
    foreign_key: customer_id
    primary_key: id
    order_by: [{ column: id, direction: asc }]
    fields:
      - long: id
      - keyword: status
      - has_many: items
        table: items
        foreign_key: order_id
        primary_key: id
        order_by: [{ column: id, direction: asc }]
        fields:
          - long: id
          - integer: qty
          - belongs_to: product
            table: products
            column: product_id
            primary_key: id
            fields:
              - long: id
              - keyword: name
          - has_many: notes
            table: notes
            foreign_key: item_id
            primary_key: id
            order_by: [{ column: id, direction: asc }]
            fields:
              - long: id
              - text: body
      - count: itemCount
        table: items
        foreign_key: order_id
  - count: orderCount
    table: orders
    foreign_key: customer_id
`

const customersDDL = `
CREATE TABLE products (id bigserial PRIMARY KEY, name text NOT NULL);
CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers ON DELETE CASCADE, status text NOT NULL);
CREATE TABLE items (id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
  product_id bigint REFERENCES products ON DELETE SET NULL, qty int NOT NULL);
CREATE TABLE notes (id bigserial PRIMARY KEY, item_id bigint NOT NULL REFERENCES items ON DELETE CASCADE, body text NOT NULL);
CREATE INDEX ON orders (customer_id);
CREATE INDEX ON items (order_id);
CREATE INDEX ON items (product_id);
CREATE INDEX ON notes (item_id);
INSERT INTO products (name) SELECT 'product ' || g FROM generate_series(1, 50) g;
INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 2000) g;
INSERT INTO orders (customer_id, status) SELECT 1 + g % 2000, 'new' FROM generate_series(0, 5999) g;
INSERT INTO items (order_id, product_id, qty) SELECT 1 + g % 6000, 1 + g % 50, 1 FROM generate_series(0, 11999) g;
INSERT INTO notes (item_id, body) SELECT 1 + g, 'note ' || g FROM generate_series(0, 11999) g;
`

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

	var procs []*harness.Proc
	role := map[*harness.Proc]string{}
	add := func(name, r string, args ...string) {
		p := d.proc(name, args...)
		procs = append(procs, p)
		role[p] = r
	}
	add("capture-1", "capture", "--role", "capture")
	add("capture-2", "capture", "--role", "capture")
	for i := 1; i <= 3; i++ {
		add("assembler-"+strconv.Itoa(i), "assembler", "--role", "assembler")
	}
	for i := 1; i <= 2; i++ {
		add("writer-"+strconv.Itoa(i), "writer", "--role", "writer", "--sink", "primary")
	}
	for _, p := range procs {
		p.Start()
	}
	d.Converge("customers", customersSchema, 3*time.Minute, procs...)
	t.Logf("seeded: %d processes up", len(procs))

	w := startChaosWorkload(t, d, seed)
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
	w.stop()
	for _, p := range procs {
		if done, _ := p.Exited(); done {
			restarts["exited "+role[p]]++
		}
		p.Start()
	}
	caught := time.Now()
	res := d.Converge("customers", customersSchema, 5*time.Minute, procs...)
	report := fmt.Sprintf("chaos report: seed %d, storm %s, changes applied %d (failed %d during outages), kills %v, restarts %v, documents compared %d, mismatches %d, missing %d, extra %d, caught up in %s",
		seed, storm, w.applied.Load(), w.failed.Load(), kills, restarts, res.Compared, len(res.Mismatches), len(res.Missing), len(res.Extra), time.Since(caught).Round(100*time.Millisecond))
	t.Log(report)
	fmt.Println(report)
	for _, p := range procs {
		p.Stop()
	}
}

// chaosWorkload applies random changes at every level until stopped,
// riding out Postgres restarts.
type chaosWorkload struct {
	applied, failed atomic.Int64
	cancel          context.CancelFunc
	wg              sync.WaitGroup
}

func startChaosWorkload(t *testing.T, d *deployment, seed uint64) *chaosWorkload {
	ctx, cancel := context.WithCancel(context.Background())
	w := &chaosWorkload{cancel: cancel}
	stmts := []string{
		`INSERT INTO customers (name) VALUES ('new ' || $1::bigint)`,
		`UPDATE customers SET name = 'renamed ' || $1::bigint WHERE id = $1`,
		`DELETE FROM customers WHERE id = $1`,
		`INSERT INTO orders (customer_id, status) SELECT $1, 'new' WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1)`,
		`UPDATE orders o SET customer_id = c.id FROM (SELECT max(id) AS id FROM customers WHERE id <= $1) c WHERE o.id = $1 * 3 AND c.id IS NOT NULL`,
		`UPDATE orders SET status = 'paid' WHERE id = $1 * 3 + 1`,
		`DELETE FROM orders WHERE id = $1 * 3 + 2`,
		`INSERT INTO items (order_id, product_id, qty) SELECT id, 1 + $1 % 50, 2 FROM orders WHERE id = $1 * 3`,
		`UPDATE items SET qty = qty + 1 WHERE id = $1 * 6`,
		`UPDATE items i SET order_id = o.id FROM (SELECT max(id) AS id FROM orders WHERE id <= $1 * 2) o WHERE i.id = $1 * 6 + 1 AND o.id IS NOT NULL`,
		`DELETE FROM items WHERE id = $1 * 6 + 2`,
		`INSERT INTO notes (item_id, body) SELECT id, 'more' FROM items WHERE id = $1 * 6 + 3`,
		`DELETE FROM notes WHERE id = $1 * 6 + 4`,
		`UPDATE products SET name = 'product v' || $1::bigint WHERE id = 1 + $1 % 50`,
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		rng := rand.New(rand.NewPCG(seed, 7))
		for ctx.Err() == nil {
			// Several statements per transaction, to keep transactions whole.
			err := func() error {
				tx, err := d.DB.Begin(ctx)
				if err != nil {
					return err
				}
				defer tx.Rollback(context.Background()) //nolint:errcheck // after commit a no-op
				for range 1 + rng.IntN(3) {
					if _, err := tx.Exec(ctx, stmts[rng.IntN(len(stmts))], 1+rng.Int64N(2000)); err != nil {
						return err
					}
				}
				return tx.Commit(ctx)
			}()
			if err != nil {
				if ctx.Err() == nil {
					w.failed.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
				continue
			}
			w.applied.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *chaosWorkload) stop() {
	w.cancel()
	w.wg.Wait()
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
