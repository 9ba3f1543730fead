package check

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/schema"
)

const baseSQL = `
CREATE TYPE mood AS ENUM ('low', 'high');
CREATE DOMAIN email AS text NOT NULL;
CREATE TABLE users (
	id int8 PRIMARY KEY, email email, name varchar(40), age int4, score float8, mood mood,
	created timestamptz NOT NULL, deleted bool, lat float8, lon float8, props jsonb, price numeric(10,2), code text
);
CREATE TABLE orders (id int4 PRIMARY KEY, user_id int8 NOT NULL, total numeric NOT NULL, status text);
CREATE TABLE tags (id int4 PRIMARY KEY, label text);
CREATE TABLE user_tags (user_id int8 NOT NULL, tag_id int4 NOT NULL);
CREATE PUBLICATION flusso FOR TABLE users, orders, tags, user_tags;
ALTER TABLE users REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;
ALTER TABLE tags REPLICA IDENTITY FULL;
ALTER TABLE user_tags REPLICA IDENTITY FULL;
`

// goodSchema reads every kind of column and relation correctly.
const goodSchema = `
version: 1
table: users
primary_key: id
soft_delete: { column: deleted }
filters: [{ column: age, op: gte, value: 18 }]
fields:
  - long: id
  - keyword: email
    required: true
  - text: name
    required: true
    default: anonymous
  - long: age
  - double: score
  - enum: mood
  - timestamp: created
    required: true
  - geo: location
    lat: lat
    lon: lon
  - map: props
    values: keyword
  - custom: price
    postgres: [numeric]
    opensearch: scaled_float
    options: { scaling_factor: 100 }
  - object: extra
    fields:
      - identifier: code
  - has_many: orders
    table: orders
    foreign_key: user_id
    primary_key: id
    order_by: [{ column: total, direction: desc }]
    fields:
      - decimal: total
        required: true
      - keyword: status
  - many_to_many: tags
    table: tags
    primary_key: id
    through: { table: user_tags, left_key: user_id, right_key: tag_id }
    fields:
      - keyword: label
  - count: order_count
    table: orders
    foreign_key: user_id
  - sum: spent
    table: orders
    foreign_key: user_id
    column: total
    value_type: double
  - max: biggest
    table: orders
    foreign_key: user_id
    column: total
    value_type: decimal
`

const ordersSchema = `
version: 1
table: orders
primary_key: id
fields:
  - integer: id
  - belongs_to: user
    column: user_id
    table: users
    primary_key: id
    required: true
    fields:
      - keyword: email
`

