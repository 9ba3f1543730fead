package sqlbuild_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/sqlbuild"
)

// row parses "col=value col=null ..." into a change image.
func row(s string) map[string]*string {
	m := map[string]*string{}
	for _, kv := range strings.Fields(s) {
		k, v, _ := strings.Cut(kv, "=")
		if v == "null" {
			m[k] = nil
			continue
		}
		m[k] = &v
	}
	return m
}

func ins(table, newRow string) sqlbuild.Change {
	return sqlbuild.Change{Schema: "public", Table: table, Op: sqlbuild.Insert, New: row(newRow)}
}

func upd(table, oldRow, newRow string) sqlbuild.Change {
	c := sqlbuild.Change{Schema: "public", Table: table, Op: sqlbuild.Update, New: row(newRow)}
	if oldRow != "" {
		c.Old = row(oldRow)
	}
	return c
}

func del(table, oldRow string) sqlbuild.Change {
	return sqlbuild.Change{Schema: "public", Table: table, Op: sqlbuild.Delete, Old: row(oldRow)}
}

func truncate(table string) sqlbuild.Change {
	return sqlbuild.Change{Schema: "public", Table: table, Op: sqlbuild.Truncate}
}

// counting counts the queries run through it.
type counting struct {
	q sqlbuild.Querier
	n atomic.Int32
}

func (c *counting) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.n.Add(1)
	return c.q.Query(ctx, sql, args...)
}

