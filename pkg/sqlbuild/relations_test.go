package sqlbuild_test

import (
	"testing"
)

// shopDDL has no foreign key constraints so that tests may delete any row.
const shopDDL = `
CREATE TABLE companies (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE users (id int PRIMARY KEY, email text, company_id int, deleted boolean NOT NULL DEFAULT false,
	deleted_at timestamptz, status text NOT NULL DEFAULT 'active', manager_id int);
CREATE TABLE profiles (id int PRIMARY KEY, user_id int, headline text, updated int);
CREATE TABLE orders (id int PRIMARY KEY, user_id int, total numeric, status text, placed date);
CREATE TABLE items (id int PRIMARY KEY, order_id int, product_id int, qty int);
CREATE TABLE products (id int PRIMARY KEY, name text, price numeric);
CREATE TABLE tags (id int PRIMARY KEY, label text);
CREATE TABLE user_tags (user_id int, tag_id int, PRIMARY KEY (user_id, tag_id));

INSERT INTO companies VALUES (1, 'Acme'), (2, 'Globex');
INSERT INTO users (id, email, company_id, manager_id) VALUES (1, 'ada@x', 1, NULL), (2, 'alan@x', NULL, 1), (3, 'grace@x', 2, 1);
INSERT INTO profiles VALUES (10, 1, 'old', 1), (11, 1, 'new', 2);
INSERT INTO orders VALUES (100, 1, 19.99, 'paid', '2024-01-10'), (101, 1, 5.00, 'pending', '2024-02-10'),
	(102, 1, 100.00, 'paid', '2024-03-10'), (200, 3, 7.5, 'paid', '2024-01-20');
INSERT INTO items VALUES (1000, 100, 500, 2), (1001, 100, 501, 1), (1002, 102, 500, 5);
INSERT INTO products VALUES (500, 'pen', 1.5), (501, 'ink', 3);
INSERT INTO tags VALUES (1, 'red'), (2, 'green'), (3, 'blue');
INSERT INTO user_tags VALUES (1, 1), (1, 3), (3, 2);
`

// shopSchema folds every relation kind into users.
const shopSchema = `version: 1
table: users
primary_key: id
fields:
	- integer: id
	- keyword: email
	- belongs_to: company
		column: company_id
		table: companies
		primary_key: id
		fields:
			- keyword: name
	- has_one: profile
		table: profiles
		foreign_key: user_id
		primary_key: id
		order_by: [{column: updated, direction: desc}]
		fields:
			- text: headline
	- has_many: orders
		table: orders
		foreign_key: user_id
		primary_key: id
		order_by: [{column: total, direction: desc}]
		fields:
			- integer: id
			- decimal: total
			- has_many: items
				table: items
				foreign_key: order_id
				primary_key: id
				fields:
					- integer: qty
					- belongs_to: product
						column: product_id
						table: products
						primary_key: id
						fields:
							- keyword: name
	- has_many: cheapest_paid
		table: orders
		foreign_key: user_id
		primary_key: id
		filters: [{column: status, op: eq, value: paid}]
		order_by: [{column: total, direction: asc}]
		limit: 1
		fields:
			- integer: id
	- many_to_many: tags
		table: tags
		primary_key: id
		through: {table: user_tags, left_key: user_id, right_key: tag_id}
		order_by: [{column: label, direction: asc}]
		fields:
			- keyword: label
	- has_many: reports
		table: users
		foreign_key: manager_id
		primary_key: id
		fields:
			- keyword: email
	- count: order_count
		table: orders
		foreign_key: user_id
	- sum: paid_total
		table: orders
		column: total
		value_type: decimal
		foreign_key: user_id
		filters: [{column: status, op: eq, value: paid}]
	- avg: avg_paid
		table: orders
		column: total
		foreign_key: user_id
		filters: [{column: status, op: eq, value: paid}]
	- min: first_order
		table: orders
		column: placed
		value_type: date
		foreign_key: user_id
	- max: biggest
		table: orders
		column: total
		value_type: double
		foreign_key: user_id
	- ids: order_ids
		table: orders
		foreign_key: user_id
		element_type: long
	- ids: tag_ids
		table: tags
		through: {table: user_tags, left_key: user_id, right_key: tag_id}
		element_type: keyword
	- ids: blue_tag_ids
		table: tags
		through: {table: user_tags, left_key: user_id, right_key: tag_id}
		element_type: long
		filters: [{column: label, op: eq, value: blue}]
	- count: tag_count
		table: tags
		through: {table: user_tags, left_key: user_id, right_key: tag_id}
`

