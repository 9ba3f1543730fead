package scaffold_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/internal/design/demodb"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/check"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/scaffold"
	"github.com/flusso/flusso/pkg/schema"
)

func pool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestJunctions: a table is a junction when it only links two tables; a
// payload column, a third key or a composite key makes it a table of its own.
func TestJunctions(t *testing.T) {
	url := testenv.Postgres(t)
	conn := testenv.Conn(t, url)
	_, err := conn.Exec(context.Background(), `
		CREATE TABLE a (id int PRIMARY KEY);
		CREATE TABLE b (id int PRIMARY KEY);
		CREATE TABLE c (id int PRIMARY KEY);
		CREATE TABLE plain (a_id int NOT NULL REFERENCES a, b_id int NOT NULL REFERENCES b, PRIMARY KEY (a_id, b_id));
		CREATE TABLE surrogate (id bigserial PRIMARY KEY, a_id int REFERENCES a, b_id int REFERENCES b, created_at timestamptz DEFAULT now());
		CREATE TABLE self (a_id int REFERENCES a, other_id int REFERENCES a);
		CREATE TABLE payload (a_id int REFERENCES a, b_id int REFERENCES b, quantity int);
		CREATE TABLE three (a_id int REFERENCES a, b_id int REFERENCES b, c_id int REFERENCES c);
		CREATE TABLE one (a_id int REFERENCES a);
		CREATE TABLE pair (x int, y int, PRIMARY KEY (x, y));
		CREATE TABLE composite (x int, y int, a_id int REFERENCES a, FOREIGN KEY (x, y) REFERENCES pair);`)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := scaffold.Read(context.Background(), pool(t, url))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		table    string
		junction bool
	}{
		{"plain", true}, {"surrogate", true}, {"self", true},
		{"payload", false}, {"three", false}, {"one", false}, {"composite", false}, {"a", false},
	} {
		tb := cat.Table("public", tc.table)
		if tb == nil {
			t.Fatalf("table %s not in the catalog", tc.table)
		}
		if tb.Junction != tc.junction {
			t.Errorf("%s: junction = %v, want %v", tc.table, tb.Junction, tc.junction)
		}
	}
	// a reaches b through plain and surrogate, and itself through self
	// both ways round.
	var m2m []string
	for _, r := range cat.Relations(cat.Table("public", "a")) {
		if r.Kind == schema.ManyToMany {
			m2m = append(m2m, r.Through.Table+":"+r.Through.LeftKey+">"+r.Through.RightKey+":"+r.Table)
		}
	}
	slices.Sort(m2m)
	want := []string{"plain:a_id>b_id:b", "self:a_id>other_id:a", "self:other_id>a_id:a", "surrogate:a_id>b_id:b"}
	if !slices.Equal(m2m, want) {
		t.Errorf("many_to_many of a = %v, want %v", m2m, want)
	}
}

// TestCatalogOfDemo reads the demo shop: types, nullability, keys and the
// joins the keys allow.
func TestCatalogOfDemo(t *testing.T) {
	cat, err := scaffold.Read(context.Background(), pool(t, demodb.Database(t)))
	if err != nil {
		t.Fatal(err)
	}
	users := cat.Table("public", "users")
	for _, tc := range []struct {
		table, column, typ string
		nullable           bool
		kind               schema.Kind
	}{
		{"users", "id", "integer", false, schema.Integer},
		{"users", "email", "text", false, schema.Text},
		{"users", "deleted_at", "timestamp with time zone", true, schema.Timestamp},
		{"products", "price", "numeric(10,2)", false, schema.Decimal},
		{"profiles", "birthday", "date", true, schema.Date},
	} {
		c := cat.Table("public", tc.table).Column(tc.column)
		if c == nil || c.Type != tc.typ || c.Nullable != tc.nullable || c.Kind != tc.kind {
			t.Errorf("%s.%s = %+v, want type %s nullable %v kind %s", tc.table, tc.column, c, tc.typ, tc.nullable, tc.kind)
		}
	}
	if !slices.Equal(users.PrimaryKey, []string{"id"}) {
		t.Errorf("users primary key = %v", users.PrimaryKey)
	}
	var got []string
	for _, r := range cat.Relations(users) {
		got = append(got, string(r.Kind)+" "+r.Name+" "+r.Table)
	}
	slices.Sort(got)
	want := []string{"has_many orders orders", "has_one profile profiles", "many_to_many tags tags"}
	if !slices.Equal(got, want) {
		t.Errorf("relations of users = %v, want %v", got, want)
	}
	items := cat.Relations(cat.Table("public", "order_items"))
	if len(items) != 2 || items[0].Kind != schema.BelongsTo || items[0].Column != "order_id" || items[1].Name != "product" {
		t.Errorf("relations of order_items = %+v", items)
	}
	for _, name := range []string{"user_tags", "product_tags"} {
		if !cat.Table("public", name).Junction {
			t.Errorf("%s is not detected as a junction", name)
		}
	}
	if _, err := cat.Find("public", "user"); err == nil || !strings.Contains(err.Error(), `did you mean "users"?`) {
		t.Errorf("Find(user) = %v, want a did-you-mean users", err)
	}
}

// TestScaffoldLoadsAndChecksClean: the starting schema of every table of
// the demo, at every depth, loads and passes `flusso check`'s schema checks.
func TestScaffoldLoadsAndChecksClean(t *testing.T) {
	db := pool(t, demodb.Database(t))
	cat, err := scaffold.Read(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, tb := range cat.Tables {
		for depth := range 3 {
			doc, err := cat.Index(tb, depth)
			if err != nil {
				t.Fatal(err)
			}
			text, err := scaffold.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join("schemas", tb.Name+".schema.yml")
			ix, err := schema.Parse(file, text)
			if err != nil {
				t.Fatalf("%s depth %d does not load: %v\n%s", tb.Name, depth, err, text)
			}
			r, err := check.Run(context.Background(), db, []config.Index{{Name: tb.Name, Schema: ix}}, check.Options{Publication: "flusso", ManagePublication: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range r.Findings {
				if f.Scope == check.ScopeSchema {
					t.Errorf("%s depth %d: %s %s\n%s", tb.Name, depth, f.Severity, f.Message, text)
				}
			}
			checked++
		}
	}
	if checked < 27 {
		t.Fatalf("checked %d schemas, want every table at 3 depths", checked)
	}
}

// TestScaffoldShape pins the starting schema of users: soft delete from
// deleted_at, required where NOT NULL, the joins at depth 1 with small
// maps on one line.
func TestScaffoldShape(t *testing.T) {
	cat, err := scaffold.Read(context.Background(), pool(t, demodb.Database(t)))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := cat.Index(cat.Table("public", "users"), 1)
	if err != nil {
		t.Fatal(err)
	}
	text, err := scaffold.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"version: 1\ntable: users\nprimary_key: id\nsoft_delete: {column: deleted_at}\nfields:\n  - integer: id\n  - text: email\n    required: true\n",
		"  - has_many: orders\n    table: orders\n    foreign_key: user_id\n    primary_key: id\n    fields:\n      - integer: id\n",
		"    through: {table: user_tags, left_key: user_id, right_key: tag_id}\n",
		"  - has_one: profile\n",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("scaffold of users lacks\n%s\ngot\n%s", want, text)
		}
	}
	if strings.Contains(string(text), "deleted_at\n") || strings.Contains(string(text), "- timestamp: deleted_at") {
		t.Errorf("the soft delete marker is also a field:\n%s", text)
	}
	if _, err := cat.Index(cat.Table("public", "users"), -1); err == nil {
		t.Error("a negative depth is accepted")
	}
}
