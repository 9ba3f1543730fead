package capture

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/semaphore"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/proto/flussopb"
)

// statusEvery is how often the slot hears from us when nothing changes;
// well under the server's wal_sender_timeout (60s by default). A status
// sent after statusEvery without a word from the server asks it to answer,
// and a server that leaves that unanswered for silenceLimit is taken for
// gone: a connection lost without a reset (a dead peer, a dropped NAT
// entry) would otherwise only fail once TCP gives up on it, many minutes
// later. Variables so that tests can shorten them.
var (
	statusEvery  = 10 * time.Second
	silenceLimit = time.Minute
)

// inlineAcks bounds the publish acks one open transaction may hold before
// the stream waits for them, so a huge transaction streams in bounded memory.
const inlineAcks = 512

// inflightBytes bounds the bytes of changes published and not yet
// acknowledged, over every transaction of a session: each unacknowledged
// publish holds its message, so counting acks alone lets a transaction of
// large rows take hundreds of megabytes.
const inflightBytes = 4 << 20

// session is one replication connection's life: create the slot when
// missing (seeding inside its snapshot), then stream until an error.
func (c *Capture) session(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	repl, err := pgconn.Connect(ctx, replicationDSN(c.cfg.DatabaseURL))
	if err != nil {
		return explainConnect(c.cfg.DatabaseURL, err)
	}
	defer repl.Close(context.WithoutCancel(ctx))
	db, err := pgx.Connect(ctx, c.cfg.DatabaseURL)
	if err != nil {
		return explainConnect(c.cfg.DatabaseURL, err)
	}
	defer db.Close(context.WithoutCancel(ctx))

	var kind, plugin, slotDB, thisDB string
	var confirmed pglogrepl.LSN
	err = db.QueryRow(ctx, `SELECT slot_type, coalesce(plugin, ''), coalesce(database, ''), current_database(), coalesce(confirmed_flush_lsn, '0/0')::text
		FROM pg_replication_slots WHERE slot_name = $1`, c.cfg.Slot).Scan(&kind, &plugin, &slotDB, &thisDB, &confirmed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if confirmed, err = c.createSlot(ctx, repl, db); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("reading replication slot %s: %w", c.cfg.Slot, err)
	case kind != "logical":
		return &fatalError{fmt.Errorf("replication slot %s is a %s slot, not a logical one: choose another --slot", c.cfg.Slot, kind)}
	case slotDB != thisDB:
		// Slot names are cluster-wide: another deployment's slot.
		return &fatalError{fmt.Errorf("replication slot %s belongs to database %q, not %q: choose another --slot", c.cfg.Slot, slotDB, thisDB)}
	case plugin != "pgoutput":
		return &fatalError{fmt.Errorf("replication slot %s uses plugin %s, not pgoutput: drop it or choose another --slot", c.cfg.Slot, plugin)}
	}
	c.confirmed.Store(uint64(confirmed))

	err = pglogrepl.StartReplication(ctx, repl, c.cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", fmt.Sprintf("publication_names '%s'", strings.ReplaceAll(c.cfg.Publication, "'", "''"))},
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" {
			return fmt.Errorf("replication slot %s is in use by another process (is another capture running?): %w", c.cfg.Slot, err)
		}
		return fmt.Errorf("starting replication from slot %s: %w", c.cfg.Slot, err)
	}
	c.log.Info("streaming", "slot", c.cfg.Slot, "publication", c.cfg.Publication, "from", confirmed)
	c.streaming.Store(true)
	defer c.streaming.Store(false)

	// The helpers end before the connections close (deferred above): the
	// lag poll shares db, and a backfill of this session must not overlap
	// one of the next.
	var helpers sync.WaitGroup
	defer func() {
		cancel(nil)
		helpers.Wait()
	}()
	t := newTracker(confirmed)
	acks := make(chan *openTxn, 256)
	budget := semaphore.NewWeighted(inflightBytes)
	helpers.Go(func() { cancel(c.resolve(ctx, acks, t)) })
	helpers.Go(func() { cancel(c.watermark(ctx, t)) })
	helpers.Go(func() {
		if err := c.runJobs(ctx, nil, 0); err != nil && ctx.Err() == nil {
			cancel(err)
		}
	})
	helpers.Go(func() { c.pollLag(ctx, db) })

	err = c.stream(ctx, repl, t, acks, budget)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// createSlot creates the slot with an exported snapshot and, inside that