func TestRelations(t *testing.T) {
	pool := database(t, shopDDL)
	ix := index(t, pool, shopSchema)
	got := build(t, pool, ix, "1", "2", "3", "4")

	assertDoc(t, got, "1", `{
		"id": 1, "email": "ada@x",
		"company": {"name": "Acme"},
		"profile": {"headline": "new"},
		"orders": [
			{"id": 102, "total": 100.00, "items": [{"qty": 5, "product": {"name": "pen"}}]},
			{"id": 100, "total": 19.99, "items": [{"qty": 2, "product": {"name": "pen"}}, {"qty": 1, "product": {"name": "ink"}}]},
			{"id": 101, "total": 5.00, "items": []}
		],
		"cheapest_paid": [{"id": 100}],
		"tags": [{"label": "blue"}, {"label": "red"}],
		"reports": [{"email": "alan@x"}, {"email": "grace@x"}],
		"order_count": 3, "paid_total": 119.99, "avg_paid": 59.995,
		"first_order": "2024-01-10", "biggest": 100.00,
		"order_ids": [100, 101, 102], "tag_ids": ["1", "3"], "blue_tag_ids": [3], "tag_count": 2
	}`)
	assertDoc(t, got, "2", `{
		"id": 2, "email": "alan@x", "company": null, "profile": null,
		"orders": [], "cheapest_paid": [], "tags": [], "reports": [],
		"order_count": 0, "paid_total": null, "avg_paid": null, "first_order": null, "biggest": null,
		"order_ids": [], "tag_ids": [], "blue_tag_ids": [], "tag_count": 0
	}`)
	assertDoc(t, got, "3", `{
		"id": 3, "email": "grace@x", "company": {"name": "Globex"}, "profile": null,
		"orders": [{"id": 200, "total": 7.5, "items": []}], "cheapest_paid": [{"id": 200}],
		"tags": [{"label": "green"}], "reports": [],
		"order_count": 1, "paid_total": 7.5, "avg_paid": 7.5, "first_order": "2024-01-20", "biggest": 7.5,
		"order_ids": [200], "tag_ids": ["2"], "blue_tag_ids": [], "tag_count": 1
	}`)
	assertDoc(t, got, "4", `null`)

	// A deleted belongs_to target renders as null.
	exec(t, pool, "DELETE FROM products WHERE id = 501; DELETE FROM companies WHERE id = 1")
	got = build(t, pool, ix, "1")
	assertDoc(t, got, "1", `{
		"id": 1, "email": "ada@x",
		"company": null,
		"profile": {"headline": "new"},
		"orders": [
			{"id": 102, "total": 100.00, "items": [{"qty": 5, "product": {"name": "pen"}}]},
			{"id": 100, "total": 19.99, "items": [{"qty": 2, "product": {"name": "pen"}}, {"qty": 1, "product": null}]},
			{"id": 101, "total": 5.00, "items": []}
		],
		"cheapest_paid": [{"id": 100}],
		"tags": [{"label": "blue"}, {"label": "red"}],
		"reports": [{"email": "alan@x"}, {"email": "grace@x"}],
		"order_count": 3, "paid_total": 119.99, "avg_paid": 59.995,
		"first_order": "2024-01-10", "biggest": 100.00,
		"order_ids": [100, 101, 102], "tag_ids": ["1", "3"], "blue_tag_ids": [3], "tag_count": 2
	}`)
}

// TestAggregateTypes checks avg as a double and value_type conversions.
func TestAggregateTypes(t *testing.T) {
	pool := database(t, `
		CREATE TABLE boxes (id int PRIMARY KEY);
		CREATE TABLE parts (id bigint PRIMARY KEY, box_id int, weight int, seen timestamptz);
		INSERT INTO boxes VALUES (1);
		INSERT INTO parts VALUES (7, 1, 1, '2024-01-01 00:00:00+00'), (8, 1, 2, '2024-06-01 12:30:00+02');`)
	ix := index(t, pool, `version: 1
table: boxes
primary_key: id
fields:
	- avg: mean
		table: parts
		column: weight
		foreign_key: box_id
	- sum: total
		table: parts
		column: weight
		value_type: integer
		foreign_key: box_id
	- max: last_seen
		table: parts
		column: seen
		value_type: timestamp
		foreign_key: box_id
	- ids: parts
		table: parts
		foreign_key: box_id
		element_type: keyword
`)
	got := build(t, pool, ix, "1")
	assertDoc(t, got, "1", `{"mean": 1.5, "total": 3, "last_seen": "2024-06-01T10:30:00Z", "parts": ["7", "8"]}`)
}

