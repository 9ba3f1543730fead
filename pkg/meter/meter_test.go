package meter

import (
	"maps"
	"sync"
	"testing"
)

func TestCounter(t *testing.T) {
	var c Counter
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Add("users", 1)
			}
			c.Add("orders", 2)
		})
	}
	wg.Wait()
	if got, want := c.Snapshot(), map[string]uint64{"users": 800, "orders": 16}; !maps.Equal(got, want) {
		t.Errorf("Snapshot = %v, want %v", got, want)
	}
}

func TestGaugeKeepsTheLatest(t *testing.T) {
	var g Gauge
	g.Set("primary", 3)
	g.Set("primary", 2)
	g.Set("audit", 5)
	if got, want := g.Snapshot(), map[string]int64{"primary": 2, "audit": 5}; !maps.Equal(got, want) {
		t.Errorf("Snapshot = %v, want %v", got, want)
	}
}

func TestNilRecordsNothing(t *testing.T) {
	var c *Counter
	var g *Gauge
	c.Add("users", 1) // must not panic
	g.Set("primary", 1)
	if len(c.Snapshot()) != 0 || len(g.Snapshot()) != 0 {
		t.Error("a nil meter reads values")
	}
}
