package sqlbuild_test

import (
	"context"
	"strconv"
	"testing"
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
	ix := index(b, pool, benchSchema)
	keys := make([]string, benchUsers)
	for i := range keys {
		keys[i] = strconv.Itoa(i + 1)
	}
	ctx := context.Background()
	for _, batch := range []int{100, 500} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			built := 0
			for i := 0; b.Loop(); i++ {
				start := i * batch % benchUsers
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
				start := i * batch % benchUsers
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
