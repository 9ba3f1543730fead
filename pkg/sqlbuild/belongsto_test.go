package sqlbuild_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flusso/flusso/pkg/sqlbuild"
)

// joinDDL gives orders 1..6, all in cart 1, one product each: present with
// its category (1), none (2), dangling (3), filtered out (4), present with a
// filtered out category (5), present with a dangling category (6).
const joinDDL = `
CREATE TABLE categories (id int PRIMARY KEY, name text, hidden boolean NOT NULL, rank text);
CREATE TABLE products (id int PRIMARY KEY, name text, category_id int, active boolean NOT NULL);
CREATE VIEW products_v AS SELECT * FROM products;
CREATE TABLE carts (id int PRIMARY KEY);
CREATE TABLE orders (id int PRIMARY KEY, cart_id int, product_id int);
CREATE TABLE cart_orders (cart_id int, order_id int, PRIMARY KEY (cart_id, order_id));
INSERT INTO categories VALUES (1, 'office', false, '1'), (2, 'secret', true, '2');
INSERT INTO products VALUES (10, 'pen', 1, true), (11, 'old pen', 1, false), (12, 'spy pen', 2, true), (13, 'odd pen', 77, true);
INSERT INTO carts SELECT generate_series(1, 6);
INSERT INTO orders VALUES (1, 1, 10), (2, 1, NULL), (3, 1, 99), (4, 1, 11), (5, 1, 12), (6, 1, 13);
INSERT INTO cart_orders SELECT 1, generate_series(1, 6);
`

// productField is a filtered belongs_to chain; table and filters are filled in.
const productField = `- belongs_to: product
	column: product_id
	table: %s
	primary_key: id
	filters: [%s]
	fields:
		- keyword: name
		- belongs_to: category
			column: category_id
			table: categories
			primary_key: id
			filters: [{column: hidden, op: eq, value: false}]
			fields:
				- keyword: name`

// product is productField on table with filter, each line indented.
func product(table, filter, indent string) string {
	return indent + strings.ReplaceAll(fmt.Sprintf(productField, table, filter), "\n", "\n"+indent)
}

