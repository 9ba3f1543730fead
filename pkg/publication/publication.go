// Package publication works out what the Postgres side of capture needs: a
// publication covering every table the indexes read, and REPLICA IDENTITY
// FULL on every table read as a relation (its old row image carries the
// foreign keys that lead from a deleted or moved row to its documents). The
// capture applies the plan; `flusso check` prints it.
package publication

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/flusso/flusso/pkg/schema"
)

// Need is what the indexes need from the database.
type Need struct {
	// Tables are all tables read, in a stable order.
	Tables []schema.TableRef
	// Full are the tables whose old row images must be complete.
	Full []schema.TableRef
}

// NeedOf derives the need of a set of index schemas: every table they read,
// and FULL identity for every table read other than as a root. A table that
// is a root in one index and a relation in another needs FULL too.
func NeedOf(indexes []*schema.Index) Need {
	all := map[schema.TableRef]bool{}
	full := map[schema.TableRef]bool{}
	for _, ix := range indexes {
		for i, t := range ix.Tables() {
			all[t] = true
			if i > 0 {
				full[t] = true
			}
		}
	}
	return Need{Tables: sorted(all), Full: sorted(full)}
}

func sorted(set map[schema.TableRef]bool) []schema.TableRef {
	out := make([]schema.TableRef, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Plan is the gap between the need and the live database.
type Plan struct {
	Publication string
	Exists      bool // the publication exists
	AllTables   bool // it is FOR ALL TABLES: nothing to add
	Missing     []schema.TableRef
	MissingRows []schema.TableRef // tables that do not exist at all
	Identity    []schema.TableRef // tables lacking REPLICA IDENTITY FULL
}

// Statements is the SQL that closes the gap, in order.
func (p Plan) Statements() []string {
	var out []string
	if len(p.Missing) > 0 && !p.AllTables {
		names := make([]string, len(p.Missing))
		for i, t := range p.Missing {
			names[i] = t.String()
		}
		verb := "ALTER PUBLICATION %s ADD TABLE %s"
		if !p.Exists {
			verb = "CREATE PUBLICATION %s FOR TABLE %s"
		}
		out = append(out, fmt.Sprintf(verb, schema.QuoteIdent(p.Publication), strings.Join(names, ", ")))
	}
	for _, t := range p.Identity {
		out = append(out, fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL", t))
	}
	return out
}

// Empty reports whether nothing needs doing.
func (p Plan) Empty() bool { return len(p.Statements()) == 0 }

// Querier runs queries; *pgx.Conn, pgx.Tx and *pgxpool.Pool satisfy it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Check compares the need with the database.
func Check(ctx context.Context, q Querier, name string, need Need) (Plan, error) {
	p := Plan{Publication: name}
	err := q.QueryRow(ctx, `SELECT puballtables FROM pg_publication WHERE pubname = $1`, name).Scan(&p.AllTables)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return p, fmt.Errorf("reading publication %s: %w", name, err)
	default:
		p.Exists = true
	}
	covered := map[schema.TableRef]bool{}
	if p.Exists {
		rows, err := q.Query(ctx, `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1`, name)
		if err != nil {
			return p, fmt.Errorf("reading tables of publication %s: %w", name, err)
		}
		for rows.Next() {
			var t schema.TableRef
			if err := rows.Scan(&t.Schema, &t.Name); err != nil {
				return p, fmt.Errorf("reading tables of publication %s: %w", name, err)
			}
			covered[t] = true
		}
		if err := rows.Err(); err != nil {
			return p, fmt.Errorf("reading tables of publication %s: %w", name, err)
		}
	}
	identity := map[schema.TableRef]string{}
	rows, err := q.Query(ctx, `SELECT n.nspname, c.relname, c.relreplident::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p')`)
	if err != nil {
		return p, fmt.Errorf("reading replica identities: %w", err)
	}
	for rows.Next() {
		var t schema.TableRef
		var ident string
		if err := rows.Scan(&t.Schema, &t.Name, &ident); err != nil {
			return p, fmt.Errorf("reading replica identities: %w", err)
		}
		identity[t] = ident
	}
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("reading replica identities: %w", err)
	}
	for _, t := range need.Tables {
		if _, ok := identity[t]; !ok {
			p.MissingRows = append(p.MissingRows, t)
			continue
		}
		if !covered[t] && !p.AllTables {
			p.Missing = append(p.Missing, t)
		}
	}
	for _, t := range need.Full {
		if ident, ok := identity[t]; ok && ident != "f" {
			p.Identity = append(p.Identity, t)
		}
	}
	return p, nil
}

// Apply runs the plan's statements in one transaction. A permission error
// is returned as *DeniedError so the caller can print the SQL and go on. A
// deadlock with the application's own transactions (ALTER TABLE takes the
// strongest lock) is retried a few times before it is an error.
func Apply(ctx context.Context, conn *pgx.Conn, p Plan) error {
	var err error
	for attempt := range 5 {
		if err = apply(ctx, conn, p); !isDeadlock(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	return err
}

func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40P01"
}

func apply(ctx context.Context, conn *pgx.Conn, p Plan) error {
	stmts := p.Statements()
	if len(stmts) == 0 {
		return nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("starting publication change: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit this is a no-op
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42501" {
				return &DeniedError{Statements: stmts, Cause: err}
			}
			return fmt.Errorf("running %q: %w", s, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing publication change: %w", err)
	}
	return nil
}

// DeniedError says the role may not change the publication or the tables.
type DeniedError struct {
	Statements []string
	Cause      error
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("not allowed to manage the publication (%v); run as an owner of the tables:\n  %s;",
		e.Cause, strings.Join(e.Statements, ";\n  "))
}

func (e *DeniedError) Unwrap() error { return e.Cause }