// snapshot, publishes the keys of every pending backfill: changes after the
// slot's consistent point stream afterwards, so nothing falls in between.
func (c *Capture) createSlot(ctx context.Context, repl *pgconn.PgConn, db *pgx.Conn) (pglogrepl.LSN, error) {
	c.log.Info("creating replication slot; it waits for the transactions running now to end", "slot", c.cfg.Slot)
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, c.cfg.Slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		SnapshotAction: "EXPORT_SNAPSHOT",
		Mode:           pglogrepl.LogicalReplication,
	})
	if err != nil {
		return 0, fmt.Errorf("creating replication slot %s: %w", c.cfg.Slot, err)
	}
	point, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, fmt.Errorf("reading consistent point of slot %s: %w", c.cfg.Slot, err)
	}
	c.log.Info("replication slot created", "slot", c.cfg.Slot, "consistent_point", point)
	if c.cfg.SkipBackfill {
		return point, nil
	}
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, fmt.Errorf("opening the slot's snapshot: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+res.SnapshotName+"'"); err != nil {
		return 0, fmt.Errorf("importing the slot's snapshot %s: %w", res.SnapshotName, err)
	}
	if err := c.runJobs(ctx, tx, uint64(point)); err != nil {
		return 0, err
	}
	return point, nil
}

// openTxn is a transaction being published.
type openTxn struct {
	xid     uint32
	end     pglogrepl.LSN // end of the commit record; set at commit
	futures []pending
	// budget is the session's bound on bytes in flight; settling an ack
	// gives its bytes back.
	budget *semaphore.Weighted
	// batch gathers the transaction's changes into messages; the
	// session's, empty between transactions.
	batch   *broker.ChangeBatcher
	lastSeq uint64
	// floor is the highest sequence seen stored before the transaction's
	// first change was published; see reuseWatch. Taken then, not when its
	// acks are settled, because a backfill batch published after the
	// commit may be acknowledged first, with a higher sequence.
	floor uint64
}

// pending is a publish whose ack is awaited, and the bytes it holds.
type pending struct {
	ack  jetstream.PubAckFuture
	size int64
}

// stoppingPings is how many reply-requested keepalives within a second,
// with no data between them, tell that the server is shutting down. A
// stopping walsender asks again and again for the flush position to reach
// its last one, and Postgres cannot stop until it does (a healthy one asks
// at most every wal_sender_timeout/2). The sinks may not hold that much
// yet, so the capture lets go of the slot instead and resumes from what it
// confirmed once the server is back.
const stoppingPings = 50

