package assembler

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/flusso/flusso/pkg/sqlbuild"
)

// errReshaped says that an index's tables changed shape and its statements
// were prepared again: the work that failed is worth doing again at once.
var errReshaped = errors.New("the tables of the index changed shape; its statements were prepared again")

// refresh prepares the statements of ix again when its tables no longer
// have the shape x was prepared with, and returns the statements to use.
func (a *Assembler) refresh(ctx context.Context, ix *index, x *sqlbuild.Index) (*sqlbuild.Index, error) {
	fresh, err := x.Refresh(ctx, a.cfg.Pool)
	if err != nil {
		return nil, fmt.Errorf("reading the shape of the tables of index %s: %w", ix.name, err)
	}
	if fresh != x && ix.sql.CompareAndSwap(x, fresh) {
		a.log.Info("the tables of an index changed shape; its statements are prepared again", "index", ix.name)
	}
	return fresh, nil
}

// explain looks at a failure of the statements x of ix. When Postgres
// says they no longer fit the tables (a column dropped or retyped: SQLSTATE
// class 42, or a cached plan gone stale), it prepares them again: the
// answer is errReshaped when that worked, or an error naming the field and
// the column at fault when the tables lack what the schema reads.
func (a *Assembler) explain(ctx context.Context, ix *index, x *sqlbuild.Index, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "42") || pgErr.Code == "0A000") {
		fresh, rerr := a.refresh(ctx, ix, x)
		switch {
		case rerr != nil:
			err = rerr
		case fresh != x:
			return errReshaped
		}
	}
	var missing *sqlbuild.MissingError
	if errors.As(err, &missing) {
		return mismatch(ix.name, missing)
	}
	return err
}

// mismatch says what the schema of index reads that the tables lack, with
// the SQLSTATE Postgres gives reading it.
func mismatch(index string, m *sqlbuild.MissingError) error {
	if m.Column == "" {
		return fmt.Errorf("index %s: it reads table %s.%s, which no longer exists (42P01)", index, m.Schema, m.Table)
	}
	reader := "it"
	if m.Field != "" {
		reader = fmt.Sprintf("field %q", m.Field)
	}
	return fmt.Errorf("index %s: %s reads column %s.%s, which no longer exists (42703)", index, reader, m.Table, m.Column)
}
