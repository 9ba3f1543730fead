// Package check compares a deployment's index schemas with the live
// database: every column a schema reads must exist with a type its field
// accepts, a field declared required should read a NOT NULL column, and
// the publication and replica identities must cover what capture needs.
//
// Problems that would break the pipeline are errors; doubtful ones are
// warnings. `flusso check` fails only on errors.
package check

import (
	"context"
	"fmt"
	"slices"

	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/publication"
	"github.com/flusso/flusso/pkg/schema"
)

// Severity says whether a finding fails the check.
type Severity string

// Severities.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Scope is what a finding is about.
type Scope string

// Scopes.
const (
	ScopeDatabase    Scope = "database"    // the server's settings
	ScopeSchema      Scope = "schema"      // a column an index schema reads
	ScopePublication Scope = "publication" // the publication and replica identities
)

// Finding is one disagreement between a schema and the database.
type Finding struct {
	Severity Severity `json:"severity"`
	Scope    Scope    `json:"scope"`
	Index    string   `json:"index,omitempty"`
	File     string   `json:"file,omitempty"`
	Line     int      `json:"line,omitempty"`
	Field    string   `json:"field,omitempty"` // document path, dot separated
	Table    string   `json:"table,omitempty"` // schema.table
	Column   string   `json:"column,omitempty"`
	Message  string   `json:"message"`
}

// Publication is the coverage of the publication and replica identities.
type Publication struct {
	Name    string `json:"name"`
	Managed bool   `json:"managed"`
	Exists  bool   `json:"exists"`
	// AllTables is set for a FOR ALL TABLES publication.
	AllTables bool `json:"all_tables"`
	// Missing are tables the publication lacks.
	Missing []string `json:"missing"`
	// Identity are tables whose REPLICA IDENTITY is not FULL though their
	// old rows are needed to find the documents of a delete or move.
	Identity []string `json:"identity"`
	// SQL closes the gap, statement by statement.
	SQL []string `json:"sql"`
}

// Report is the outcome of Run.
type Report struct {
	WALLevel    string      `json:"wal_level"`
	Indexes     []string    `json:"indexes"`
	Findings    []Finding   `json:"findings"`
	Publication Publication `json:"publication"`
	Errors      int         `json:"errors"`
	Warnings    int         `json:"warnings"`
}

// OK reports whether nothing fails the check.
func (r *Report) OK() bool { return r.Errors == 0 }

func (r *Report) add(f Finding) {
	r.Findings = append(r.Findings, f)
	if f.Severity == Error {
		r.Errors++
	} else {
		r.Warnings++
	}
}

// Options name the publication and say who manages it.
type Options struct {
	Publication string
	// ManagePublication: flusso creates or extends the publication and sets
	// replica identities itself at start, when the role may. Gaps are then
	// warnings; otherwise capture would miss changes, and they are errors.
	ManagePublication bool
}

// Run checks every index that has a schema against the database q is
// connected to. The publication must cover the enabled indexes.
func Run(ctx context.Context, q publication.Querier, indexes []config.Index, opts Options) (*Report, error) {
	r := &Report{Indexes: []string{}, Findings: []Finding{}}
	if err := q.QueryRow(ctx, "SHOW wal_level").Scan(&r.WALLevel); err != nil {
		return nil, fmt.Errorf("reading wal_level: %w", err)
	}
	if r.WALLevel != "logical" {
		r.add(Finding{Severity: Error, Scope: ScopeDatabase, Message: fmt.Sprintf(
			"wal_level is %s: logical replication needs wal_level = logical (ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)", r.WALLevel)})
	}

	var schemas []string
	var enabled []*schema.Index
	for _, ix := range indexes {
		if ix.Schema == nil {
			continue
		}
		if !slices.Contains(schemas, ix.Schema.Schema) {
			schemas = append(schemas, ix.Schema.Schema)
		}
		if ix.Enabled {
			enabled = append(enabled, ix.Schema)
		}
	}
	cat, err := loadCatalog(ctx, q, schemas)
	if err != nil {
		return nil, err
	}
	for _, ix := range indexes {
		if ix.Schema == nil {
			continue
		}
		r.Indexes = append(r.Indexes, ix.Name)
		w := &walker{cat: cat, report: r, index: ix.Name, file: ix.Schema.File, pgSchema: ix.Schema.Schema, missing: map[string]bool{}}
		w.root(ix.Schema)
	}

	if err := r.checkPublication(ctx, q, enabled, opts); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Report) checkPublication(ctx context.Context, q publication.Querier, enabled []*schema.Index, opts Options) error {
	plan, err := publication.Check(ctx, q, opts.Publication, publication.NeedOf(enabled))
	if err != nil {
		return fmt.Errorf("checking publication %s: %w", opts.Publication, err)
	}
	p := Publication{
		Name: opts.Publication, Managed: opts.ManagePublication, Exists: plan.Exists, AllTables: plan.AllTables,
		Missing: names(plan.Missing), Identity: names(plan.Identity), SQL: plan.Statements(),
	}
	if p.SQL == nil {
		p.SQL = []string{}
	}
	r.Publication = p
	sev, who := Error, "capture would miss their changes"
	if opts.ManagePublication {
		sev, who = Warning, "flusso runs the SQL below at start when its role may (owner of the tables, CREATE on the database); otherwise run it as such a role"
	}
	if len(plan.Missing) > 0 {
		what := fmt.Sprintf("publication %s does not cover %d table(s) the indexes read", opts.Publication, len(plan.Missing))
		if !plan.Exists {
			what = fmt.Sprintf("publication %s does not exist", opts.Publication)
		}
		r.add(Finding{Severity: sev, Scope: ScopePublication, Message: what + ": " + who})
	}
	if len(plan.Identity) > 0 {
		r.add(Finding{Severity: sev, Scope: ScopePublication, Message: fmt.Sprintf(
			"%d table(s) read through relations lack REPLICA IDENTITY FULL, so a delete or move there cannot reach its documents: %s",
			len(plan.Identity), who)})
	}
	return nil
}

func names(ts []schema.TableRef) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Schema + "." + t.Name
	}
	return out
}