// TestBelongsToJoin checks that a belongs_to on the related primary key is a
// LEFT JOIN in the query of the row it hangs off, at every kind of level
// (beside the LEFT JOIN of a grouped to-many or has_one table), and that it
// builds the documents the correlated subquery does.
func TestBelongsToJoin(t *testing.T) {
	pool := database(t, joinDDL)
	const active = "{column: active, op: eq, value: true}"
	// The product of each order, as the subquery renders it.
	products := []string{
		`{"id": 1, "product": {"name": "pen", "category": {"name": "office"}}}`,
		`{"id": 2, "product": null}`,
		`{"id": 3, "product": null}`,
		`{"id": 4, "product": null}`,
		`{"id": 5, "product": {"name": "spy pen", "category": null}}`,
		`{"id": 6, "product": {"name": "odd pen", "category": null}}`,
	}
	all := "[" + strings.Join(products, ",") + "]"
	orderFields := "\t\t- integer: id\n" + product("products", active, "\t\t")
	tests := []struct {
		name   string
		schema string
		joins  int               // LEFT JOINs in the build statement
		want   map[string]string // documents by key
	}{
		{
			name:   "root",
			schema: "table: orders\nprimary_key: id\nfields:\n\t- integer: id\n" + product("products", active, "\t"),
			joins:  2,
			want: map[string]string{"1": products[0], "2": products[1], "3": products[2],
				"4": products[3], "5": products[4], "6": products[5]},
		},
		{
			name: "has_many",
			schema: "table: carts\nprimary_key: id\nfields:\n\t- has_many: orders\n\t\ttable: orders\n\t\tforeign_key: cart_id\n" +
				"\t\tprimary_key: id\n\t\tfields:\n\t" + strings.ReplaceAll(orderFields, "\n", "\n\t"),
			joins: 3,
			want:  map[string]string{"1": `{"orders": ` + all + `}`, "2": `{"orders": []}`},
		},
		{
			name: "has_many with limit",
			schema: "table: carts\nprimary_key: id\nfields:\n\t- has_many: orders\n\t\ttable: orders\n\t\tforeign_key: cart_id\n" +
				"\t\tprimary_key: id\n\t\torder_by: [{column: id, direction: desc}]\n\t\tlimit: 3\n\t\tfields:\n\t" +
				strings.ReplaceAll(orderFields, "\n", "\n\t"),
			joins: 2,
			want:  map[string]string{"1": `{"orders": [` + products[5] + "," + products[4] + "," + products[3] + `]}`},
		},
		{
			name: "many_to_many",
			schema: "table: carts\nprimary_key: id\nfields:\n\t- many_to_many: orders\n\t\ttable: orders\n\t\tprimary_key: id\n" +
				"\t\tthrough: {table: cart_orders, left_key: cart_id, right_key: order_id}\n\t\tfields:\n\t" +
				strings.ReplaceAll(orderFields, "\n", "\n\t"),
			joins: 3,
			want:  map[string]string{"1": `{"orders": ` + all + `}`, "2": `{"orders": []}`},
		},
		{
			name: "has_one",
			schema: "table: carts\nprimary_key: id\nfields:\n\t- has_one: order\n\t\ttable: orders\n\t\tforeign_key: id\n" +
				"\t\tprimary_key: id\n\t\tfields:\n\t" + strings.ReplaceAll(orderFields, "\n", "\n\t"),
			joins: 3,
			want: map[string]string{"1": `{"order": ` + products[0] + `}`, "3": `{"order": ` + products[2] + `}`,
				"5": `{"order": ` + products[4] + `}`},
		},
		{
			// A view has no primary key: the product stays a subquery, its
			// category a join inside it.
			name:   "no primary key",
			schema: "table: orders\nprimary_key: id\nfields:\n\t- integer: id\n" + product("products_v", active, "\t"),
			joins:  1,
			want:   map[string]string{"1": products[0], "2": products[1], "4": products[3], "5": products[4]},
		},
		{
			// Raw SQL names columns unqualified: nothing is joined beside it.
			name:   "raw filter",
			schema: "table: orders\nprimary_key: id\nfields:\n\t- integer: id\n" + product("products", "{raw: active}", "\t"),
			joins:  0,
			want:   map[string]string{"1": products[0], "3": products[2], "4": products[3], "6": products[5]},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := index(t, pool, "version: 1\n"+tt.schema+"\n")
			if n := strings.Count(sqlbuild.BuildSQL(ix), " LEFT JOIN "); n != tt.joins {
				t.Errorf("%d LEFT JOINs, want %d in %s", n, tt.joins, sqlbuild.BuildSQL(ix))
			}
			var keys []string
			for k := range tt.want {
				keys = append(keys, k)
			}
			got := build(t, pool, ix, keys...)
			for k, w := range tt.want {
				assertDoc(t, got, k, w)
			}
		})
	}
}

// TestBelongsToJoinBadData checks that a value failing in a joined row is
// still found and named.
func TestBelongsToJoinBadData(t *testing.T) {
	pool := database(t, joinDDL+"UPDATE categories SET rank = 'first' WHERE id = 1;")
	ix := index(t, pool, `version: 1
table: orders
primary_key: id
fields:
	- belongs_to: product
		column: product_id
		table: products
		primary_key: id
		fields:
			- belongs_to: category
				column: category_id
				table: categories
				primary_key: id
				fields:
					- integer: rank
`)
	docs, err := ix.Build(context.Background(), pool, []string{"1", "5"})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	var derr *sqlbuild.DocError
	if !errors.As(docs[0].Err, &derr) || derr.Field != "product.category.rank" {
		t.Errorf("document 1: %+v, want an error on product.category.rank", docs[0])
	}
	if docs[1].Err != nil || string(docs[1].Body) != `{"product":{"category":{"rank":2}}}` {
		t.Errorf("document 5: %s, %v", docs[1].Body, docs[1].Err)
	}
}
