// Package meter holds the counters a stage records where its events happen
// (a document built, quarantined, a batch flushed). The wiring creates them
// and hands them to the stages through their Config; /status and the
// metrics read the same ones, so the two cannot disagree. It depends on
// nothing, so stages need not know who reads.
package meter

import (
	"sync"
	"sync/atomic"
)

// Counter counts events by label (an index, a sink). The zero value is
// ready; a nil Counter records nothing, so a stage may hold one
// unconditionally.
type Counter struct{ m sync.Map } // label → *atomic.Uint64

// Add counts n events of label.
func (c *Counter) Add(label string, n int) {
	if c == nil {
		return
	}
	v, _ := c.m.LoadOrStore(label, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(uint64(n))
}

// Snapshot reads every label's count.
func (c *Counter) Snapshot() map[string]uint64 {
	out := map[string]uint64{}
	if c == nil {
		return out
	}
	c.m.Range(func(k, v any) bool { out[k.(string)] = v.(*atomic.Uint64).Load(); return true })
	return out
}

// Gauge keeps the latest value by label. The zero value is ready; a nil
// Gauge records nothing.
type Gauge struct{ m sync.Map } // label → *atomic.Int64

// Set records v as label's latest value.
func (g *Gauge) Set(label string, v int64) {
	if g == nil {
		return
	}
	p, _ := g.m.LoadOrStore(label, new(atomic.Int64))
	p.(*atomic.Int64).Store(v)
}

// Snapshot reads every label's latest value.
func (g *Gauge) Snapshot() map[string]int64 {
	out := map[string]int64{}
	if g == nil {
		return out
	}
	g.m.Range(func(k, v any) bool { out[k.(string)] = v.(*atomic.Int64).Load(); return true })
	return out
}
