package audit

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

// Repaired is what a repair asked the pipeline to do.
type Repaired struct {
	Documents int    // rebuild requests, ids of every kind
	Version   string // the position the rebuilds are versioned with
}

// Repair asks the pipeline to rebuild every drifted document of rep from
// the current data, as BACKFILL changes on the changes stream for the sink
// that drifted, the way a backfill or a quarantine replay does: the
// assemblers build them (a key whose row is gone, filtered out or soft
// deleted becomes a delete) and the sink's writer writes them, so versions,
// generations and the watermark keep their guarantees. Nothing is written
// to a sink directly.
//
// The rebuilds are versioned with the WAL position now, like a backfill
// with its snapshot's: the build reads rows committed before it, and every
// later change carries a higher version, so a rebuild never replaces a
// newer build and a later change always wins.
func Repair(ctx context.Context, databaseURL string, conn *broker.Conn, rep *Report) (Repaired, error) {
	var res Repaired
	pg, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return res, fmt.Errorf("connecting to postgres: %w", err)
	}
	lsn, err := currentLSN(ctx, pg)
	pg.Close(context.WithoutCancel(ctx))
	if err != nil {
		return res, err
	}
	res.Version = formatLSN(lsn)
	for _, ir := range rep.Indexes {
		var ids []string
		for _, kind := range []string{Missing, Extra, Stale} {
			ids = append(ids, ir.IDs[kind]...)
		}
		for chunk := range slices.Chunk(ids, batch) {
			ch := &flussopb.Change{Op: flussopb.ChangeOp_BACKFILL, Index: ir.Index, Keys: chunk, Sinks: []string{ir.Sink}, CommitLsn: lsn}
			// A repair repeated at once (same position) is deduplicated.
			id := fmt.Sprintf("audit-%s-%s-%d-%s", ir.Sink, ir.Index, lsn, chunk[0])
			if _, err := conn.PublishChange(ctx, ch, id); err != nil {
				return res, fmt.Errorf("requesting a rebuild of %d documents of %s for sink %s: %w", len(chunk), ir.Index, ir.Sink, err)
			}
			res.Documents += len(chunk)
		}
	}
	return res, nil
}
