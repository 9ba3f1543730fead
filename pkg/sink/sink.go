// Package sink defines where built documents land. A writer owns one Sink;
// the OpenSearch and stdout implementations live in the sub-packages.
package sink

import (
	"context"
	"encoding/json"

	"github.com/flusso/flusso/pkg/flow"
)

// Op is what a write does to one document.
type Op int

// Operations.
const (
	Upsert Op = iota + 1
	Delete
)

// Doc is one document operation. Version orders builds of the same ID: a sink
// that can (OpenSearch, with external versions) never lets a lower version
// replace a higher one, and treats an equal version as already applied.
type Doc struct {
	Index   string // logical index name
	ID      string
	Op      Op
	Body    json.RawMessage // the document, for Upsert
	Version uint64
	// Generation targets one concrete generation; 0 means every live one
	// (the current generation and, during a reindex, the next).
	Generation uint32
}

// Rejection is an item the sink refused (mapping conflict, bad value). The
// rest of the batch was applied.
type Rejection struct {
	Doc    Doc
	Reason string
}

// State is a sink's view of one logical index.
type State struct {
	Seeded bool
	// Generation is the generation readers see; Next is the one being built
	// by a reindex or a schema change (0 when none).
	Generation uint32
	Next       uint32
	Docs       int64 // documents in the current generation, when known
}

// Sink is one destination.
type Sink interface {
	// Name is the sink's name from flusso.toml.
	Name() string
	// Ensure creates what the index needs (concrete generation, aliases,
	// mapping) when missing, never modifying an existing index, and returns
	// the index's state.
	Ensure(ctx context.Context, ix flow.Index) (State, error)
	// State reads the state of an index Ensure prepared, changing nothing
	// (status pages ask it while writers work).
	State(ctx context.Context, index string) (State, error)
	// Write applies docs. An error is a flush-wide failure (nothing can be
	// assumed applied); item-level refusals come back as rejections.
	Write(ctx context.Context, docs []Doc) ([]Rejection, error)
	// Purge removes every document of the index (its root table was
	// truncated by the commit with this version): documents of an older
	// version go, newer ones (written from rows inserted after the
	// truncate) stay.
	Purge(ctx context.Context, index string, version uint64) error
	// MarkSeeded records that generation gen of the index holds a complete
	// backfill, switches it to steady-state settings and points the aliases
	// at it, retiring the generation it replaces.
	MarkSeeded(ctx context.Context, index string, gen uint32) error
	// BeginReindex starts building the next generation of the index behind
	// the same hash alias and returns its number. Live writes go to both
	// generations until MarkSeeded(next).
	BeginReindex(ctx context.Context, index string) (uint32, error)
	// Refresh makes everything written so far searchable (the pipeline has
	// caught up).
	Refresh(ctx context.Context) error
	Close() error
}
