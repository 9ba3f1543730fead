package datagen

import (
	"fmt"
	"reflect"
	"testing"
)

// rows collects up to limit rows of every table.
func rows(g Gen, limit int) map[string][]string {
	out := map[string][]string{}
	for _, t := range g.Tables() {
		for row := range t.Rows {
			out[t.Name] = append(out[t.Name], fmt.Sprint(row...))
			if len(out[t.Name]) == limit {
				break
			}
		}
	}
	return out
}

func TestSameSeedSameRows(t *testing.T) {
	a, b := rows(Gen{Users: 200, Seed: 7}, 1000), rows(Gen{Users: 200, Seed: 7}, 1000)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two generators with one seed made different rows")
	}
	c := rows(Gen{Users: 200, Seed: 8}, 1000)
	if reflect.DeepEqual(a["users"], c["users"]) || reflect.DeepEqual(a["order_items"], c["order_items"]) {
		t.Fatal("another seed made the same rows")
	}
}

// A table's rows do not depend on the data set's size beyond its own rows:
// the quick run's users are the full run's first users.
func TestPrefixStable(t *testing.T) {
	small, large := rows(Gen{Users: 50, Seed: 3}, 0), rows(Gen{Users: 500, Seed: 3}, 0)
	for name, s := range small {
		if !reflect.DeepEqual(s, large[name][:len(s)]) {
			t.Errorf("%s: the first %d rows differ between 50 and 500 users", name, len(s))
		}
	}
}

func TestCountsAndKeys(t *testing.T) {
	g := Gen{Users: 120, Seed: 1}
	for _, tb := range g.Tables() {
		var n int64
		seen := map[string]bool{}
		for row := range tb.Rows {
			n++
			if len(row) != len(tb.Columns) {
				t.Fatalf("%s: row of %d values for %d columns", tb.Name, len(row), len(tb.Columns))
			}
			key := fmt.Sprint(row[0])
			if tb.Name == "user_tags" {
				key = fmt.Sprint(row[0], "/", row[1])
			}
			if seen[key] {
				t.Fatalf("%s: duplicate key %s", tb.Name, key)
			}
			seen[key] = true
		}
		if n != tb.Count {
			t.Errorf("%s: %d rows, Count says %d", tb.Name, n, tb.Count)
		}
	}
}

func TestWorkloadDeterministic(t *testing.T) {
	g := Gen{Users: 1000, Seed: 5}
	a, b, c := g.Workload(1), g.Workload(1), g.Workload(2)
	tables := map[string]int{}
	same := true
	for range 2000 {
		x, y, z := a.Next(), b.Next(), c.Next()
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("one stream diverged: %v vs %v", x, y)
		}
		same = same && reflect.DeepEqual(x, z)
		tables[x.Table]++
		if id := x.Args[0].(int64); id < 1 || id > 1000*OrdersPerUser*ItemsPerOrder {
			t.Fatalf("key %d out of range in %v", id, x)
		}
	}
	if same {
		t.Fatal("two streams made the same changes")
	}
	for _, name := range []string{"users", "profiles", "orders", "order_items"} {
		if tables[name] < 200 {
			t.Errorf("only %d of 2000 changes hit %s", tables[name], name)
		}
	}
}

func TestMixWorkload(t *testing.T) {
	g := Gen{Users: 1000, Seed: 5}
	a, b := g.MixWorkload(1), g.MixWorkload(1)
	kinds := map[string]int{}
	const n = 4000
	for range n {
		x, y := a.Next(), b.Next()
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("one stream diverged: %v vs %v", x, y)
		}
		kinds[x.Kind]++
	}
	for kind, want := range map[string]int{KindUnread: n / 2, KindRewrite: n / 4, "": n / 4} {
		if got := kinds[kind]; got < want*9/10 || got > want*11/10 {
			t.Errorf("%d of %d changes are of kind %q, want about %d", got, n, kind, want)
		}
	}
}
