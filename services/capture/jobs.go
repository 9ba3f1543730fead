package capture

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/backfill"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

// runJobs publishes the keys of pending backfill jobs. With a snapshot
// transaction (the slot was just created) it runs every pending job once in
// it, versioning documents with the slot's consistent point. Without one it
// keeps running: each job in a fresh repeatable-read snapshot, which is
// gap-free because every later change is still ahead on the slot.
func (c *Capture) runJobs(ctx context.Context, snapshot pgx.Tx, version uint64) error {
	if snapshot != nil {
		return c.runPending(ctx, func(ctx context.Context, j *backfill.Job) error {
			return c.runJob(ctx, snapshot, j, version)
		})
	}
	for {
		err := c.runPending(ctx, func(ctx context.Context, j *backfill.Job) error {
			conn, err := pgx.Connect(ctx, c.cfg.DatabaseURL)
			if err != nil {
				return explainConnect(c.cfg.DatabaseURL, err)
			}
			defer conn.Close(context.WithoutCancel(ctx))
			tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
			if err != nil {
				return fmt.Errorf("opening a backfill snapshot: %w", err)
			}
			defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
			var lsn string
			if err := tx.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
				return fmt.Errorf("reading the backfill snapshot's position: %w", err)
			}
			pos, err := parseLSN(lsn)
			if err != nil {
				return err
			}
			return c.runJob(ctx, tx, j, pos)
		})
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (c *Capture) runPending(ctx context.Context, run func(context.Context, *backfill.Job) error) error {
	jobs, err := c.jobs.List(ctx)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if j.Phase != backfill.Pending || c.keys[j.Index] == nil {
			continue
		}
		if err := run(ctx, j); err != nil {
			return fmt.Errorf("backfill of %s: %w", j.Index, err)
		}
	}
	return nil
}

