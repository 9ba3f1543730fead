// Package capture is the capture stage: it owns the deployment's logical
// replication slot, publishes every committed change of the tables the
// indexes read to the changes stream, drives backfills, and confirms the
// slot only as far as the sinks have durably caught up.
package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/flusso/flusso/pkg/backfill"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/meter"
	"github.com/flusso/flusso/pkg/publication"
	"github.com/flusso/flusso/pkg/redact"
	"github.com/flusso/flusso/pkg/retry"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// KeySource pages through an index's root keys for a backfill, and names
// the columns a change of each table must carry for the assemblers to find
// the documents it touches: what the capture reads of an index's compiled
// SQL (tests wrap it, see WrapKeys).
type KeySource interface {
	Prepare(ctx context.Context, q sqlbuild.Querier) error
	Keys(ctx context.Context, q sqlbuild.Querier, after string, first bool, limit int) ([]string, error)
	Count(ctx context.Context, q sqlbuild.Querier) (int64, error)
	ChangeColumns(schema, table string) []string
	ReadColumns(schema, table string) (cols []string, anyColumn bool)
}

// SeedPlanner tells which sinks lack an index, and the generation each
// must seed; an empty map means every sink is seeded.
type SeedPlanner func(ctx context.Context, ix flow.Index) (map[string]uint32, error)

// Config configures a capture.
type Config struct {
	DatabaseURL       string
	Slot              string
	Publication       string
	ManagePublication bool
	SkipBackfill      bool
	LagPoll           time.Duration
	Indexes           []flow.Index // their SQL is the capture's own to prepare
	Broker            *broker.Conn
	Seeds             SeedPlanner
	Log               *slog.Logger
	// Health records the stage's failures and recoveries for /status; may be nil.
	Health *health.Stage
	// Tracer starts the trace of each change; nil traces nothing.
	Tracer trace.Tracer
	// Skipped counts, by table (schema.table), the updates dropped because
	// they changed no column an index reads; may be nil.
	Skipped *meter.Counter
	// BatchKeys is how many root keys one backfill message carries.
	BatchKeys int
	// Progress is where backfills draw a progress bar; nil draws on stderr
	// when it is a terminal (io.Discard: nowhere).
	Progress io.Writer
	// wrapKeys, set by tests, wraps each index's KeySource.
	wrapKeys func(KeySource) KeySource
}

// DefaultBatchKeys is how many root keys one backfill message carries
// unless Config.BatchKeys says otherwise.
const DefaultBatchKeys = 500

// Capture is the capture stage.
type Capture struct {
	cfg    Config
	log    *slog.Logger
	jobs   *backfill.Store
	tables map[schema.TableRef]bool
	// keys is each enabled index's KeySource, by name.
	keys map[string]KeySource
	// columns are those a change of each table carries, over every index;
	// set once the indexes are prepared (see changeColumns).
	columns map[schema.TableRef]map[string]bool
	// read are the columns whose change can alter a document, per table;
	// an update changing none of them is dropped (see skipped).
	read map[schema.TableRef]map[string]bool
	// publishing is held by the stream for a whole transaction and by a
	// backfill for one key batch, so that a transaction's changes are
	// contiguous on the changes stream.
	publishing sync.Mutex
	// reuse tells when the changes stream lost messages it had
	// acknowledged, for rerunLostBackfills and the watermark.
	reuse reuseWatch

	confirmed   atomic.Uint64 // LSN confirmed to the slot
	lagBytes    atomic.Int64
	lagMeasured atomic.Bool
	streaming   atomic.Bool
	captured    atomic.Uint64 // row changes published
	commits     atomic.Uint64 // transactions seen
	oversized   atomic.Uint64 // changes published without their row images
}

