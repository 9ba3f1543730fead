package datagen

import (
	"math/rand/v2"
)

// Change is one row update of the live workload.
type Change struct {
	Table string
	SQL   string
	Args  []any
	// Kind tells the realistic mix's changes apart: KindUnread,
	// KindRewrite, or "" for the others.
	Kind string
}

// The live mix: a quarter root updates, the rest child updates one and two
// levels down (which the pipeline must resolve back to their user). Product
// and category updates are left out on purpose: one of them re-emits every
// user who ever bought the product, a fan-out that would measure the data
// set rather than the pipeline.
const (
	shareUsers    = 25
	shareProfiles = 15
	shareOrders   = 35
	// the rest (25) are order items
)

// The realistic mix (MixWorkload): besides the changes above, updates that
// touch a column no index reads (profiles.last_seen_at, on a related table
// so that its old row tells the capture nothing it reads changed) and
// updates that rewrite a document to the content it has (a root column set
// to its own value: the root carries no old row, so the document is
// rebuilt, and comes out the same).
const (
	shareUnread  = 50
	shareRewrite = 25
)

// Kinds of the realistic mix's changes (Change.Kind).
const (
	KindUnread  = "unread"
	KindRewrite = "rewrite"
)

// Workload makes the live changes of one run, deterministically for a seed.
type Workload struct {
	users int64
	r     *rand.Rand
	n     int64
	mix   bool
}

// Workload starts the change stream of the data set; stream tells streams
// of one run apart.
func (g Gen) Workload(stream uint64) *Workload {
	return &Workload{users: int64(g.Users), r: rand.New(rand.NewPCG(g.Seed, 0x9e3779b97f4a7c15^stream))}
}

// MixWorkload is Workload's realistic mix: half of its changes touch only a
// column no index reads, a quarter rewrite a document to the same content,
// the rest are Workload's.
func (g Gen) MixWorkload(stream uint64) *Workload {
	w := g.Workload(stream)
	w.mix = true
	return w
}

// Next returns the next change.
func (w *Workload) Next() Change {
	w.n++
	user := 1 + w.r.Int64N(w.users)
	if w.mix {
		switch p := w.r.IntN(100); {
		case p < shareUnread:
			return Change{"profiles", "UPDATE profiles SET last_seen_at = now() WHERE id = $1", []any{user}, KindUnread}
		case p < shareUnread+shareRewrite:
			return Change{"users", "UPDATE users SET name = name WHERE id = $1", []any{user}, KindRewrite}
		}
	}
	switch p := w.r.IntN(100); {
	case p < shareUsers:
		return Change{"users", "UPDATE users SET score = score + 1 WHERE id = $1", []any{user}, ""}
	case p < shareUsers+shareProfiles:
		return Change{"profiles", "UPDATE profiles SET city = $2 WHERE id = $1", []any{user, pick(w.r, cities)}, ""}
	case p < shareUsers+shareProfiles+shareOrders:
		order := (user-1)*OrdersPerUser + 1 + w.r.Int64N(OrdersPerUser)
		return Change{"orders", "UPDATE orders SET status = $2 WHERE id = $1", []any{order, pick(w.r, Statuses)}, ""}
	default:
		order := (user-1)*OrdersPerUser + 1 + w.r.Int64N(OrdersPerUser)
		item := (order-1)*ItemsPerOrder + 1 + w.r.Int64N(ItemsPerOrder)
		return Change{"order_items", "UPDATE order_items SET quantity = $2 WHERE id = $1", []any{item, int32(1 + w.r.IntN(9))}, ""}
	}
}
