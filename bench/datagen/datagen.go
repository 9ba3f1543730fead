// Package datagen makes the benchmark's data set and its live workload.
//
// For N users it makes N profiles (has_one), 5 orders per user with 4 items
// per order (has_many, two levels), a fixed catalogue of products and
// categories the items point at (belongs_to, two levels), and about three
// tags per user through a junction table (many_to_many). Every value is a
// function of the seed and the row's position: the same seed gives the same
// rows, whichever order the tables are loaded in.
package datagen

import (
	"context"
	"fmt"
	"iter"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Shape of the data set per user and the fixed catalogue sizes.
const (
	OrdersPerUser = 5
	ItemsPerOrder = 4
	TagsPerUser   = 3
	Categories    = 40
	Products      = 10_000
	Tags          = 100
	DefaultSeed   = 20240601
	DefaultUsers  = 1_000_000
	QuickUsers    = 50_000
)

// DDL creates the tables without secondary indexes or constraints; Load adds
// those after the rows are in, which is much faster than maintaining them
// row by row.
const DDL = `
CREATE TABLE categories (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE products (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL, category_id bigint NOT NULL);
CREATE TABLE tags (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL, country text NOT NULL,
	score integer NOT NULL, probe bigint NOT NULL DEFAULT 0, created_at timestamptz NOT NULL);
CREATE TABLE profiles (id bigint PRIMARY KEY, user_id bigint NOT NULL, bio text, city text, birthday date,
	last_seen_at timestamptz);
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL,
	created_at timestamptz NOT NULL);
CREATE TABLE order_items (id bigint PRIMARY KEY, order_id bigint NOT NULL, product_id bigint NOT NULL,
	quantity integer NOT NULL, unit_price numeric(10,2) NOT NULL);
CREATE TABLE user_tags (user_id bigint NOT NULL, tag_id bigint NOT NULL, PRIMARY KEY (user_id, tag_id));
`

// PostLoad adds what the joins need to be fast, and the foreign keys: PGSync
// reads relationships from them, and they document the shape.
const PostLoad = `
CREATE UNIQUE INDEX profiles_user_id ON profiles (user_id);
CREATE INDEX orders_user_id ON orders (user_id);
CREATE INDEX order_items_order_id ON order_items (order_id);
CREATE INDEX order_items_product_id ON order_items (product_id);
CREATE INDEX products_category_id ON products (category_id);
CREATE INDEX user_tags_tag_id ON user_tags (tag_id);
ALTER TABLE products ADD FOREIGN KEY (category_id) REFERENCES categories;
ALTER TABLE profiles ADD FOREIGN KEY (user_id) REFERENCES users;
ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users;
ALTER TABLE order_items ADD FOREIGN KEY (order_id) REFERENCES orders;
ALTER TABLE order_items ADD FOREIGN KEY (product_id) REFERENCES products;
ALTER TABLE user_tags ADD FOREIGN KEY (user_id) REFERENCES users;
ALTER TABLE user_tags ADD FOREIGN KEY (tag_id) REFERENCES tags;
ANALYZE;
`

// Gen makes the rows of one data set.
type Gen struct {
	Users int
	Seed  uint64
}

// Table is one table's rows, in primary-key order.
type Table struct {
	Name    string
	Columns []string
	Rows    iter.Seq[[]any]
	Count   int64
}

// Tables lists every table of the data set, catalogue first.
func (g Gen) Tables() []Table {
	n := int64(g.Users)
	return []Table{
		{"categories", []string{"id", "name"}, g.categories, Categories},
		{"products", []string{"id", "name", "price", "category_id"}, g.products, Products},
		{"tags", []string{"id", "name"}, g.tags, Tags},
		{"users", []string{"id", "email", "name", "country", "score", "probe", "created_at"}, g.users, n},
		{"profiles", []string{"id", "user_id", "bio", "city", "birthday"}, g.profiles, n},
		{"orders", []string{"id", "user_id", "status", "total", "created_at"}, g.orders, n * OrdersPerUser},
		{"order_items", []string{"id", "order_id", "product_id", "quantity", "unit_price"}, g.items, n * OrdersPerUser * ItemsPerOrder},
		{"user_tags", []string{"user_id", "tag_id"}, g.userTags, n * TagsPerUser},
	}
}

// rng is the table's own generator: tables never share a stream, so each
// is reproducible on its own.
func (g Gen) rng(table string) *rand.Rand {
	var salt uint64 = 1469598103934665603
	for _, c := range []byte(table) {
		salt = (salt ^ uint64(c)) * 1099511628211
	}
	return rand.New(rand.NewPCG(g.Seed, salt))
}

var (
	words = strings.Fields(`alpine amber arctic autumn basalt birch bright cedar cobalt coral crimson
		dawn delta ember falcon fern frost garnet glacier granite harbor hazel indigo iron jade juniper
		lagoon lunar maple marble meadow mint nimbus north oak ocean onyx orchid pebble pine prairie
		quartz raven river saffron sage shadow silver slate solar spruce storm summit tidal timber
		topaz tundra umber valley velvet willow winter zephyr`)
	firstNames = strings.Fields(`Ada Alan Barbara Claude Dennis Edsger Frances Grace Hedy Ivan John
		Katherine Linus Margaret Niklaus Ole Radia Sophie Tim Ursula Vint Whitfield Xavier Yukihiro Zuse`)
	lastNames = strings.Fields(`Lovelace Turing Liskov Shannon Ritchie Dijkstra Allen Hopper Lamarr
		Sutherland Backus Johnson Torvalds Hamilton Wirth Dahl Perlman Wilson Berners Franz Cerf Diffie`)
	countries = strings.Fields(`IT DE FR ES PT NL BE AT CH PL SE NO DK FI IE GB US CA BR JP`)
	cities    = strings.Fields(`Milano Torino Roma Berlin Paris Madrid Lisboa Amsterdam Wien Zurich
		Warszawa Stockholm Oslo Dublin London Boston Toronto Osaka Napoli Bologna`)
	// Statuses are what the live workload cycles orders through.
	Statuses = []string{"new", "paid", "shipped", "delivered", "returned"}
)

var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func pick(r *rand.Rand, list []string) string { return list[r.IntN(len(list))] }

func phrase(r *rand.Rand, n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = pick(r, words)
	}
	return strings.Join(parts, " ")
}