// TestAffected is the resolution matrix over the shop schema: users with a
// belongs_to company, a has_one profile, orders (read twice) with items
// pointing at products, tags through a junction, reports (users managed by
// the user: a self-reference) and aggregates by foreign key and through.
func TestAffected(t *testing.T) {
	pool := database(t, shopDDL)
	ix := index(t, pool, shopSchema)
	full := "id=3 email=grace@x company_id=2 deleted=f deleted_at=null status=active manager_id=1"

	tests := []struct {
		name    string
		changes []sqlbuild.Change
		want    []string
		all     bool
		queries int32 // run by Affected
	}{
		{"root insert", []sqlbuild.Change{ins("users", "id=4 email=a company_id=null manager_id=null")}, []string{"4"}, false, 0},
		{"root insert managed", []sqlbuild.Change{ins("users", "id=4 email=a company_id=null manager_id=1")}, []string{"1", "4"}, false, 0},
		{"root update", []sqlbuild.Change{upd("users", "id=2 email=a company_id=null manager_id=1", "id=2 email=b company_id=null manager_id=1")}, []string{"1", "2"}, false, 0},
		{"root update without the old image of a table also read as a child", []sqlbuild.Change{upd("users", "", "id=2 email=b company_id=null manager_id=1")}, nil, true, 0},
		{"root update changing the key", []sqlbuild.Change{upd("users", full, strings.Replace(full, "id=3", "id=5", 1))}, []string{"1", "3", "5"}, false, 0},
		{"root update changing the manager", []sqlbuild.Change{upd("users", full, strings.Replace(full, "manager_id=1", "manager_id=2", 1))}, []string{"1", "2", "3"}, false, 0},
		{"root delete", []sqlbuild.Change{del("users", full)}, []string{"1", "3"}, false, 0},
		{"root delete with the key only of a table also read as a child", []sqlbuild.Change{del("users", "id=3")}, nil, true, 0},
		{"root update unchanged TOAST", []sqlbuild.Change{upd("users", "", "id=2 company_id=null")}, []string{"1", "2"}, false, 1},

		{"has_one insert", []sqlbuild.Change{ins("profiles", "id=12 user_id=2 headline=h updated=1")}, []string{"2"}, false, 0},
		{"has_one moved", []sqlbuild.Change{upd("profiles", "id=10 user_id=1 headline=old updated=1", "id=10 user_id=3 headline=old updated=1")}, []string{"1", "3"}, false, 0},
		{"has_one delete", []sqlbuild.Change{del("profiles", "id=10 user_id=1 headline=old updated=1")}, []string{"1"}, false, 0},

		{"has_many insert", []sqlbuild.Change{ins("orders", "id=103 user_id=2 total=1 status=paid placed=null")}, []string{"2"}, false, 0},
		{"has_many moved", []sqlbuild.Change{upd("orders", "id=101 user_id=1 total=5 status=pending placed=null", "id=101 user_id=3 total=5 status=pending placed=null")}, []string{"1", "3"}, false, 0},
		{"has_many delete", []sqlbuild.Change{del("orders", "id=100 user_id=1 total=19.99 status=paid placed=2024-01-10")}, []string{"1"}, false, 0},
		{"has_many delete without the old foreign key", []sqlbuild.Change{del("orders", "id=100")}, nil, true, 0},
		{"has_many update unchanged TOAST foreign key", []sqlbuild.Change{upd("orders", "id=101 user_id=1 total=5", "id=101 total=6")}, []string{"1"}, false, 0},
		{"has_many update without foreign key nor old image", []sqlbuild.Change{upd("orders", "", "id=101 total=6")}, []string{"1"}, false, 1},
		{"has_many update without the old image", []sqlbuild.Change{upd("orders", "", "id=101 user_id=3 total=6")}, nil, true, 0},
		{"has_many foreign key set to null", []sqlbuild.Change{upd("orders", "id=101 user_id=1", "id=101 user_id=null")}, []string{"1"}, false, 0},

		{"nested insert", []sqlbuild.Change{ins("items", "id=1003 order_id=200 product_id=500 qty=1")}, []string{"3"}, false, 1},
		{"nested moved", []sqlbuild.Change{upd("items", "id=1002 order_id=102 product_id=500 qty=5", "id=1002 order_id=200 product_id=500 qty=5")}, []string{"1", "3"}, false, 1},
		{"nested delete", []sqlbuild.Change{del("items", "id=1002 order_id=102 product_id=500 qty=5")}, []string{"1"}, false, 1},
		{"nested under a missing parent", []sqlbuild.Change{ins("items", "id=1003 order_id=999 product_id=500 qty=1")}, []string{}, false, 1},

		{"belongs_to target update", []sqlbuild.Change{upd("companies", "id=2 name=Globex", "id=2 name=Initech")}, []string{"3"}, false, 1},
		{"belongs_to target delete", []sqlbuild.Change{del("companies", "id=1 name=Acme")}, []string{"1"}, false, 1},
		{"belongs_to four levels down", []sqlbuild.Change{upd("products", "id=500 name=pen price=1.5", "id=500 name=pen price=2")}, []string{"1"}, false, 3},
		{"belongs_to target delete four levels down", []sqlbuild.Change{del("products", "id=501 name=ink price=3")}, []string{"1"}, false, 3},
		{"belongs_to target nobody points at", []sqlbuild.Change{ins("products", "id=502 name=nib price=1")}, []string{}, false, 1},

		{"junction insert", []sqlbuild.Change{ins("user_tags", "user_id=2 tag_id=1")}, []string{"2"}, false, 0},
		{"junction delete", []sqlbuild.Change{del("user_tags", "user_id=1 tag_id=3")}, []string{"1"}, false, 0},
		{"many_to_many related update", []sqlbuild.Change{upd("tags", "id=2 label=green", "id=2 label=lime")}, []string{"3"}, false, 1},
		{"many_to_many related delete", []sqlbuild.Change{del("tags", "id=1 label=red")}, []string{"1"}, false, 1},

		{"related truncate", []sqlbuild.Change{truncate("items")}, nil, true, 0},
		{"root truncate of a self-referencing table", []sqlbuild.Change{truncate("users")}, nil, true, 0},
		{"unrelated table", []sqlbuild.Change{ins("audit", "id=1")}, []string{}, false, 0},
		{"other schema", []sqlbuild.Change{{Schema: "other", Table: "orders", Op: sqlbuild.Insert, New: row("id=1 user_id=1")}}, []string{}, false, 0},

		{"batch climbs each level once", []sqlbuild.Change{
			ins("items", "id=1003 order_id=200 product_id=500 qty=1"),
			ins("items", "id=1004 order_id=101 product_id=501 qty=1"),
			upd("products", "id=501 name=ink price=3", "id=501 name=ink price=4"),
			ins("user_tags", "user_id=2 tag_id=1"),
			ins("profiles", "id=12 user_id=2 headline=h updated=1"),
		}, []string{"1", "2", "3"}, false, 3},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &counting{q: pool}
			keys, all, err := ix.Affected(ctx, q, tt.changes)
			if err != nil {
				t.Fatalf("Affected: %v", err)
			}
			if all != tt.all {
				t.Fatalf("all = %v, want %v (keys %v)", all, tt.all, keys)
			}
			if !tt.all && !slices.Equal(keys, tt.want) && (len(keys) != 0 || len(tt.want) != 0) {
				t.Errorf("keys = %v, want %v", keys, tt.want)
			}
			if q.n.Load() != tt.queries {
				t.Errorf("%d queries, want %d", q.n.Load(), tt.queries)
			}
		})
	}
}

