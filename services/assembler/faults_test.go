package assembler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
	"github.com/flusso/flusso/proto/flussopb"
)

// rig is an assembler of one index "items" over a fresh database and a
// fresh embedded broker, with a writer consumer "out" to read its
// documents from.
type rig struct {
	t      *testing.T
	ctx    context.Context
	pool   *pgxpool.Pool
	conn   *broker.Conn
	health *health.Stage
	a      *Assembler
	done   chan error
	err    error
	ended  bool
}

// newRig creates the table with ddl and compiles fields (schema YAML, two
// spaces of indent) over it; start runs the assembler.
func newRig(t *testing.T, ddl, fields string, onError flow.OnError) *rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	def, err := schema.Parse("items.schema.yml", []byte("version: 1\ntable: items\nprimary_key: id\nfields:\n"+fields))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := sqlbuild.Compile("items", def)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, ctx: ctx, pool: pool, conn: testenv.Broker(t, "out"), health: health.NewRegistry().Stage("assembler")}
	r.a = New(Config{Pool: pool, Broker: r.conn, Indexes: []flow.Index{{Name: "items", SQL: ix, OnError: onError}}, Health: r.health})
	return r
}

func (r *rig) start() {
	runCtx, stop := context.WithCancel(r.ctx)
	r.done = make(chan error, 1)
	go func() { r.done <- r.a.Run(runCtx) }()
	r.t.Cleanup(func() {
		ended := r.ended // a test that saw Run end has checked its error
		stop()
		if err := r.wait(); err != nil && !ended && !r.t.Failed() {
			r.t.Errorf("Run: %v", err)
		}
	})
}

// wait waits for Run to end and returns its error.
func (r *rig) wait() error {
	if !r.ended {
		r.err, r.ended = <-r.done, true
	}
	return r.err
}

// running fails the test if Run has ended.
func (r *rig) running() {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.err, r.ended = err, true
		r.t.Fatalf("Run ended: %v", err)
	default:
	}
}

func (r *rig) exec(sql string) {
	r.t.Helper()
	if _, err := r.pool.Exec(r.ctx, sql); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
}

// backfill asks for the documents of keys.
func (r *rig) backfill(keys ...string) {
	r.t.Helper()
	if _, err := r.conn.PublishChange(r.ctx, &flussopb.Change{Op: flussopb.ChangeOp_BACKFILL, Index: "items", Keys: keys, CommitLsn: 1}, ""); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) publish(data []byte) {
	r.t.Helper()
	if _, err := r.conn.JS.Publish(r.ctx, broker.ChangesSubject, data); err != nil {
		r.t.Fatal(err)
	}
}

// docs takes documents from the writer consumer until every id is among
// them, and returns them by id.
func (r *rig) docs(ids ...string) map[string]*flussopb.Document {
	r.t.Helper()
	cons, err := r.conn.Documents(r.ctx, "out")
	if err != nil {
		r.t.Fatal(err)
	}
	got := map[string]*flussopb.Document{}
	for _, id := range ids {
		for got[id] == nil {
			if r.ctx.Err() != nil {
				r.t.Fatalf("document %s never came; got %v", id, keysOf(got))
			}
			batch, err := cons.Next(r.ctx, 100, 500*time.Millisecond, 0)
			if err != nil {
				r.t.Fatal(err)
			}
			for _, m := range batch {
				if m.Err != nil {
					r.t.Fatal(m.Err)
				}
				for _, d := range m.Values {
					got[d.Id] = d
				}
				_ = m.Ack()
			}
		}
	}
	return got
}