// New prepares a capture.
func New(cfg Config) (*Capture, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.BatchKeys <= 0 {
		cfg.BatchKeys = DefaultBatchKeys
	}
	if cfg.LagPoll <= 0 {
		cfg.LagPoll = 10 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = terminal()
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	c := &Capture{cfg: cfg, log: cfg.Log.With("stage", "capture"), tables: map[schema.TableRef]bool{}, keys: map[string]KeySource{}}
	for _, ix := range cfg.Indexes {
		for _, t := range ix.Schema.Tables() {
			c.tables[t] = true
		}
		c.keys[ix.Name] = ix.SQL
		if cfg.wrapKeys != nil {
			c.keys[ix.Name] = cfg.wrapKeys(ix.SQL)
		}
	}
	return c, nil
}

// Stats is a snapshot of the capture's counters.
type Stats struct {
	ConfirmedLSN string
	LagBytes     int64
	LagMeasured  bool
	Streaming    bool // holding the lease and following the slot
	Captured     uint64
	Commits      uint64
	// Oversized counts changes too large for the broker even cut down to
	// the columns the indexes read: each went without its row images, and
	// every document of the indexes reading its table is rebuilt.
	Oversized uint64
}

// Stats reads the counters.
func (c *Capture) Stats() Stats {
	return Stats{
		ConfirmedLSN: lsnString(c.confirmed.Load()),
		LagBytes:     c.lagBytes.Load(),
		LagMeasured:  c.lagMeasured.Load(),
		Streaming:    c.streaming.Load(),
		Captured:     c.captured.Load(),
		Commits:      c.commits.Load(),
		Oversized:    c.oversized.Load(),
	}
}

// Run captures until ctx is done. A capture first takes the deployment's
// lease (standing by while another holds it). Problems found before
// streaming starts (bad credentials, wal_level, missing privileges) are
// returned at once; a connection lost later is retried with backoff.
func (c *Capture) Run(ctx context.Context) error {
	jobs, err := backfill.Open(ctx, c.cfg.Broker)
	if err != nil {
		return err
	}
	c.jobs = jobs
	for {
		l, err := c.acquire(ctx)
		if err != nil {
			return nil // ctx is done
		}
		lctx, lost := context.WithCancelCause(ctx)
		held := make(chan struct{})
		go func() {
			defer close(held)
			if err := l.hold(lctx); err != nil {
				lost(err)
			}
		}()
		err = c.lead(lctx)
		cause := context.Cause(lctx)
		lost(nil)
		<-held
		l.release()
		if ctx.Err() != nil {
			return nil
		}
		if cause != nil && !errors.Is(cause, context.Canceled) {
			c.cfg.Health.Fail(cause)
			c.log.Warn("stepping down", "reason", cause)
			continue
		}
		return err
	}
}

// lead is the capture's work while it holds the lease.
func (c *Capture) lead(ctx context.Context) error {
	for {
		published, err := c.preflight(ctx)
		if err != nil {
			return err
		}
		if published {
			break
		}
		if !c.awaitPublication(ctx) {
			return nil
		}
	}
	c.columns = c.changeColumns()
	c.read = c.readColumns()
	if !c.cfg.SkipBackfill {
		if err := c.planSeeds(ctx); err != nil {
			return err
		}
	}
	pause := retry.Delay{Limit: 30 * time.Second}
	for {
		started := time.Now()
		err := c.rerunLostBackfills(ctx)
		if err == nil {
			err = c.session(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if time.Since(started) > time.Minute {
			pause.Reset()
		}
		c.cfg.Health.Fail(err)
		d := pause.Next()
		c.log.Warn("replication interrupted; reconnecting", "err", err, "in", d.Round(time.Millisecond))
		if retry.Sleep(ctx, d) != nil {
			return nil
		}
	}
}

// changeColumns gathers, per table, the columns any index reads from its
// changes. The indexes must be prepared.
func (c *Capture) changeColumns() map[schema.TableRef]map[string]bool {
	out := map[schema.TableRef]map[string]bool{}
	for _, ix := range c.cfg.Indexes {
		for t := range c.tables {
			cols := out[t]
			if cols == nil {
				cols = map[string]bool{}
				out[t] = cols
			}
			for _, name := range c.keys[ix.Name].ChangeColumns(t.Schema, t.Name) {
				cols[name] = true
			}
		}
	}
	return out
}

// fatalError stops Run instead of reconnecting.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// preflight checks the server and manages the publication. It reports
// whether the publication exists: until it does, no slot may be created or
// followed (see awaitPublication).
func (c *Capture) preflight(ctx context.Context) (published bool, err error) {
	conn, err := pgx.Connect(ctx, c.cfg.DatabaseURL)
	if err != nil {
		return false, explainConnect(c.cfg.DatabaseURL, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return false, fmt.Errorf("reading wal_level: %w", err)
	}
	if level != "logical" {
		return false, fmt.Errorf("postgres has wal_level = %s; flusso needs logical replication: set wal_level = logical in postgresql.conf and restart Postgres", level)
	}
	var user string
	var canReplicate bool
	if err := conn.QueryRow(ctx, "SELECT rolname, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&user, &canReplicate); err != nil {
		return false, fmt.Errorf("reading the role's attributes: %w", err)
	}
	if !canReplicate {
		return false, fmt.Errorf("role %q lacks the REPLICATION attribute needed to follow a replication slot: run ALTER ROLE %s REPLICATION as a superuser", user, schema.QuoteIdent(user))
	}
	schemas := make([]*schema.Index, len(c.cfg.Indexes))
	for i, ix := range c.cfg.Indexes {
		schemas[i] = ix.Schema
		if err := c.keys[ix.Name].Prepare(ctx, conn); err != nil {
			return false, fmt.Errorf("index %s: %w", ix.Name, err)
		}
	}
	plan, err := publication.Check(ctx, conn, c.cfg.Publication, publication.NeedOf(schemas))
	if err != nil {
		return false, err
	}
	if len(plan.MissingRows) > 0 {
		names := make([]string, len(plan.MissingRows))
		for i, t := range plan.MissingRows {
			names[i] = t.String()
		}
		return false, fmt.Errorf("the schemas read tables that do not exist: %s", strings.Join(names, ", "))
	}
	if plan.Empty() {
		return true, nil
	}
	if !c.cfg.ManagePublication {
		c.log.Warn("publication does not cover what the indexes need and manage_publication is off; run this SQL",
			"sql", strings.Join(plan.Statements(), "; "))
		return plan.Exists, nil
	}
	err = publication.Apply(ctx, conn, plan)
	var denied *publication.DeniedError
	switch {
	case errors.As(err, &denied):
		c.log.Warn("cannot manage the publication with this role; run this SQL as the table owner, capture goes on",
			"sql", strings.Join(denied.Statements, "; "), "err", denied.Cause)
		return plan.Exists, nil
	case err != nil:
		return false, err
	}
	c.log.Info("publication updated", "publication", c.cfg.Publication, "sql", strings.Join(plan.Statements(), "; "))
	return true, nil
}

// publicationPoll is how often a capture waiting for its publication looks.
const publicationPoll = 2 * time.Second

// awaitPublication waits until the publication exists, and reports false
// if ctx ended first. Following a slot without it would be worse than
// waiting: pgoutput looks the publication up as of each change's position,
// so the first change decoded from before it existed stops the slot for
// good ("publication does not exist").
func (c *Capture) awaitPublication(ctx context.Context) bool {
	c.log.Warn("waiting for the publication to exist before following the replication slot", "publication", c.cfg.Publication)
	remind := time.Now().Add(time.Minute)
	for {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(publicationPoll):
		}
		exists, err := c.publicationExists(ctx)
		switch {
		case err != nil:
			c.cfg.Health.Fail(err)
			c.log.Warn("checking for the publication", "publication", c.cfg.Publication, "err", err)
		case exists:
			c.log.Info("publication found", "publication", c.cfg.Publication)
			return true
		default:
			c.cfg.Health.Fail(fmt.Errorf("waiting for publication %s to exist: run the SQL logged as the table owner", c.cfg.Publication))
			if time.Now().After(remind) {
				remind = time.Now().Add(time.Minute)
				c.log.Warn("still waiting for the publication; run the SQL logged above as the table owner", "publication", c.cfg.Publication)
			}
		}
	}
}

func (c *Capture) publicationExists(ctx context.Context) (bool, error) {
	conn, err := pgx.Connect(ctx, c.cfg.DatabaseURL)
	if err != nil {
		return false, explainConnect(c.cfg.DatabaseURL, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_publication WHERE pubname = $1)`, c.cfg.Publication).Scan(&exists); err != nil {
		return false, fmt.Errorf("reading publication %s: %w", c.cfg.Publication, err)
	}
	return exists, nil
}

// planSeeds requests a backfill job for every index some sink lacks,
// unless one for the same schema is already under way (it resumes).
func (c *Capture) planSeeds(ctx context.Context) error {
	for _, ix := range c.cfg.Indexes {
		targets, err := c.cfg.Seeds(ctx, ix)
		if err != nil {
			return fmt.Errorf("reading seeding state of index %s: %w", ix.Name, err)
		}
		cur, err := c.jobs.Get(ctx, ix.Name)
		if err != nil {
			return err
		}
		if len(targets) == 0 {
			continue
		}
		if cur != nil && cur.Phase != backfill.Done && cur.Hash == ix.Hash && sameTargets(cur.Targets, targets) {
			c.log.Info("resuming backfill", "index", ix.Name, "rows_done", cur.Rows, "phase", cur.Phase)
			continue
		}
		if cur != nil && cur.Phase != backfill.Done {
			// A job for another schema or other sinks is stale: replace it.
			cur.Phase = backfill.Done
			if err := c.jobs.Save(ctx, cur); err != nil {
				return err
			}
		}
		j := &backfill.Job{Index: ix.Name, Hash: ix.Hash, Targets: targets, Reason: "unseeded"}
		if err := c.jobs.Request(ctx, j); err != nil {
			return fmt.Errorf("requesting backfill of %s: %w", ix.Name, err)
		}
		c.log.Info("backfill requested", "index", ix.Name, "sinks", j.Sinks())
	}
	return nil
}

func sameTargets(a, b map[string]uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// explainConnect turns a connection failure into one line with the fix.
func explainConnect(dsn string, err error) error {
	where := redact.String(dsn)
	var pgErr *pgconn.PgError
	isPg := errors.As(err, &pgErr)
	switch {
	case isPg && (pgErr.Code == "28P01" || pgErr.Code == "28000"):
		err = fmt.Errorf("postgres at %s refused the credentials (%s): check the user and password in DATABASE_URL or [source].connection_url", where, pgErr.Message)
	case isPg && pgErr.Code == "3D000":
		err = fmt.Errorf("postgres at %s: %s: create it or fix the database name", where, pgErr.Message)
	case isPg:
		err = fmt.Errorf("connecting to postgres at %s: %w", where, err)
	default:
		err = fmt.Errorf("cannot reach postgres at %s (%w): check that it runs and the host and port", where, err)
	}
	// pgx puts each address it tried on a line of its own (localhost is two).
	if msg := err.Error(); strings.ContainsAny(msg, "\n\t") {
		return &oneLine{msg: strings.Join(strings.Fields(msg), " "), err: err}
	}
	return err
}

// oneLine is an error whose message was flattened onto one line.
type oneLine struct {
	msg string
	err error
}

func (e *oneLine) Error() string { return e.msg }
func (e *oneLine) Unwrap() error { return e.err }
