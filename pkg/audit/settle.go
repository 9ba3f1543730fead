package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/sqlbuild"
)

// currentLSN is the server's current WAL write position.
func currentLSN(ctx context.Context, q sqlbuild.Querier) (uint64, error) {
	rows, err := q.Query(ctx, "SELECT pg_current_wal_lsn()::text")
	if err != nil {
		return 0, fmt.Errorf("reading the WAL position: %w", err)
	}
	text, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("reading the WAL position: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(text)
	if err != nil {
		return 0, fmt.Errorf("reading the WAL position %q: %w", text, err)
	}
	return uint64(lsn), nil
}

func formatLSN(lsn uint64) string { return pglogrepl.LSN(lsn).String() }

// slotState is the pipeline's replication slot as Postgres sees it.
type slotState struct {
	exists, active bool
	confirmed      uint64
}

func readSlot(ctx context.Context, conn *pgx.Conn, slot string) (slotState, error) {
	var st slotState
	var confirmed *string
	err := conn.QueryRow(ctx, "SELECT active, confirmed_flush_lsn::text FROM pg_catalog.pg_replication_slots WHERE slot_name = $1", slot).
		Scan(&st.active, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading replication slot %s: %w", slot, err)
	}
	st.exists = true
	if confirmed != nil {
		lsn, err := pglogrepl.ParseLSN(*confirmed)
		if err != nil {
			return st, fmt.Errorf("reading replication slot %s: confirmed position %q: %w", slot, *confirmed, err)
		}
		st.confirmed = uint64(lsn)
	}
	return st, nil
}

// settlePoll is how often the slot is read while waiting.
const settlePoll = 200 * time.Millisecond

// settle waits until the pipeline confirmed its slot at or past lsn: every
// transaction committed before lsn is then in every sink. A pipeline that
// does not run (its slot inactive or absent) writes nothing more, so what
// the sink holds now is final and there is nothing to wait for. A running
// one that does not get there within cfg.Settle fails the audit: lag
// cannot be told from drift.
func (cfg *Config) settle(ctx context.Context, conn *pgx.Conn, lsn uint64) error {
	deadline := time.Now().Add(cfg.Settle)
	for {
		st, err := readSlot(ctx, conn, cfg.Slot)
		if err != nil {
			return err
		}
		switch {
		case !st.exists:
			cfg.Log.Warn("no replication slot of that name: taking the pipeline for stopped; pass the pipeline's slot to audit a running one without false alarms", "slot", cfg.Slot)
			return nil
		case !st.active:
			return nil
		case st.confirmed >= lsn:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("the pipeline did not confirm replication slot %s past the audit's snapshot at %s within %v (it is at %s): too far behind to tell drift from changes on their way; retry later or raise the wait",
				cfg.Slot, formatLSN(lsn), cfg.Settle, formatLSN(st.confirmed))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(settlePoll):
		}
	}
}