type want struct {
	sev   Severity
	field string
	text  string
}

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		sql      string // run after baseSQL
		schemas  map[string]string
		opts     Options
		want     []want
		wantSQL  []string
		wantFail bool
	}{
		{name: "everything matches", schemas: map[string]string{"users": goodSchema, "orders": ordersSchema}},
		{name: "missing column", schemas: map[string]string{"users": `
version: 1
table: users
fields:
  - keyword: nickname
`}, want: []want{{Error, "nickname", "keyword: column public.users.nickname does not exist"}}, wantFail: true},
		{name: "wrong types", schemas: map[string]string{"users": `
version: 1
table: users
fields:
  - integer: email
  - short: age
  - float: score
  - keyword: mood
  - boolean: created
  - custom: price
    postgres: [money, "double precision"]
    opensearch: double
`}, want: []want{
			{Error, "email", "integer reads public.users.email of type email; integer needs int2, int4"},
			{Error, "age", "short reads public.users.age of type integer; short needs int2"},
			{Error, "score", "float reads public.users.score of type double precision"},
			{Error, "mood", "keyword reads public.users.mood of type mood"},
			{Error, "created", "boolean reads public.users.created of type timestamp with time zone; boolean needs bool"},
			{Error, "price", "custom reads public.users.price of type numeric(10,2); custom needs money, double precision"},
		}, wantFail: true},
		{name: "required on nullable", schemas: map[string]string{"users": `
version: 1
table: users
fields:
  - keyword: name
    required: true
  - keyword: code
    required: true
    default: none
  - keyword: email
    required: true
`}, want: []want{{Warning, "name", "declared required, but public.users.name is nullable"}}},
		{name: "required belongs_to on nullable key", sql: `ALTER TABLE orders ALTER user_id DROP NOT NULL`,
			schemas: map[string]string{"orders": ordersSchema},
			want:    []want{{Warning, "user", "declared required, but public.orders.user_id is nullable"}}},
		{name: "unknown table", schemas: map[string]string{"users": `
version: 1
table: users
primary_key: id
fields:
  - has_many: payments
    table: payments
    foreign_key: user_id
    primary_key: id
    fields:
      - double: amount
  - count: payment_count
    table: payments
    foreign_key: user_id
`}, want: []want{{Error, "payments", "table public.payments does not exist"}}, wantFail: true,
			wantSQL: nil},
		{name: "unknown root table", schemas: map[string]string{"people": `
version: 1
table: people
fields:
  - keyword: name
  - keyword: email
`}, want: []want{{Error, "", "table public.people does not exist"}}, wantFail: true},
		{name: "relation keys", schemas: map[string]string{"users": `
version: 1
table: users
primary_key: id
fields:
  - has_many: orders
    table: orders
    foreign_key: status
    primary_key: idx
    order_by: [{ column: placed, direction: asc }]
    filters: [{ column: state, op: eq, value: open }]
    fields:
      - keyword: status
  - sum: spent
    table: orders
    foreign_key: user_id
    column: status
    value_type: double
`}, want: []want{
			{Error, "orders", "primary_key: column public.orders.idx does not exist"},
			{Error, "orders", "public.orders.status (text) is joined to public.users.id (bigint): the types cannot be compared"},
			{Error, "orders", "filter: column public.orders.state does not exist"},
			{Error, "orders", "order_by: column public.orders.placed does not exist"},
			{Error, "spent", "sum over public.orders.status of type text; a number is needed"},
		}, wantFail: true},
		{name: "publication missing, not managed", schemas: map[string]string{"orders": ordersSchema},
			opts:    Options{Publication: "other"},
			want:    []want{{Error, "", "publication other does not exist: capture would miss their changes"}},
			wantSQL: []string{`CREATE PUBLICATION "other" FOR TABLE "public"."orders", "public"."users"`}, wantFail: true},
		{name: "publication missing, managed", schemas: map[string]string{"orders": ordersSchema},
			opts:    Options{Publication: "other", ManagePublication: true},
			want:    []want{{Warning, "", "publication other does not exist: flusso runs the SQL below at start"}},
			wantSQL: []string{`CREATE PUBLICATION "other" FOR TABLE "public"."orders", "public"."users"`}},
		{name: "publication lacks a table", sql: `ALTER PUBLICATION flusso DROP TABLE users`,
			schemas: map[string]string{"orders": ordersSchema},
			want:    []want{{Error, "", "publication flusso does not cover 1 table(s) the indexes read"}},
			wantSQL: []string{`ALTER PUBLICATION "flusso" ADD TABLE "public"."users"`}, wantFail: true},
		{name: "identity not full", sql: `ALTER TABLE orders REPLICA IDENTITY DEFAULT`,
			schemas: map[string]string{"users": goodSchema},
			want:    []want{{Error, "", "1 table(s) read through relations lack REPLICA IDENTITY FULL"}},
			wantSQL: []string{`ALTER TABLE "public"."orders" REPLICA IDENTITY FULL`}, wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := testenv.Postgres(t)
			conn := testenv.Conn(t, url)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := conn.Exec(ctx, baseSQL+";"+tt.sql); err != nil {
				t.Fatalf("setting up the database: %v", err)
			}
			if tt.opts.Publication == "" {
				tt.opts.Publication = "flusso"
			}
			r, err := Run(ctx, conn, indexes(t, tt.schemas), tt.opts)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(r.Findings) != len(tt.want) {
				t.Errorf("%d findings, want %d", len(r.Findings), len(tt.want))
			}
			for _, w := range tt.want {
				if !found(r, w) {
					t.Errorf("no %s finding on field %q with %q", w.sev, w.field, w.text)
				}
			}
			if strings.Join(r.Publication.SQL, ";") != strings.Join(tt.wantSQL, ";") {
				t.Errorf("SQL %q, want %q", r.Publication.SQL, tt.wantSQL)
			}
			if r.OK() == tt.wantFail {
				t.Errorf("OK() = %v with %d errors", r.OK(), r.Errors)
			}
			if t.Failed() {
				var b bytes.Buffer
				r.Print(&b) //nolint:errcheck // a buffer
				t.Logf("report:\n%s", &b)
			}
		})
	}
}