// stream reads the replication stream until an error or ctx is done.
func (c *Capture) stream(ctx context.Context, repl *pgconn.PgConn, t *tracker, acks chan<- *openTxn, budget *semaphore.Weighted) error {
	w := &walReader{t: t, acks: acks, budget: budget, batch: c.cfg.Broker.ChangeBatcher(), relations: map[uint32]*pglogrepl.RelationMessage{}}
	var (
		received, sent pglogrepl.LSN
		nextStatus     = time.Now()
		heard          = time.Now() // the server's last message
		asked          time.Time    // the first request for an answer not answered yet
		pings          int          // reply requests since pingsFrom with no data between
		pingsFrom      time.Time
		started        = time.Now()
	)
	defer func() {
		if w.cur != nil {
			c.publishing.Unlock()
		}
	}()
	for ctx.Err() == nil {
		if conf := t.Confirmed(); conf != sent || time.Now().After(nextStatus) {
			// The session ends on a loss, but the watermark may advance
			// once more before that, on a sample counting the messages
			// that took the lost ones' sequences: nothing more is
			// confirmed once a loss is known (conf is read first for that).
			if from := c.reuse.reused(); from != 0 {
				return fmt.Errorf("not confirming slot %s past %s: %s lost the messages from sequence %d on", c.cfg.Slot, sent, broker.ChangesStream, from)
			}
			ask := time.Since(heard) >= statusEvery
			if err := c.sendStatus(ctx, repl, received, conf, ask); err != nil {
				return err
			}
			if ask && asked.IsZero() {
				asked = time.Now()
			}
			sent, nextStatus = conf, time.Now().Add(statusEvery)
		}
		rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		raw, err := repl.ReceiveMessage(rctx)
		rcancel()
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				if !asked.IsZero() && time.Since(asked) > silenceLimit {
					return fmt.Errorf("no answer from postgres on replication slot %s for %v: the connection is lost", c.cfg.Slot, time.Since(asked).Round(time.Second))
				}
				continue
			}
			return fmt.Errorf("receiving from replication slot %s: %w", c.cfg.Slot, err)
		}
		heard, asked = time.Now(), time.Time{}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			pgErr := pgconn.ErrorResponseToPgError(msg)
			if pgErr.Code == "42704" && strings.Contains(pgErr.Message, "publication") {
				// pgoutput reads the publication as of each change: a change
				// from when it did not exist fails the same way every time.
				return &fatalError{fmt.Errorf("replication slot %s holds changes from when publication %s did not exist and cannot decode them (%s): "+
					"drop the slot (SELECT pg_drop_replication_slot('%s')), start flusso again and reindex every index, since the changes it held are lost",
					c.cfg.Slot, c.cfg.Publication, pgErr.Message, c.cfg.Slot)}
			}
			return fmt.Errorf("replication stream: %w", pgErr)
		case *pgproto3.CopyData:
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("decoding keepalive: %w", err)
				}
				received = max(received, ka.ServerWALEnd)
				if w.cur == nil {
					t.Idle(ka.ServerWALEnd)
					// Streaming works again, also with nothing to publish; a
					// session that fails at once (on a change it cannot
					// publish, say) is not taken for a recovery.
					if time.Since(started) >= statusEvery {
						c.cfg.Health.OK()
					}
				}
				if ka.ReplyRequested {
					nextStatus = time.Time{}
					if time.Since(pingsFrom) > time.Second {
						pings, pingsFrom = 0, time.Now()
					}
					if pings++; pings >= stoppingPings {
						return fmt.Errorf("postgres is shutting down and waits for slot %s to be confirmed up to %s, past what the sinks hold (%s): leaving the slot so it can stop",
							c.cfg.Slot, ka.ServerWALEnd, t.Confirmed())
					}
				}
			case pglogrepl.XLogDataByteID:
				pings = 0
				end, err := c.walData(ctx, w, msg.Data[1:])
				if err != nil {
					return err
				}
				received = max(received, end)
			}
		}
	}
	return nil
}

// walReader is what the stream keeps between the pgoutput messages of a
// session.
type walReader struct {
	t         *tracker
	acks      chan<- *openTxn
	budget    *semaphore.Weighted
	batch     *broker.ChangeBatcher
	relations map[uint32]*pglogrepl.RelationMessage
	cur       *openTxn // the transaction being received; it holds c.publishing
	final     pglogrepl.LSN
	seq       uint32
}

// walData handles one XLogData message: the pgoutput message it carries
// opens, extends or commits w's transaction. It returns the end of a
// transaction it committed (0 for any other message).
func (c *Capture) walData(ctx context.Context, w *walReader, data []byte) (pglogrepl.LSN, error) {
	xld, err := pglogrepl.ParseXLogData(data)
	if err != nil {
		return 0, fmt.Errorf("decoding WAL data: %w", err)
	}
	m, err := pglogrepl.Parse(xld.WALData)
	if err != nil {
		return 0, fmt.Errorf("decoding pgoutput message at %s: %w", xld.WALStart, err)
	}
	switch m := m.(type) {
	case *pglogrepl.RelationMessage:
		w.relations[m.RelationID] = m
	case *pglogrepl.BeginMessage:
		if w.cur != nil {
			return 0, fmt.Errorf("begin at %s inside the transaction of %s", m.FinalLSN, w.final)
		}
		c.publishing.Lock()
		w.cur, w.final, w.seq = &openTxn{xid: m.Xid, floor: c.reuse.floor(), budget: w.budget, batch: w.batch}, m.FinalLSN, 0
		w.t.Open()
	case *pglogrepl.CommitMessage:
		if w.cur == nil {
			return 0, fmt.Errorf("commit at %s without a begin", m.CommitLSN)
		}
		txn := w.cur
		// The transaction's last changes are published before its acks
		// are awaited.
		sent, err := txn.batch.Flush()
		if err == nil {
			err = c.track(ctx, txn, sent)
		}
		w.cur = nil
		c.publishing.Unlock()
		if err != nil {
			return 0, fmt.Errorf("publishing the changes of the transaction of %s: %w", w.final, err)
		}
		txn.end = m.TransactionEndLSN
		select {
		case w.acks <- txn:
		case <-ctx.Done():
			return 0, nil
		}
		c.commits.Add(1)
		return m.TransactionEndLSN, nil
	case *pglogrepl.InsertMessage:
		err = c.publishRow(ctx, w.cur, w.relations, m.RelationID, flussopb.ChangeOp_INSERT, 0, nil, m.Tuple, w.final, &w.seq)
	case *pglogrepl.UpdateMessage:
		err = c.publishRow(ctx, w.cur, w.relations, m.RelationID, flussopb.ChangeOp_UPDATE, m.OldTupleType, m.OldTuple, m.NewTuple, w.final, &w.seq)
	case *pglogrepl.DeleteMessage:
		err = c.publishRow(ctx, w.cur, w.relations, m.RelationID, flussopb.ChangeOp_DELETE, m.OldTupleType, m.OldTuple, nil, w.final, &w.seq)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if err = c.publishRow(ctx, w.cur, w.relations, id, flussopb.ChangeOp_TRUNCATE, 0, nil, nil, w.final, &w.seq); err != nil {
				break
			}
		}
	}
	return 0, err
}

