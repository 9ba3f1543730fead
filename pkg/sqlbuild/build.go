package sqlbuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Doc is one built document.
type Doc struct {
	ID string
	// Body is the document; nil is a tombstone: there is no such root row,
	// it does not match the root filters, or it is soft deleted.
	Body json.RawMessage
	// Err, a *DocError, reports a value that does not fit its declared type.
	Err error
}

// DocError is a document that cannot be built because one of its values
// cannot be rendered as its declared type.
type DocError struct {
	Index string
	ID    string
	Field string // document path, dot separated; "" when no single field is to blame
	Err   error
}

func (e *DocError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "index %q: document %q: ", e.Index, e.ID)
	if e.Field != "" {
		fmt.Fprintf(&b, "field %s: ", e.Field)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *DocError) Unwrap() error { return e.Err }

// Build builds the documents of keys (root primary keys in text form), one
// per distinct key, in the order given. All documents come from one
// statement; when a value cannot be rendered, the batch is split until the
// documents at fault are found, and each gets its Err.
func (x *Index) Build(ctx context.Context, q Querier, keys []string) ([]Doc, error) {
	if err := x.prepared(); err != nil {
		return nil, err
	}
	keys = unique(keys)
	found := make(map[string]Doc, len(keys))
	if err := x.buildKeys(ctx, q, keys, found); err != nil {
		return nil, fmt.Errorf("index %q: building %d documents: %w", x.name, len(keys), err)
	}
	docs := make([]Doc, len(keys))
	for i, k := range keys {
		d, ok := found[k]
		if !ok {
			d = Doc{ID: k}
		}
		docs[i] = d
	}
	return docs, nil
}

func (x *Index) buildKeys(ctx context.Context, q Querier, keys []string, found map[string]Doc) error {
	if len(keys) == 0 {
		return nil
	}
	batch := make(map[string]Doc, len(keys))
	err := fetch(ctx, q, x.build.sql, x.build.with(keys), func(id string, body []byte) {
		batch[id] = Doc{ID: id, Body: body}
	})
	switch {
	case err == nil:
		for id, d := range batch {
			found[id] = d
		}
		return nil
	case !isDataError(err):
		return err
	case len(keys) == 1:
		derr, err := x.diagnose(ctx, q, keys[0], err)
		if err != nil {
			return err
		}
		found[keys[0]] = Doc{ID: keys[0], Err: derr}
		return nil
	}
	mid := len(keys) / 2
	if err := x.buildKeys(ctx, q, keys[:mid], found); err != nil {
		return err
	}
	return x.buildKeys(ctx, q, keys[mid:], found)
}

// diagnose finds the field of the document key whose value fails to render.
func (x *Index) diagnose(ctx context.Context, q Querier, key string, cause error) (*DocError, error) {
	derr := &DocError{Index: x.name, ID: key, Err: cause}
	// The root filters, the soft delete marker or the key itself may fail
	// before any field does.
	bare, err := x.probe(ctx, q, key, nil)
	if err != nil || bare {
		return derr, err
	}
	derr.Field, err = x.locate(ctx, q, key, nil, x.fields)
	return derr, err
}

// locate probes candidates (fields below path) one at a time and descends
// into the first that fails.
func (x *Index) locate(ctx context.Context, q Querier, key string, path, candidates []*fnode) (string, error) {
	for _, n := range candidates {
		failed, err := x.probe(ctx, q, key, prune(path, n))
		if err != nil {
			return "", err
		}
		if !failed {
			continue
		}
		if len(n.children) > 0 {
			below := append(path[:len(path):len(path)], n)
			p, err := x.locate(ctx, q, key, below, n.children)
			if err != nil || p != "" {
				return p, err
			}
		}
		return n.path, nil
	}
	return "", nil
}

// probe builds the document key with only fields and reports whether a
// value failed to render.
func (x *Index) probe(ctx context.Context, q Querier, key string, fields []*fnode) (bool, error) {
	st, err := x.documentStatement(fields)
	if err != nil {
		return false, err
	}
	err = fetch(ctx, q, st.sql, st.with([]string{key}), func(string, []byte) {})
	if err != nil && !isDataError(err) {
		return false, err
	}
	return err != nil, nil
}

// prune is the field tree holding only the path down to n, and n whole.
func prune(path []*fnode, n *fnode) []*fnode {
	cur := n
	for i := len(path) - 1; i >= 0; i-- {
		c := *path[i]
		c.children = []*fnode{cur}
		cur = &c
	}
	return []*fnode{cur}
}

// fetch runs a statement selecting a key and a document.
func fetch(ctx context.Context, q Querier, sql string, args []any, each func(id string, body []byte)) error {
	return guard(ctx, q, func(q Querier) error {
		rows, err := q.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var body []byte
			if err := rows.Scan(&id, &body); err != nil {
				return err
			}
			each(id, compact(body))
		}
		return rows.Err()
	})
}

// guard runs fn; in a transaction under a savepoint, so that a failing
// statement leaves the transaction usable for the next attempt.
func guard(ctx context.Context, q Querier, fn func(Querier) error) error {
	tx, ok := q.(pgx.Tx)
	if !ok {
		return fn(q)
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(sp); err != nil {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return sp.Commit(ctx)
}

// isDataError reports whether err is a Postgres data exception (class 22):
// a value that does not convert or is out of range.
func isDataError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22")
}

func unique(keys []string) []string {
	seen := make(map[string]bool, len(keys))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}
