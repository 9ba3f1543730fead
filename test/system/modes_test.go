package system

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/harness"
)

// TestEmbeddedAndDistributedAgree applies one seeded workload to two
// identical databases, one followed by `flusso run` in the embedded mode,
// the other by separate capture, assembler and writer processes on a real
// nats-server, and expects identical indexes, each equal to a fresh build.
func TestEmbeddedAndDistributedAgree(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode: needs the dev services")
	}
	emb := newDeployment(t, customersDDL)
	dist := newDeployment(t, customersDDL)
	emb.writeConfig(map[string]string{"customers": customersSchema}, "stop")
	dist.writeConfig(map[string]string{"customers": customersSchema}, "stop")

	embedded := harness.NewProc(t, "embedded", emb.Dir, "--config", "flusso.toml", "--data-dir", "data", "--slot", emb.Slot())
	procs := []*harness.Proc{
		dist.proc("capture", "--role", "capture"),
		dist.proc("assembler-1", "--role", "assembler"),
		dist.proc("assembler-2", "--role", "assembler"),
		dist.proc("writer", "--role", "writer"),
	}
	embedded.Start()
	for _, p := range procs {
		p.Start()
	}

	// A capture sets the tables' replica identity as it starts: a statement
	// caught in that can die in a deadlock in one database only, its serial
	// id spent there alone. So the workload starts once both stream.
	for _, d := range []*deployment{emb, dist} {
		deadline := time.Now().Add(2 * time.Minute)
		for active, _ := d.SlotState(); !active; active, _ = d.SlotState() {
			if time.Now().After(deadline) {
				t.Fatalf("the slot %s was not streaming within 2 minutes", d.Slot())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The same statements, in the same order, on both databases: serial
	// ids advance alike, so the data stays identical.
	rng := rand.New(rand.NewPCG(42, 1))
	ctx := context.Background()
	for i := range 3000 {
		tx := []string{
			`UPDATE customers SET name = 'n' || $1::bigint WHERE id = $1`,
			`INSERT INTO orders (customer_id, status) VALUES ($1, 'new')`,
			`UPDATE orders SET customer_id = $1 WHERE id = $1 * 2`,
			`DELETE FROM items WHERE id = $1 * 5`,
			`UPDATE items SET order_id = $1 WHERE id = $1 * 5 + 1`,
			`INSERT INTO notes (item_id, body) SELECT id, 'x' FROM items WHERE id = $1 * 5 + 2`,
			`DELETE FROM customers WHERE id = $1 AND $1 % 97 = 0`,
			`UPDATE products SET name = 'p' || $1::bigint WHERE id = 1 + $1 % 50`,
		}[rng.IntN(8)]
		arg := 1 + rng.Int64N(1999)
		for _, d := range []*deployment{emb, dist} {
			// A foreign key may point at a row the workload deleted: both
			// databases refuse it alike, so the error is not interesting.
			_, _ = d.DB.Exec(ctx, tx, arg)
		}
		if i%500 == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}

	emb.Converge("customers", customersSchema, 3*time.Minute, embedded)
	res := dist.Converge("customers", customersSchema, 3*time.Minute, procs...)
	a, err := harness.Documents(ctx, emb.OpenSearch, emb.Prefix+"customers")
	if err != nil {
		t.Fatal(err)
	}
	b, err := harness.Documents(ctx, dist.OpenSearch, dist.Prefix+"customers")
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("embedded index has %d documents, distributed %d", len(a), len(b))
	}
	for id, da := range a {
		var x, y any
		_ = json.Unmarshal(da, &x)
		_ = json.Unmarshal(b[id], &y)
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("document %s differs:\nembedded:    %s\ndistributed: %s", id, da, b[id])
		}
	}
	t.Logf("both modes agree on %d documents (%s)", len(a), res)
	embedded.Stop()
	for _, p := range procs {
		p.Stop()
	}
}