// publishRow publishes one row change of an open transaction, if an index
// reads its table. oldType is how pgoutput tagged the old image: 'K' for
// the replica identity key only, 'O' for the whole row.
func (c *Capture) publishRow(ctx context.Context, cur *openTxn, relations map[uint32]*pglogrepl.RelationMessage,
	relID uint32, op flussopb.ChangeOp, oldType uint8, old, new *pglogrepl.TupleData, final pglogrepl.LSN, seq *uint32) error {
	if cur == nil {
		return fmt.Errorf("row change outside a transaction")
	}
	rel, ok := relations[relID]
	if !ok {
		return fmt.Errorf("row change for unknown relation %d", relID)
	}
	ref := schema.TableRef{Schema: rel.Namespace, Name: rel.RelationName}
	if !c.tables[ref] || c.skipped(ref, rel, oldType, old, new) {
		return nil
	}
	// Only the columns the assemblers read to find the documents a change
	// touches: they build documents from current data, so a large value in
	// any other column costs nothing on the way.
	keep := c.columns[ref]
	ch := &flussopb.Change{
		CommitLsn: uint64(final),
		Xid:       cur.xid,
		Seq:       *seq,
		Schema:    rel.Namespace,
		Table:     rel.RelationName,
		Op:        op,
		Old:       row(rel, old, oldType == 'K', keep),
		New:       row(rel, new, false, keep),
	}
	// Each change starts a trace; the assembler and writer continue it
	// (a message of many changes, the first one's).
	traced, span := c.cfg.Tracer.Start(ctx, "capture.change", trace.WithAttributes(
		attribute.String("db.table", rel.Namespace+"."+rel.RelationName),
		attribute.String("flusso.op", op.String()),
		attribute.String("flusso.commit_lsn", final.String())))
	span.End()
	sent, err := c.queue(traced, cur, ch, final)
	if err != nil {
		return fmt.Errorf("publishing change of %s.%s: %w", rel.Namespace, rel.RelationName, err)
	}
	*seq++
	c.captured.Add(1)
	return c.track(ctx, cur, sent)
}

// queue adds a change to its transaction's batch, which publishes the
// changes before it when it does not fit with them. One too large for the
// broker even cut down to the columns the indexes read (a huge key) goes
// without its row images: the assemblers then cannot trace it and rebuild
// every document of the indexes reading its table. Slow, but nothing is
// missed, and the stream never stops on it: a change that cannot be
// published would end every session at the same transaction and hold the
// slot back for good.
func (c *Capture) queue(ctx context.Context, cur *openTxn, ch *flussopb.Change, final pglogrepl.LSN) (*broker.ChangesSent, error) {
	sent, err := cur.batch.Add(ctx, ch)
	var big *broker.TooLargeError
	if !errors.As(err, &big) {
		return sent, err
	}
	c.oversized.Add(1)
	c.log.Warn("change too large for the broker; publishing it without its row images, so every document of the indexes reading its table is rebuilt",
		"table", ch.Schema+"."+ch.Table, "op", ch.Op.String(), "commit_lsn", final, "bytes", big.Size, "limit", big.Limit)
	ch.Old, ch.New = nil, nil
	return cur.batch.Add(ctx, ch)
}