func indexes(t *testing.T, schemas map[string]string) []config.Index {
	t.Helper()
	var out []config.Index
	for _, name := range []string{"users", "orders", "people"} {
		src, ok := schemas[name]
		if !ok {
			continue
		}
		ix, err := schema.Parse(name+".schema.yml", []byte(src))
		if err != nil {
			t.Fatalf("parsing the %s schema: %v", name, err)
		}
		out = append(out, config.Index{Name: name, Enabled: true, Schema: ix})
	}
	return out
}

func found(r *Report, w want) bool {
	for _, f := range r.Findings {
		if f.Severity == w.sev && f.Field == w.field && strings.Contains(f.Message, w.text) {
			return true
		}
	}
	return false
}

func TestReportOutput(t *testing.T) {
	url := testenv.Postgres(t)
	conn := testenv.Conn(t, url)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, baseSQL+`; ALTER TABLE orders REPLICA IDENTITY DEFAULT`); err != nil {
		t.Fatal(err)
	}
	r, err := Run(ctx, conn, indexes(t, map[string]string{"users": `
version: 1
table: users
primary_key: id
fields:
  - keyword: nick
  - keyword: name
    required: true
  - has_many: orders
    table: orders
    foreign_key: user_id
    primary_key: id
    fields:
      - keyword: status
`, "orders": ordersSchema}), Options{Publication: "flusso", ManagePublication: true})
	if err != nil {
		t.Fatal(err)
	}

	var human bytes.Buffer
	if err := r.Print(&human); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"index users (users.schema.yml):\n",
		"  error   users.schema.yml:6 field nick: keyword: column public.users.nick does not exist\n",
		"  warning users.schema.yml:7 field name: declared required, but public.users.name is nullable",
		"index orders: every column matches\n",
		"warning 1 table(s) read through relations lack REPLICA IDENTITY FULL",
		"  REPLICA IDENTITY not FULL: public.orders\n",
		"  SQL:\n    ALTER TABLE \"public\".\"orders\" REPLICA IDENTITY FULL;\n",
		"1 error, 2 warnings\n",
	} {
		if !strings.Contains(human.String(), want) {
			t.Errorf("human report lacks %q:\n%s", want, &human)
		}
	}

	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		WALLevel string `json:"wal_level"`
		Findings []struct {
			Severity, Scope, Index, File, Field, Table, Column, Message string
			Line                                                        int
		} `json:"findings"`
		Publication struct {
			Name     string   `json:"name"`
			Managed  bool     `json:"managed"`
			Identity []string `json:"identity"`
			SQL      []string `json:"sql"`
		} `json:"publication"`
		Errors   int `json:"errors"`
		Warnings int `json:"warnings"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.WALLevel != "logical" || doc.Errors != 1 || doc.Warnings != 2 || len(doc.Findings) != 3 {
		t.Errorf("JSON report: %s", b)
	}
	first := doc.Findings[0]
	if first.Severity != "error" || first.Scope != "schema" || first.Index != "users" || first.Field != "nick" ||
		first.Table != "public.users" || first.Column != "nick" || first.Line != 6 {
		t.Errorf("first finding: %+v", first)
	}
	if !doc.Publication.Managed || doc.Publication.Identity[0] != "public.orders" || len(doc.Publication.SQL) != 1 {
		t.Errorf("publication: %+v", doc.Publication)
	}
}
