package sqlbuild_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/pkg/sqlbuild"
)

const benchUsers = 20_000

const benchDDL = `
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, name text, created timestamptz NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL, total numeric(10,2) NOT NULL,
	status text NOT NULL, placed timestamp NOT NULL);
CREATE INDEX ON orders (user_id);
INSERT INTO users SELECT i, 'user' || i || '@example.com', 'User ' || i, now() FROM generate_series(1, 20000) i;
INSERT INTO orders SELECT i, (i - 1) / 10 + 1, (i % 1000) / 10.0, CASE WHEN i % 3 = 0 THEN 'paid' ELSE 'open' END,
	timestamp '2024-01-01' + i * interval '1 minute' FROM generate_series(1, 200000) i;
ANALYZE users; ANALYZE orders;
`

const benchSchema = `version: 1
table: users
primary_key: id
fields:
	- long: id
	- keyword: email
		transforms: [lowercase]
	- text: name
	- timestamp: created
	- has_many: orders
		table: orders
		foreign_key: user_id
		primary_key: id
		order_by: [{column: placed, direction: desc}]
		fields:
			- long: id
			- decimal: total
			- keyword: status
			- timestamp: placed
	- count: order_count
		table: orders
		foreign_key: user_id
	- sum: paid_total
		table: orders
		column: total
		value_type: decimal
		foreign_key: user_id
		filters: [{column: status, op: eq, value: paid}]
`

// BenchmarkBuild builds users with 10 orders each and 2 aggregates, in
// batches, reporting documents per second.
func BenchmarkBuild(b *testing.B) {
	pool := database(b, benchDDL)
	benchBuild(b, pool, index(b, pool, benchSchema), benchUsers)
}

const belongsToUsers = 5_000

// belongsToDDL mirrors the shape of bench/schemas/users.schema.yml: 5 orders
// per user, 4 items per order, each item's product and its category.
const belongsToDDL = `
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL, total numeric(10,2) NOT NULL);
CREATE INDEX ON orders (user_id);
CREATE TABLE order_items (id bigint PRIMARY KEY, order_id bigint NOT NULL, product_id bigint, quantity int NOT NULL);
CREATE INDEX ON order_items (order_id);
CREATE TABLE categories (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE products (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL, category_id bigint);
INSERT INTO users SELECT i, 'user' || i || '@example.com' FROM generate_series(1, 5000) i;
INSERT INTO orders SELECT i, (i - 1) / 5 + 1, (i % 1000) / 10.0 FROM generate_series(1, 25000) i;
INSERT INTO order_items SELECT i, (i - 1) / 4 + 1, i % 1000 + 1, i % 7 + 1 FROM generate_series(1, 100000) i;
INSERT INTO categories SELECT i, 'category ' || i FROM generate_series(1, 20) i;
INSERT INTO products SELECT i, 'product ' || i, (i % 500) / 10.0, i % 20 + 1 FROM generate_series(1, 1000) i;
ANALYZE users; ANALYZE orders; ANALYZE order_items; ANALYZE categories; ANALYZE products;
`

const belongsToSchema = `version: 1
table: users
primary_key: id
fields:
	- long: id
	- keyword: email
	- has_many: orders
		table: orders
		foreign_key: user_id
		primary_key: id
		order_by: [{column: id}]
		fields:
			- long: id
			- decimal: total
			- has_many: items
				table: order_items
				foreign_key: order_id
				primary_key: id
				order_by: [{column: id}]
				fields:
					- long: id
					- integer: quantity
					- belongs_to: product
						table: products
						column: product_id
						primary_key: id
						fields:
							- long: id
							- text: name
							- decimal: price
							- belongs_to: category
								table: categories
								column: category_id
								primary_key: id
								fields:
									- keyword: name
`

// BenchmarkBuildBelongsTo builds users whose items each read a product and
// its category, the belongs_to lookups that dominate the benchmark schema.
func BenchmarkBuildBelongsTo(b *testing.B) {
	pool := database(b, belongsToDDL)
	benchBuild(b, pool, index(b, pool, belongsToSchema), belongsToUsers)
}

// benchBuild builds the documents of keys 1..users in batches, reporting
// documents per second.
func benchBuild(b *testing.B, pool *pgxpool.Pool, ix *sqlbuild.Index, users int) {
	keys := make([]string, users)
	for i := range keys {
		keys[i] = strconv.Itoa(i + 1)
	}
	ctx := context.Background()
	for _, batch := range []int{100, 500} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			built := 0
			for i := 0; b.Loop(); i++ {
				start := i * batch % users
				docs, err := ix.Build(ctx, pool, keys[start:start+batch])
				if err != nil {
					b.Fatal(err)
				}
				if len(docs) != batch || docs[0].Body == nil {
					b.Fatalf("built %d documents", len(docs))
				}
				built += len(docs)
			}
			b.ReportMetric(float64(built)/b.Elapsed().Seconds(), "docs/s")
		})
	}
	b.Run("batch=500/parallel", func(b *testing.B) {
		const batch = 500
		var built int64
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				start := i * batch % users
				i++
				if _, err := ix.Build(ctx, pool, keys[start:start+batch]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		built = int64(b.N) * batch
		b.ReportMetric(float64(built)/b.Elapsed().Seconds(), "docs/s")
	})
}
