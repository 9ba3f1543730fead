package run_test

import (
	"testing"

	"github.com/flusso/flusso/internal/harness"
)

const usersSchema = `version: 1
table: users
primary_key: id
soft_delete: { column: deleted }
fields:
  - integer: id
  - keyword: email
    required: true
    transforms: [lowercase, trim]
  - has_many: orders
    table: orders
    foreign_key: user_id
    primary_key: id
    order_by: [{ column: id, direction: asc }]
    fields:
      - integer: id
      - double: total
        required: true
      - keyword: status
        required: true
  - count: orderCount
    table: orders
    foreign_key: user_id
`

func TestEndToEndUsersWithOrders(t *testing.T) {
	e := newE2E(t, `
		CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, deleted boolean NOT NULL DEFAULT false);
		CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users, total numeric NOT NULL, status text NOT NULL);
		INSERT INTO users (email) VALUES (' Ada@X.io '), ('bob@x.io'), ('cy@x.io');
		INSERT INTO orders (user_id, total, status) VALUES (1, 10.5, 'paid'), (1, 3, 'new'), (2, 7, 'paid');`)
	cfg := e.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "users", Schema: usersSchema}}})
	harness.Launch(t, e.Options(cfg, t.TempDir()))

	e.awaitDocs("the backfill", "users", func(d map[string]map[string]any) bool {
		return len(d) == 3 && d["1"]["email"] == "ada@x.io" && d["1"]["orderCount"] == float64(2) && d["3"]["orderCount"] == float64(0)
	})

	e.Exec(`UPDATE users SET email = 'ADA@new.io' WHERE id = 1`)
	e.awaitDocs("a root update", "users", func(d map[string]map[string]any) bool { return d["1"]["email"] == "ada@new.io" })

	e.Exec(`INSERT INTO orders (user_id, total, status) VALUES (3, 1, 'new')`)
	e.awaitDocs("a child insert", "users", func(d map[string]map[string]any) bool { return d["3"]["orderCount"] == float64(1) })

	e.Exec(`UPDATE orders SET user_id = 2 WHERE id = 1`)
	e.awaitDocs("a child moved to another parent", "users", func(d map[string]map[string]any) bool {
		return d["1"]["orderCount"] == float64(1) && d["2"]["orderCount"] == float64(2)
	})

	e.Exec(`DELETE FROM orders WHERE id = 3`)
	e.awaitDocs("a child delete", "users", func(d map[string]map[string]any) bool { return d["2"]["orderCount"] == float64(1) })

	e.Exec(`UPDATE users SET deleted = true WHERE id = 3`)
	e.awaitDocs("a soft delete", "users", func(d map[string]map[string]any) bool { _, ok := d["3"]; return !ok && len(d) == 2 })

	e.Exec(`INSERT INTO users (email) VALUES ('dee@x.io')`)
	e.Exec(`DELETE FROM orders WHERE user_id = 2`)
	e.Exec(`DELETE FROM users WHERE id = 2`)
	e.awaitDocs("an insert and a hard delete", "users", func(d map[string]map[string]any) bool {
		_, two := d["2"]
		return !two && d["4"]["email"] == "dee@x.io"
	})
}
