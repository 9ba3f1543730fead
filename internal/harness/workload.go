package harness

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// CustomersSchema folds four levels (customers → orders → items → notes),
// a belongs_to and two aggregates into one document.
const CustomersSchema = `version: 1
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

// CustomersDDL creates and fills the tables of CustomersSchema.
const CustomersDDL = `
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

// Workload applies random changes at every level of CustomersSchema until
// stopped, riding out Postgres restarts: the load of the chaos tests.
type Workload struct {
	Applied, Failed atomic.Int64 // transactions committed; failed during outages
	cancel          context.CancelFunc
	wg              sync.WaitGroup
}

// StartWorkload starts a workload on the deployment's database, its
// choices drawn from seed; it stops at the end of the test at the latest.
func (d *Deployment) StartWorkload(seed uint64) *Workload {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Workload{cancel: cancel}
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
					w.Failed.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
				continue
			}
			w.Applied.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	d.T.Cleanup(w.Stop)
	return w
}

// Stop ends the workload and waits for its last transaction.
func (w *Workload) Stop() {
	w.cancel()
	w.wg.Wait()
}

// ChaosRoles makes the chaos tests' processes with proc: two captures,
// three assemblers and two writers of sink primary, each with its role.
func ChaosRoles(proc func(name string, args ...string) *Proc) (procs []*Proc, role map[*Proc]string) {
	role = map[*Proc]string{}
	add := func(name, r string, args ...string) {
		p := proc(name, append([]string{"--role", r}, args...)...)
		procs = append(procs, p)
		role[p] = r
	}
	add("capture-1", "capture")
	add("capture-2", "capture")
	for i := 1; i <= 3; i++ {
		add("assembler-"+strconv.Itoa(i), "assembler")
	}
	for i := 1; i <= 2; i++ {
		add("writer-"+strconv.Itoa(i), "writer", "--sink", "primary")
	}
	return procs, role
}