// Cents is an exact numeric value with two decimals.
func Cents(c int64) pgtype.Numeric {
	return pgtype.Numeric{Int: big.NewInt(c), Exp: -2, Valid: true}
}

func (g Gen) categories(yield func([]any) bool) {
	r := g.rng("categories")
	for id := int64(1); id <= Categories; id++ {
		if !yield([]any{id, phrase(r, 2)}) {
			return
		}
	}
}

func (g Gen) products(yield func([]any) bool) {
	r := g.rng("products")
	for id := int64(1); id <= Products; id++ {
		row := []any{id, phrase(r, 3), Cents(int64(100 + r.IntN(50_000))), int64(1 + r.IntN(Categories))}
		if !yield(row) {
			return
		}
	}
}

func (g Gen) tags(yield func([]any) bool) {
	r := g.rng("tags")
	for id := int64(1); id <= Tags; id++ {
		if !yield([]any{id, pick(r, words) + "-" + strconv.FormatInt(id, 10)}) {
			return
		}
	}
}

func (g Gen) users(yield func([]any) bool) {
	r := g.rng("users")
	for id := int64(1); id <= int64(g.Users); id++ {
		name := pick(r, firstNames) + " " + pick(r, lastNames)
		created := epoch.Add(time.Duration(r.Int64N(4*365*24*3600)) * time.Second)
		row := []any{id, "user" + strconv.FormatInt(id, 10) + "@example.com", name, pick(r, countries),
			int32(r.IntN(1000)), int64(0), created}
		if !yield(row) {
			return
		}
	}
}