// runJob pages through the index's root keys after the job's checkpoint and
// publishes them as BACKFILL changes, saving the checkpoint per batch.
func (c *Capture) runJob(ctx context.Context, tx pgx.Tx, j *backfill.Job, version uint64) error {
	src := c.keys[j.Index]
	if j.Version == 0 {
		j.Version = version
	}
	if total, err := src.Count(ctx, tx); err == nil {
		j.Total = total
	}
	log := c.log.With("index", j.Index, "sinks", j.Sinks())
	log.Info("backfill started", "rows_done", j.Rows, "rows_total", j.Total, "resumed", j.Started)
	start := time.Now()
	prog := newProgress(log, c.cfg.Progress, j.Index, j.Rows)
	defer prog.finish()
	for {
		keys, err := src.Keys(ctx, tx, j.After, !j.Started, c.cfg.BatchKeys)
		if err != nil {
			return fmt.Errorf("reading root keys: %w", err)
		}
		if len(keys) == 0 {
			break
		}
		// One batch per generation: a reindex seeds the next generation
		// only, while the current one keeps taking live changes.
		var seq uint64
		for _, target := range j.Generations() {
			ch := &flussopb.Change{
				CommitLsn:  j.Version,
				Op:         flussopb.ChangeOp_BACKFILL,
				Index:      j.Index,
				Keys:       keys,
				Sinks:      target.Sinks,
				Generation: target.Generation,
			}
			id := fmt.Sprintf("bf-%s-%d-%s", j.ID(), target.Generation, keys[0])
			c.publishing.Lock()
			// The last saved batch counts as seen stored even when another
			// process stored it.
			floor := max(c.reuse.floor(), j.LastSeq)
			ack, err := c.cfg.Broker.PublishChange(ctx, ch, id)
			c.publishing.Unlock()
			if err != nil {
				return fmt.Errorf("publishing backfill batch: %w", err)
			}
			// Saving a sequence handed out again would hide the loss from
			// rerunLostBackfills; the error ends the session, which it
			// runs before the next one.
			if err := c.reuse.stored(ack, floor); err != nil {
				return err
			}
			seq = ack.Sequence
		}
		j.After, j.Started, j.LastSeq = keys[len(keys)-1], true, seq
		j.Rows += int64(len(keys))
		if err := c.jobs.Save(ctx, j); err != nil {
			return err
		}
		prog.update(j.Rows, j.Total)
	}
	j.Phase = backfill.Published
	if err := c.jobs.Save(ctx, j); err != nil {
		return err
	}
	log.Info("backfill keys published", "rows", j.Rows, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// rerunLostBackfills starts again from the first key every backfill whose
// key batches the changes stream may have lost: a broker killed before
// writing what it had acknowledged, or a stream deleted and created anew
// (its sequences start over). Left as it is, such a job would be marked
// seeded once the assemblers pass its LastSeq, with keys never built. A
// loss shows as the stream ending before a job's last batch, or as a
// sequence handed out again (c.reuse): other messages can take the
// stream's end past a lost batch before the next session. The capture
// calls it before each session, which follows every start, every NATS
// reconnect (the watermark ends a session on one) and every loss seen
// while publishing.
func (c *Capture) rerunLostBackfills(ctx context.Context) error {
	changes, err := c.cfg.Broker.Progress(ctx, broker.ChangesStream)
	if err != nil {
		return fmt.Errorf("checking backfills against the changes stream: %w", err)
	}
	from := c.reuse.reused()
	jobs, err := c.jobs.List(ctx)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		// A job that published nothing yet has LastSeq 0: no case holds.
		var why string
		switch {
		case j.Phase == backfill.Done:
			continue
		case j.LastSeq > changes.Last:
			why = fmt.Sprintf("its last key batch was sequence %d of %s, which now ends at %d", j.LastSeq, broker.ChangesStream, changes.Last)
		case from != 0 && j.LastSeq >= from:
			why = fmt.Sprintf("its last key batch was sequence %d of %s, which lost the messages from sequence %d on", j.LastSeq, broker.ChangesStream, from)
		default:
			continue
		}
		if err := c.rerunJob(ctx, j, why); err != nil {
			return err
		}
	}
	c.reuse.handled(changes.Last)
	return nil
}

// rerunJob sets a job whose key batches the broker lost back to its start;
// runJobs then publishes every key again (a document built twice is
// harmless: it is versioned).
func (c *Capture) rerunJob(ctx context.Context, j *backfill.Job, why string) error {
	c.log.Warn("the broker lost key batches of a backfill; publishing all its keys again", "index", j.Index, "why", why, "rows_published", j.Rows)
	j.Phase, j.After, j.Started, j.Rows, j.LastSeq = backfill.Pending, "", false, 0, 0
	// The rerun takes the version of the snapshot it reads keys in, as a
	// new job does: its documents are built after that snapshot and every
	// later change is still ahead on the slot with a higher LSN, so it
	// replaces nothing newer. The old version could leave documents stale:
	// a broker that lost batches may have lost changes too (a stream
	// started over can even lead the watermark to count them done), and a
	// document written between the old version and such a change would
	// refuse a rebuild versioned below it.
	j.Version = 0
	// A new run, hence new batch message ids: surviving batches of the
	// lost run may still be in the stream's deduplication window, and a
	// rerun batch starting at the same key would be dropped as their
	// duplicate although the keys it carries differ.
	j.Created = time.Now().UTC()
	if err := c.jobs.Save(ctx, j); err != nil {
		return fmt.Errorf("starting the backfill again: %w", err)
	}
	return nil
}

// finishJobs marks published jobs seeded once the assemblers got past their
// last key batch: every document of the seed is then on the documents
// stream ahead of the SEEDED marker, which each sink's writer applies after
// acking everything before it.
func (c *Capture) finishJobs(ctx context.Context, changesDone uint64) error {
	// After a loss, changesDone counts the messages that took the lost
	// ones' sequences: rerunLostBackfills sees to the jobs first.
	if c.reuse.reused() != 0 {
		return nil
	}
	jobs, err := c.jobs.List(ctx)
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if j.Phase != backfill.Published || j.LastSeq > changesDone {
			continue
		}
		for sink, gen := range j.Targets {
			marker := &flussopb.Document{Index: j.Index, Op: flussopb.DocOp_SEEDED, Sinks: []string{sink}, Generation: gen, Version: j.Version}
			if err := c.cfg.Broker.PublishDocument(ctx, marker, fmt.Sprintf("seeded-%s-%s", j.ID(), sink)); err != nil {
				return fmt.Errorf("publishing seeded marker of %s for sink %s: %w", j.Index, sink, err)
			}
		}
		j.Phase, j.Finished = backfill.Done, time.Now().UTC()
		if err := c.jobs.Save(ctx, j); err != nil {
			return err
		}
		c.log.Info("backfill complete", "index", j.Index, "rows", j.Rows, "took", j.Finished.Sub(j.Created).Round(time.Millisecond))
	}
	return nil
}