// track holds a published message of changes against the session's bound
// on bytes in flight until its ack is settled, and settles the
// transaction's acks once it holds many.
func (c *Capture) track(ctx context.Context, cur *openTxn, sent *broker.ChangesSent) error {
	if sent == nil {
		return nil
	}
	size := min(int64(sent.Size), inflightBytes)
	if !cur.budget.TryAcquire(size) {
		// Bytes come back as acks are settled: this transaction's here,
		// committed ones' in resolve.
		if err := c.settle(ctx, cur); err != nil {
			return err
		}
		if err := cur.budget.Acquire(ctx, size); err != nil {
			return err
		}
	}
	cur.futures = append(cur.futures, pending{ack: sent.Ack, size: size})
	if len(cur.futures) >= inlineAcks {
		return c.settle(ctx, cur)
	}
	return nil
}

// settle waits for a transaction's outstanding publish acks, keeping only
// the highest sequence, and fails on one the stream handed out again.
func (c *Capture) settle(ctx context.Context, txn *openTxn) error {
	for _, p := range txn.futures {
		select {
		case ack := <-p.ack.Ok():
			txn.budget.Release(p.size)
			if err := c.reuse.stored(ack, txn.floor); err != nil {
				return err
			}
			txn.lastSeq = max(txn.lastSeq, ack.Sequence)
		case err := <-p.ack.Err():
			return fmt.Errorf("publishing a change to %s: %w", broker.ChangesStream, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	txn.futures = txn.futures[:0]
	return nil
}

// resolve settles committed transactions in commit order and hands them to
// the tracker.
func (c *Capture) resolve(ctx context.Context, acks <-chan *openTxn, t *tracker) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case txn := <-acks:
			if err := c.settle(ctx, txn); err != nil {
				return err
			}
			t.Commit(txn.end, txn.lastSeq)
			c.cfg.Health.OK()
		}
	}
}

// row converts a tuple, keeping the columns in keep. A key-only image
// carries the other columns as NULLs that stand for "not sent": they are
// left out, so that a consumer never mistakes them for the row's values (a
// NULL foreign key would lead a child's delete to no parent at all).
func row(rel *pglogrepl.RelationMessage, tuple *pglogrepl.TupleData, keyOnly bool, keep map[string]bool) *flussopb.Row {
	if tuple == nil {
		return nil
	}
	r := &flussopb.Row{Columns: make(map[string]*flussopb.Datum, len(tuple.Columns))}
	for i, col := range tuple.Columns {
		if i >= len(rel.Columns) {
			break
		}
		if !keep[rel.Columns[i].Name] || keyOnly && rel.Columns[i].Flags&1 == 0 {
			continue
		}
		d := &flussopb.Datum{}
		switch col.DataType {
		case 'n':
			d.Null = true
		case 'u':
			d.Unchanged = true
		default:
			d.Text = string(col.Data)
		}
		r.Columns[rel.Columns[i].Name] = d
	}
	return r
}

// sendStatus reports the positions to the server; ask requests an
// immediate answer (a keepalive).
func (c *Capture) sendStatus(ctx context.Context, repl *pgconn.PgConn, received, confirmed pglogrepl.LSN, ask bool) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: max(received, confirmed),
		WALFlushPosition: confirmed,
		WALApplyPosition: confirmed,
		ClientTime:       time.Now(),
		ReplyRequested:   ask,
	})
	if err != nil {
		return fmt.Errorf("sending standby status to slot %s: %w", c.cfg.Slot, err)
	}
	return nil
}

// pollLag keeps the slot's lag (bytes of WAL the slot holds back) fresh.
func (c *Capture) pollLag(ctx context.Context, db *pgx.Conn) {
	tick := time.NewTicker(c.cfg.LagPoll)
	defer tick.Stop()
	for {
		var lag int64
		err := db.QueryRow(ctx, `SELECT coalesce(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::bigint FROM pg_replication_slots WHERE slot_name = $1`, c.cfg.Slot).Scan(&lag)
		if err == nil {
			c.lagBytes.Store(lag)
			c.lagMeasured.Store(true)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// replicationDSN adds replication=database to a connection URL.
func replicationDSN(dsn string) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "replication=database"
}

func lsnString(v uint64) string { return pglogrepl.LSN(v).String() }

func parseLSN(s string) (uint64, error) {
	l, err := pglogrepl.ParseLSN(s)
	if err != nil {
		return 0, fmt.Errorf("parsing LSN %q: %w", s, err)
	}
	return uint64(l), nil
}
