package audit

import (
	"context"
	"errors"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/sink/opensearch"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// recheck checks the candidates again, each round in a fresh snapshot and
// once the pipeline confirmed past it, and reports those that still differ
// while the sink holds no newer build than the snapshot: the pipeline had
// every change up to the snapshot, and nothing after it touched them.
func (cfg *Config) recheck(ctx context.Context, conn *pgx.Conn, t *target) error {
	r := t.report
	r.Rechecked = len(t.cands)
	cands := t.cands
	t.cands = nil
	for round := 0; round < cfg.Rounds && len(cands) > 0; round++ {
		ids := make([]string, len(cands))
		for i, c := range cands {
			ids[i] = c.id
		}
		built := map[string]sqlbuild.Doc{}
		var present []string       // keys whose document exists at the snapshot
		var seen map[string]string // their root rows' versions then
		lsn, err := inSnapshot(ctx, conn, func(tx pgx.Tx) error {
			for chunk := range slices.Chunk(ids, batch) {
				docs, err := t.x.Build(ctx, tx, chunk)
				if err != nil {
					return err
				}
				for _, d := range docs {
					built[d.ID] = d
					if d.Body != nil {
						present = append(present, d.ID)
					}
				}
			}
			var err error
			seen, err = t.rows.versions(ctx, tx, present)
			return err
		})
		if err != nil {
			return err
		}
		if err := cfg.settle(ctx, conn, lsn); err != nil {
			return err
		}
		var next []candidate
		var missing []string
		for chunk := range slices.Chunk(ids, batch) {
			stored, err := t.Sink.Get(ctx, t.Index, chunk)
			if err != nil {
				return err
			}
			for _, id := range chunk {
				d := built[id]
				var derr *sqlbuild.DocError
				if errors.As(d.Err, &derr) && derr.Field == "" {
					d = sqlbuild.Doc{ID: id} // no key of the root table (see fetch)
				}
				kind, err := t.classify(d, stored)
				if err != nil {
					return err
				}
				s, found := stored[id]
				switch {
				case kind == "":
					r.Equal++
				case kind == unbuildable:
					r.Unbuildable++
				case found && s.Version > lsn:
					// Rewritten by a change after the snapshot: look again.
					next = append(next, candidate{id: id, kind: kind})
				case kind == Missing:
					missing = append(missing, id)
				default:
					cfg.drift(t, d, s, kind)
				}
			}
		}
		// Read after the sink was: a root row changed since the snapshot
		// may have deleted its document, a delete the sink holds.
		now, err := t.rows.versions(ctx, conn, missing)
		if err != nil {
			return err
		}
		for _, id := range missing {
			if x, ok := now[id]; !ok || x != seen[id] {
				next = append(next, candidate{id: id, kind: Missing})
				continue
			}
			cfg.drift(t, built[id], opensearch.Stored{}, Missing)
		}
		cands = next
	}
	r.Unsettled = len(cands)
	for _, c := range cands {
		cfg.Log.Warn("document kept changing during the audit: not compared", "index", t.Index.Name, "sink", r.Sink, "id", c.id)
	}
	return nil
}

// drift records a drifted document.
func (cfg *Config) drift(t *target, d sqlbuild.Doc, s opensearch.Stored, kind string) {
	r := t.report
	switch kind {
	case Missing:
		r.Missing++
	case Extra:
		r.Extra++
	case Stale:
		r.Stale++
	}
	r.IDs[kind] = append(r.IDs[kind], d.ID)
	if len(r.Drift) >= cfg.MaxReport {
		return
	}
	dr := Drift{ID: d.ID, Kind: kind, Version: s.Version}
	if kind == Stale {
		dr.Diff, _ = Diff(d.Body, s.Body, -1) // both decoded once already
	}
	r.Drift = append(r.Drift, dr)
}