func (g Gen) profiles(yield func([]any) bool) {
	r := g.rng("profiles")
	for id := int64(1); id <= int64(g.Users); id++ {
		birthday := time.Date(1950+r.IntN(55), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
		if !yield([]any{id, id, phrase(r, 8), pick(r, cities), birthday}) {
			return
		}
	}
}

func (g Gen) orders(yield func([]any) bool) {
	r := g.rng("orders")
	for user := int64(1); user <= int64(g.Users); user++ {
		for k := int64(0); k < OrdersPerUser; k++ {
			id := (user-1)*OrdersPerUser + k + 1
			created := epoch.Add(time.Duration(r.Int64N(4*365*24*3600)) * time.Second)
			row := []any{id, user, pick(r, Statuses), Cents(int64(500 + r.IntN(200_000))), created}
			if !yield(row) {
				return
			}
		}
	}
}

func (g Gen) items(yield func([]any) bool) {
	r := g.rng("order_items")
	orders := int64(g.Users) * OrdersPerUser
	for order := int64(1); order <= orders; order++ {
		for k := int64(0); k < ItemsPerOrder; k++ {
			id := (order-1)*ItemsPerOrder + k + 1
			row := []any{id, order, int64(1 + r.IntN(Products)), int32(1 + r.IntN(9)), Cents(int64(100 + r.IntN(50_000)))}
			if !yield(row) {
				return
			}
		}
	}
}

func (g Gen) userTags(yield func([]any) bool) {
	r := g.rng("user_tags")
	for user := int64(1); user <= int64(g.Users); user++ {
		// TagsPerUser distinct tags: a start and a stride coprime with Tags.
		start, stride := r.IntN(Tags), 1+2*r.IntN(10)
		if stride%5 == 0 {
			stride += 2
		}
		tags := make([]int64, 0, TagsPerUser)
		for k := 0; k < TagsPerUser; k++ {
			tags = append(tags, int64((start+k*stride)%Tags+1))
		}
		for _, t := range sorted(tags) {
			if !yield([]any{user, t}) {
				return
			}
		}
	}
}

func sorted(s []int64) []int64 {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

// LoadStats says how long loading took.
type LoadStats struct {
	Rows     int64         `json:"rows"`
	Copy     time.Duration `json:"copy_ns"`
	PostLoad time.Duration `json:"post_load_ns"`
}

// Load creates the tables in an empty database and fills them with COPY,
// two tables at a time (the machines have two cores), then adds the
// indexes and foreign keys and analyzes.
func (g Gen) Load(ctx context.Context, pool *pgxpool.Pool, progress func(table string, rows int64)) (LoadStats, error) {
	var st LoadStats
	if _, err := pool.Exec(ctx, DDL); err != nil {
		return st, fmt.Errorf("creating tables: %w", err)
	}
	start := time.Now()
	tables := g.Tables()
	work := make(chan Table)
	type result struct {
		rows int64
		err  error
	}
	results := make(chan result, len(tables))
	for range 2 {
		go func() {
			for t := range work {
				n, err := copyTable(ctx, pool, t)
				if err == nil && progress != nil {
					progress(t.Name, n)
				}
				results <- result{n, err}
			}
		}()
	}
	// Biggest first, so the two loaders finish together.
	order := []int{6, 5, 3, 4, 7, 1, 0, 2}
	go func() {
		defer close(work)
		for _, i := range order {
			select {
			case work <- tables[i]:
			case <-ctx.Done():
				return
			}
		}
	}()
	var firstErr error
	for range tables {
		r := <-results
		st.Rows += r.rows
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
	}
	if firstErr != nil {
		return st, firstErr
	}
	st.Copy = time.Since(start)
	start = time.Now()
	if _, err := pool.Exec(ctx, PostLoad); err != nil {
		return st, fmt.Errorf("indexing and analyzing: %w", err)
	}
	st.PostLoad = time.Since(start)
	return st, nil
}

func copyTable(ctx context.Context, pool *pgxpool.Pool, t Table) (int64, error) {
	next, stop := iter.Pull(t.Rows)
	defer stop()
	n, err := pool.CopyFrom(ctx, pgx.Identifier{t.Name}, t.Columns, pgx.CopyFromFunc(func() ([]any, error) {
		row, ok := next()
		if !ok {
			return nil, nil
		}
		return row, nil
	}))
	if err != nil {
		return n, fmt.Errorf("copying %s: %w", t.Name, err)
	}
	if n != t.Count {
		return n, fmt.Errorf("copying %s: %d rows, expected %d", t.Name, n, t.Count)
	}
	return n, nil
}
