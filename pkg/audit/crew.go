package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// builders is how many connections build documents at once. A build is
// one Postgres backend's work, so on one connection an audit runs at most
// at one core's build rate while the sink's reads and the comparisons
// wait for it; a second connection lets them overlap.
const builders = 2

// crew is a set of connections whose transactions share one snapshot: the
// snapshot exported by the audit's transaction, so every batch is built
// as of the same instant whichever connection builds it.
type crew struct {
	conns []*pgx.Conn
	txs   []pgx.Tx
}

// joinSnapshot opens n connections and imports tx's snapshot into a
// read-only repeatable-read transaction on each.
func joinSnapshot(ctx context.Context, databaseURL string, tx pgx.Tx, n int) (*crew, error) {
	var id string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&id); err != nil {
		return nil, fmt.Errorf("exporting the audit's snapshot: %w", err)
	}
	c := &crew{}
	for range n {
		conn, err := pgx.Connect(ctx, databaseURL)
		if err != nil {
			c.close(ctx)
			return nil, fmt.Errorf("connecting a builder to postgres: %w", err)
		}
		c.conns = append(c.conns, conn)
		btx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err == nil {
			// The id comes from Postgres and is hex and dashes; it cannot be
			// a parameter of SET.
			_, err = btx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(id, "'", "''")+"'")
		}
		if err != nil {
			c.close(ctx)
			return nil, fmt.Errorf("importing the audit's snapshot into a builder: %w", err)
		}
		c.txs = append(c.txs, btx)
	}
	return c, nil
}

// close ends the builders' transactions and connections.
func (c *crew) close(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for _, tx := range c.txs {
		tx.Rollback(ctx) //nolint:errcheck // read-only
	}
	for _, conn := range c.conns {
		conn.Close(ctx) //nolint:errcheck // nothing was written
	}
}

// firstError is the error that ended a group of goroutines: a real cause
// rather than the cancellation it caused in the others.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}