func keysOf(m map[string]*flussopb.Document) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// quarantined waits for a quarantine entry of the assemblers whose reason
// holds every one of parts.
func (r *rig) quarantined(parts ...string) broker.QuarantineEntry {
	r.t.Helper()
	var seen []broker.QuarantineEntry
	for r.ctx.Err() == nil {
		entries, err := r.conn.ListQuarantine(r.ctx, broker.QuarantineFilter{Sink: broker.AssemblerSink})
		if err != nil && !broker.IsNotFound(err) {
			r.t.Fatal(err)
		}
		seen = entries
		for _, e := range entries {
			if containsAll(e.Reason, parts) {
				return e
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("no quarantine entry with a reason holding %q; entries: %+v", parts, seen)
	return broker.QuarantineEntry{}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// until waits for cond, failing the test with what after ctx's deadline.
func (r *rig) until(what string, cond func() bool) {
	r.t.Helper()
	for !cond() {
		if r.ctx.Err() != nil {
			r.t.Fatalf("timed out waiting for %s; health %+v", what, r.health.Report())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// changesLeft is how many change messages are not yet acked.
func (r *rig) changesLeft() uint64 {
	r.t.Helper()
	p, err := r.conn.Progress(r.ctx, broker.ChangesStream)
	if err != nil {
		r.t.Fatal(err)
	}
	return p.Pending
}

const bigDDL = `CREATE TABLE items (id int PRIMARY KEY, body text);
INSERT INTO items VALUES (1, 'small'), (2, repeat('b', %d)), (3, 'small')`

// TestOversizedDocument checks that a document larger than the broker
// takes is quarantined under on_error = skip, with a reason naming index,
// id and size, and that the documents after it still flow: whether the
// client refuses it (the server's max payload) or the stream does (its
// max message size, lowered while the assembler runs).
func TestOversizedDocument(t *testing.T) {
	tests := []struct {
		name        string
		body        int // bytes of the big row's value
		streamLimit int32
	}{
		{"over the server's max payload", 2 << 20, 0},
		{"over the stream's max message size", 200 << 10, 100 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, fmt.Sprintf(bigDDL, tt.body), "  - keyword: body\n", flow.Skip)
			r.start()
			r.backfill("1")
			r.docs("1")
			if tt.streamLimit > 0 {
				s, err := r.conn.JS.Stream(r.ctx, broker.DocsStream)
				if err != nil {
					t.Fatal(err)
				}
				cfg := s.CachedInfo().Config
				cfg.MaxMsgSize = tt.streamLimit
				if _, err := r.conn.JS.UpdateStream(r.ctx, cfg); err != nil {
					t.Fatal(err)
				}
			}
			r.backfill("2")
			r.backfill("3")
			if d := r.docs("3")["3"]; d.Op != flussopb.DocOp_UPSERT {
				t.Errorf("document 3: %v, want an upsert", d)
			}
			e := r.quarantined("index items", "document 2 is ")
			if e.Index != "items" || e.ID != "2" || e.Version != 1 {
				t.Errorf("quarantine entry %+v, want index items, id 2, version 1", e)
			}
			var size int
			if _, err := fmt.Sscanf(e.Reason[strings.Index(e.Reason, "document 2 is ")+len("document 2 is "):], "%d bytes", &size); err != nil || size <= tt.body {
				t.Errorf("reason %q: size %d (%v), want the size, over %d bytes", e.Reason, size, err, tt.body)
			}
			r.until("the changes acked", func() bool { return r.changesLeft() == 0 })
			r.running()
		})
	}
}

// TestOversizedDocumentStops checks on_error = stop: the run ends with an
// error naming the document and its size, and leaves no goroutine behind
// that keeps the changes in progress.
func TestOversizedDocumentStops(t *testing.T) {
	r := newRig(t, fmt.Sprintf(bigDDL, 2<<20), "  - keyword: body\n", flow.Stop)
	r.start()
	r.backfill("2")
	err := r.wait()
	if err == nil || !containsAll(err.Error(), []string{"index items", "document 2 is ", "bytes", "on_error = stop"}) {
		t.Fatalf("Run: %v, want the oversized document named under on_error = stop", err)
	}
	if rep := r.health.Report(); rep.State != health.Degraded {
		t.Errorf("health %+v, want degraded", rep)
	}
	r.until("the KeepAlive goroutine to end", func() bool {
		var b bytes.Buffer
		if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
			t.Fatal(err)
		}
		return !strings.Contains(b.String(), "broker.KeepAlive")
	})
}

// garbage is not a protobuf message: field number 0 is invalid.
var garbage = []byte{0x00, 0x01, 0x02, 0x03}

// TestUndecodableChange checks that a change message that cannot be
// decoded is quarantined with the reason and its bytes, then acked, and
// that the changes after it flow.
func TestUndecodableChange(t *testing.T) {
	if err := proto.Unmarshal(garbage, &flussopb.Change{}); err == nil {
		t.Fatal("the garbage decodes; the test would prove nothing")
	}
	r := newRig(t, "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one')", "  - keyword: name\n", flow.Stop)
	r.start()
	r.publish(garbage)
	r.backfill("1")
	r.docs("1")
	e := r.quarantined("cannot be decoded", fmt.Sprintf("(%d bytes)", len(garbage)))
	s, err := r.conn.JS.Stream(r.ctx, broker.QuarantineStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(r.ctx, e.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Data, garbage) {
		t.Errorf("quarantined bytes %x, want %x", m.Data, garbage)
	}
	r.until("the changes acked", func() bool { return r.changesLeft() == 0 })
	r.running()
}

// TestQuarantineAwaited checks that a change is acked only once its
// quarantine entry is stored: while the quarantine stream is missing the
// batch fails (the stage degraded) and stays in the changes stream; once
// the stream is back the entry lands and the stage recovers.
func TestQuarantineAwaited(t *testing.T) {
	tests := []struct {
		name   string
		send   func(r *rig)
		reason string
	}{
		{"undecodable change", func(r *rig) { r.publish(garbage) }, "cannot be decoded"},
		{"document that does not render", func(r *rig) { r.backfill("2") }, `field qty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, "CREATE TABLE items (id int PRIMARY KEY, qty text); INSERT INTO items VALUES (1, '1'), (2, 'many')",
				"  - integer: qty\n", flow.Skip)
			if err := r.conn.JS.DeleteStream(r.ctx, broker.QuarantineStream); err != nil {
				t.Fatal(err)
			}
			r.start()
			tt.send(r)
			r.until("a failed batch", func() bool { return r.health.Report().Failures >= 2 })
			if rep := r.health.Report(); rep.State != health.Degraded || !strings.Contains(rep.LastError, "quarantin") {
				t.Errorf("health %+v, want degraded by the quarantine publish", rep)
			}
			if n := r.changesLeft(); n != 1 {
				t.Fatalf("%d changes left, want the change kept until its quarantine entry is stored", n)
			}
			if err := r.conn.Setup(r.ctx, []string{"out"}); err != nil {
				t.Fatal(err)
			}
			r.quarantined(tt.reason)
			r.until("the changes acked", func() bool { return r.changesLeft() == 0 })
			r.until("the stage ok", func() bool { return r.health.Report().State == health.OK })
			r.running()
		})
	}
}

// TestSchemaMismatchRecovers checks that a column the schema reads,
// dropped while the assembler runs or missing when it starts, degrades the
// stage with an error naming index, field and column, without ending the
// run, and that the documents land by themselves once the column is back.
func TestSchemaMismatchRecovers(t *testing.T) {
	for _, atStart := range []bool{false, true} {
		t.Run(fmt.Sprintf("missing at start %v", atStart), func(t *testing.T) {
			r := newRig(t, "CREATE TABLE items (id int PRIMARY KEY, email text, name text); INSERT INTO items VALUES (1, 'ada@x', 'Ada')",
				"  - keyword: email\n  - keyword: name\n", flow.Stop)
			if atStart {
				r.exec("ALTER TABLE items DROP COLUMN email")
				r.start()
			} else {
				r.start()
				r.backfill("1")
				r.docs("1")
				r.exec("ALTER TABLE items DROP COLUMN email")
			}
			r.backfill("1")
			const want = `index items: field "email" reads column items.email, which no longer exists (42703)`
			r.until("two failures", func() bool { return r.health.Report().Failures >= 2 })
			if rep := r.health.Report(); rep.State != health.Degraded || !strings.Contains(rep.LastError, want) {
				t.Errorf("health %+v, want degraded with %q", rep, want)
			}
			r.running()

			r.exec("ALTER TABLE items ADD COLUMN email text; UPDATE items SET email = 'back@x'")
			d := r.docs("1")["1"]
			if !strings.Contains(string(d.Body), "back@x") {
				t.Errorf("document 1 = %s, want the re-added email", d.Body)
			}
			r.until("the stage ok", func() bool { return r.health.Report().State == health.OK })
			r.running()
		})
	}
}

// TestColumnTypeChange checks that builds go on when columns change type
// while the assembler runs, including a key widened to bigint that the
// statements prepared before cannot take.
func TestColumnTypeChange(t *testing.T) {
	r := newRig(t, "CREATE TABLE items (id int PRIMARY KEY, qty int, label text); INSERT INTO items VALUES (1, 2, 'one')",
		"  - long: qty\n  - keyword: label\n", flow.Stop)
	r.start()
	r.backfill("1")
	r.docs("1")

	r.exec(`ALTER TABLE items ALTER COLUMN id TYPE bigint, ALTER COLUMN qty TYPE bigint, ALTER COLUMN label TYPE varchar(50);
		INSERT INTO items VALUES (5000000000, 3000000000, 'wide')`)
	r.backfill("1", "5000000000")
	got := r.docs("1", "5000000000")
	for id, want := range map[string]string{"1": `{"qty":2,"label":"one"}`, "5000000000": `{"qty":3000000000,"label":"wide"}`} {
		if d := got[id]; d.Op != flussopb.DocOp_UPSERT || !bytes.Equal(compactJSON(t, d.Body), compactJSON(t, []byte(want))) {
			t.Errorf("document %s = %v %s, want %s", id, d.Op, d.Body, want)
		}
	}
	r.running()
}

func compactJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return out.Bytes()
}

// TestInFlightBytesBounded checks that a worker waits for the broker's
// acks once the messages it published pass maxInFlight bytes, and that
// everything it published is stored.
func TestInFlightBytesBounded(t *testing.T) {
	const (
		docs = 40
		size = 300 << 10
	)
	r := newRig(t, "CREATE TABLE items (id int PRIMARY KEY)", "  - integer: id\n", flow.Stop)
	limit, err := r.conn.MaxMessage(r.ctx, broker.DocsStream)
	if err != nil {
		t.Fatal(err)
	}
	r.a.limit = limit
	var out inflight
	body := []byte(`"` + strings.Repeat("x", size) + `"`)
	for i := range docs {
		doc := &flussopb.Document{Index: "items", Id: fmt.Sprint(i), Op: flussopb.DocOp_UPSERT, Version: 1, Body: body}
		if err := r.a.publish(r.ctx, &out, r.a.indexes[0], []*flussopb.Document{doc}); err != nil {
			t.Fatal(err)
		}
		if out.bytes > maxInFlight {
			t.Fatalf("after %d documents %d bytes in flight, want at most %d", i+1, out.bytes, maxInFlight)
		}
		if n := r.conn.JS.PublishAsyncPending(); n*size > maxInFlight+size {
			t.Fatalf("after %d documents %d publishes pending, want at most %d", i+1, n, maxInFlight/size+1)
		}
	}
	if err := r.a.settle(r.ctx, &out); err != nil {
		t.Fatal(err)
	}
	p, err := r.conn.Progress(r.ctx, broker.DocsStream)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pending != docs {
		t.Errorf("%d documents stored, want %d", p.Pending, docs)
	}
}

// TestChunkSize checks that builds make fewer documents at once as the
// documents grow, towards buildBytes a build, and that a batch's first
// build of an index makes few, to measure its documents, then goes back to
// the chunk before when they are as small.
func TestChunkSize(t *testing.T) {
	tests := []struct {
		name    string
		n, size int  // the last build: documents, bytes
		probe   bool // it was a batch's first
		want    int
	}{
		{"small documents: twice as many", 16, 16 << 10, false, 32},
		{"tombstones only: twice as many", 16, 0, false, 32},
		{"never more than BuildChunk", 250, 1 << 10, false, 250},
		{"1 MiB documents", 32, 32 << 20, false, 16},
		{"one document over the budget", 1, 50 << 20, false, 1},
		{"budget overrun: shrink at once", 250, 250 << 20, false, 16},
		{"probe of small documents: back to the chunk before", 16, 16 << 10, true, 250},
		{"probe of 1 MiB documents: as many", 16, 16 << 20, true, 16},
	}
	a := New(Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := &index{}
			if got := a.chunkSize(ix, false); got != firstChunk {
				t.Fatalf("first chunk %d, want %d", got, firstChunk)
			}
			if tt.probe {
				ix.built(250, 250<<10, false) // learnt on small documents
				if got := a.chunkSize(ix, true); got != firstChunk {
					t.Fatalf("a batch's first chunk %d after a chunk of 250, want %d", got, firstChunk)
				}
			}
			ix.built(tt.n, tt.size, tt.probe)
			if got := a.chunkSize(ix, false); got != tt.want {
				t.Errorf("after %d documents of %d bytes: chunk %d, want %d", tt.n, tt.size, got, tt.want)
			}
		})
	}
}

// TestBuildBytesBounded checks that large documents are built a few at a
// time, every one of them still published.
func TestBuildBytesBounded(t *testing.T) {
	const rows, size = 40, 512 << 10
	r := newRig(t, fmt.Sprintf("CREATE TABLE items (id int PRIMARY KEY, body text); INSERT INTO items SELECT i, repeat('b', %d) FROM generate_series(1, %d) i", size, rows),
		"  - keyword: body\n", flow.Stop)
	r.start()
	keys := make([]string, rows)
	for i := range keys {
		keys[i] = fmt.Sprint(i + 1)
	}
	r.backfill(keys...)
	r.docs(keys...)
	if got := r.a.chunkSize(r.a.indexes[0], false); got > buildBytes/size {
		t.Errorf("chunk %d after documents of %d bytes, want at most %d", got, size, buildBytes/size)
	}
	r.running()
}