func TestRootFiltersAndSoftDelete(t *testing.T) {
	pool := database(t, shopDDL+`
		UPDATE users SET deleted = true WHERE id = 2;
		UPDATE users SET deleted_at = now() WHERE id IN (1, 3);
		UPDATE users SET status = 'archived' WHERE id = 3;`)
	tests := []struct {
		name   string
		schema string
		live   []string // keys with a document; the others of 1..4 are tombstones
	}{
		{"soft delete boolean column", "soft_delete: {column: deleted}", []string{"1", "3"}},
		{"soft delete timestamp column", "soft_delete: {column: deleted_at}", []string{"2"}},
		{"soft delete field with when", "soft_delete:\n\tfield: gone\n\twhen: [{column: status, op: eq, value: archived}]", []string{"1", "2"}},
		{"root filter", "filters: [{column: email, op: like, value: 'a%'}]", []string{"1", "2"}},
		{"root filter raw and soft delete", "soft_delete: {column: deleted}\nfilters: [{raw: \"company_id IS NOT NULL\"}]", []string{"1", "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := index(t, pool, "version: 1\ntable: users\nprimary_key: id\n"+tt.schema+`
fields:
	- integer: id
	- timestamp: gone
		column: deleted_at
		required: false
`)
			got := build(t, pool, ix, "1", "2", "3", "4")
			for _, k := range []string{"1", "2", "3", "4"} {
				live := false
				for _, l := range tt.live {
					live = live || l == k
				}
				if (got[k] != "null") != live {
					t.Errorf("document %s = %s, want live=%v", k, got[k], live)
				}
			}
		})
	}
}

func TestFilters(t *testing.T) {
	pool := database(t, shopDDL)
	// User 1's orders: 100 paid 19.99 2024-01-10, 101 pending 5.00 2024-02-10,
	// 102 paid 100.00 2024-03-10.
	filters := []struct {
		name   string
		filter string
		count  int
	}{
		{"eq", "{column: status, op: eq, value: paid}", 2},
		{"neq", "{column: status, op: neq, value: paid}", 1},
		{"lt numeric", "{column: total, op: lt, value: 20}", 2},
		{"lte", "{column: total, op: lte, value: 19.99}", 2},
		{"gt numeric not text", "{column: total, op: gt, value: 9}", 2},
		{"gte date", "{column: placed, op: gte, value: 2024-02-10}", 2},
		{"like", "{column: status, op: like, value: 'pa%'}", 2},
		{"ilike", "{column: status, op: ilike, value: 'PA%'}", 2},
		{"like number", "{column: total, op: like, value: '1%'}", 2},
		{"in", "{column: status, op: in, value: [paid, shipped]}", 2},
		{"not in", "{column: id, op: not_in, value: [100, 101]}", 1},
		{"between", "{column: placed, op: between, value: [2024-01-01, 2024-02-28]}", 2},
		{"is null", "{column: status, op: is_null}", 0},
		{"is not null", "{column: status, op: is_not_null}", 3},
		{"raw", "{raw: \"status = 'pending' OR total > 50\"}", 2},
		{"injection stays a value", "{column: status, op: eq, value: \"paid' OR true --\"}", 0},
	}
	var fields string
	for i, f := range filters {
		fields += "\t- count: c" + string(rune('a'+i)) + "\n\t\ttable: orders\n\t\tforeign_key: user_id\n\t\tfilters: [" + f.filter + "]\n"
	}
	ix := index(t, pool, "version: 1\ntable: users\nprimary_key: id\nfields:\n"+fields)
	docs := build(t, pool, ix, "1")
	want := "{"
	for i, f := range filters {
		if i > 0 {
			want += ","
		}
		want += `"c` + string(rune('a'+i)) + `":` + itoa(f.count)
	}
	want += "}"
	if w := canonical(t, want); docs["1"] != w {
		for i, f := range filters {
			t.Logf("c%c = %s", 'a'+i, f.name)
		}
		t.Errorf("got  %s\nwant %s", docs["1"], w)
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
