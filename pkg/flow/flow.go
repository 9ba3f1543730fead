// Package flow describes what the running pipeline keeps in sync: its
// enabled indexes, each with its schema, the hash that names it in the
// sinks, its compiled SQL and its on_error policy. Every stage and sink
// reads this one description.
package flow

import (
	"fmt"

	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// OnError is what the pipeline does with a document a build or a sink
// rejects (on_error in flusso.toml).
type OnError string

// The policies.
const (
	// Stop holds the pipeline at the rejected document until it is fixed.
	Stop OnError = "stop"
	// Skip quarantines the rejected document and goes on.
	Skip OnError = "skip"
)

// Index is one enabled index of the running pipeline.
type Index struct {
	Name   string        // logical name, without prefix
	Schema *schema.Index // the parsed schema
	Hash   string        // schema.Hash(Schema): names the index in the sinks
	// SQL is the compiled schema, for the stages that read Postgres; nil
	// until Compiled.
	SQL     *sqlbuild.Index
	OnError OnError
}

// New describes an index.
func New(name string, s *schema.Index, onError OnError) Index {
	return Index{Name: name, Schema: s, Hash: schema.Hash(s), OnError: onError}
}

// Compiled returns ix with SQL compiled afresh from its schema. Preparing
// the SQL reads the live catalog, and stages do that concurrently: each
// compiles its own.
func (ix Index) Compiled() (Index, error) {
	sql, err := sqlbuild.Compile(ix.Name, ix.Schema)
	if err != nil {
		return Index{}, fmt.Errorf("index %s: %w", ix.Name, err)
	}
	ix.SQL = sql
	return ix, nil
}