func TestReadsAndRootTruncated(t *testing.T) {
	pool := database(t, shopDDL)
	ix := index(t, pool, shopSchema)
	for _, table := range []string{"users", "companies", "profiles", "orders", "items", "products", "tags", "user_tags"} {
		if !ix.Reads("public", table) {
			t.Errorf("Reads(public, %s) = false", table)
		}
	}
	if ix.Reads("other", "users") || ix.Reads("public", "audit") {
		t.Error("Reads a table the index does not read")
	}
	if !ix.RootTruncated([]sqlbuild.Change{ins("orders", "id=1"), truncate("users")}) {
		t.Error("RootTruncated missed the truncate of users")
	}
	if ix.RootTruncated([]sqlbuild.Change{truncate("orders"), {Schema: "other", Table: "users", Op: sqlbuild.Truncate}}) {
		t.Error("RootTruncated reported another table")
	}

	// A root that no other relation reads needs only its key on delete.
	orders := index(t, pool, "version: 1\ntable: orders\nprimary_key: id\nfields:\n\t- integer: id\n")
	keys, all, err := orders.Affected(context.Background(), pool, []sqlbuild.Change{del("orders", "id=100"), truncate("users")})
	if err != nil || all || !slices.Equal(keys, []string{"100"}) {
		t.Errorf("Affected = %v, %v, %v; want [100]", keys, all, err)
	}
}

// TestAffectedKeyTypes checks that keys reached through a foreign key of
// another type come back in the primary key's text form.
func TestAffectedKeyTypes(t *testing.T) {
	pool := database(t, `
		CREATE TABLE accounts (id uuid PRIMARY KEY);
		CREATE TABLE notes (id bigint PRIMARY KEY, account text);
		INSERT INTO accounts VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
		INSERT INTO notes VALUES (1, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11');`)
	ix := index(t, pool, `version: 1
table: accounts
primary_key: id
fields:
	- uuid: id
	- has_many: notes
		table: notes
		foreign_key: account
		primary_key: id
		fields:
			- long: id
`)
	// A foreign key that is no key of the root names no document, also in a
	// transaction, which stays usable.
	changes := []sqlbuild.Change{
		ins("notes", "id=2 account=A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
		ins("notes", "id=3 account=junk"),
	}
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	want := []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}
	for _, q := range []sqlbuild.Querier{pool, tx, tx} {
		keys, _, err := ix.Affected(ctx, q, changes)
		if err != nil || !slices.Equal(keys, want) {
			t.Errorf("Affected = %v, %v; want %v", keys, err, want)
		}
	}
}
