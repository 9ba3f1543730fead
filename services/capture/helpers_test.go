package capture_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
	"github.com/flusso/flusso/proto/flussopb"
	"github.com/flusso/flusso/services/capture"
)

// usersSchema reads users (root) and orders (has_many and count): orders
// is a related table, so the capture gives it REPLICA IDENTITY FULL.
const usersSchema = `version: 1
table: users
primary_key: id
fields:
  - integer: id
  - keyword: email
  - has_many: orders
    table: orders
    foreign_key: user_id
    primary_key: id
    order_by: [{ column: id, direction: asc }]
    fields:
      - integer: id
      - keyword: status
  - count: orderCount
    table: orders
    foreign_key: user_id
`

// rig is one capture under test, driven directly: a fresh database, a
// private broker and a replication slot of its own (slot names are
// cluster-wide and the dev cluster is shared).
type rig struct {
	t     *testing.T
	dbURL string
	db    *pgx.Conn
	bc    *broker.Conn
	slot  string
	logs  *logBuffer
	cap   *capture.Capture
	run   *harness.Task // the capture's Run
}

// newRig creates a database with ddl and a broker set up for one sink.
// natsURL "" starts an embedded NATS server.
func newRig(t *testing.T, ddl, natsURL string) *rig {
	t.Helper()
	if natsURL == "" {
		natsURL = testenv.NATS(t)
	}
	return newRigOn(t, ddl, testenv.BrokerAt(t, natsURL))
}

// newRigOn is newRig on a broker connection of the caller's.
func newRigOn(t *testing.T, ddl string, bc *broker.Conn) *rig {
	t.Helper()
	r := &rig{t: t, dbURL: testenv.Postgres(t), slot: "t_" + randomHex(6), logs: &logBuffer{}, bc: bc}
	r.db = testenv.Conn(t, r.dbURL)
	r.exec(ddl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.bc.Setup(ctx, []string{"primary"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("capture log:\n%s", r.logs)
		}
	})
	return r
}

func (r *rig) exec(sql string, args ...any) {
	r.t.Helper()
	if _, err := r.db.Exec(context.Background(), sql, args...); err != nil {
		r.t.Fatalf("exec %q: %v", sql, err)
	}
}

// config is a capture configuration reading the given schemas (name →
// body), with no backfill to run.
func (r *rig) config(schemas map[string]string) capture.Config {
	r.t.Helper()
	var ixs []flow.Index
	for name, body := range schemas {
		ix, err := schema.Parse(name+".schema.yml", []byte(body))
		if err != nil {
			r.t.Fatal(err)
		}
		keys, err := sqlbuild.Compile(name, ix)
		if err != nil {
			r.t.Fatal(err)
		}
		ixs = append(ixs, flow.Index{Name: name, Hash: schema.Hash(ix), Schema: ix, SQL: keys})
	}
	return capture.Config{
		DatabaseURL:       r.dbURL,
		Slot:              r.slot,
		Publication:       "flusso",
		ManagePublication: true,
		LagPoll:           time.Second,
		Indexes:           ixs,
		Broker:            r.bc,
		Seeds:             func(context.Context, flow.Index) (map[string]uint32, error) { return nil, nil },
		Log:               slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// start runs a capture until the test ends; it must end cleanly.
func (r *rig) start(cfg capture.Config) *capture.Capture {
	r.t.Helper()
	c, err := capture.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.cap = c
	r.run = harness.Go(r.t, c.Run)
	return c
}

// waitStreaming waits until the capture follows its slot.
func (r *rig) waitStreaming() {
	r.t.Helper()
	// Creating the slot waits for every transaction running in the cluster,
	// which other tests share.
	r.eventually("the capture to stream", 2*time.Minute, func() bool { return r.cap.Stats().Streaming })
}

func (r *rig) eventually(what string, within time.Duration, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// change is one change of the changes stream, with the message that
// carried it (a message holds one change, or several of a transaction).
type change struct {
	seq   uint64 // stream sequence of the message
	msgID string
	*flussopb.Change
}

// consumer is the assembler's durable consumer, which the tests use in
// place of assemblers: the changes stream is a work queue, so a reader of
// their own would conflict with it.
func (r *rig) consumer() jetstream.Consumer {
	r.t.Helper()
	c, err := r.bc.JS.Consumer(context.Background(), broker.ChangesStream, broker.AssemblerConsumer)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// read takes n changes off the stream in order, or more when the last
// message holds more, acking each message when ack is set (else they stay
// pending, redelivered after the ack wait).
func (r *rig) read(n int, ack bool) []change {
	r.t.Helper()
	cons := r.consumer()
	var out []change
	deadline := time.Now().Add(60 * time.Second)
	for len(out) < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("read %d of %d changes before timing out", len(out), n)
		}
		batch, err := cons.Fetch(min(n-len(out), 1000), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			r.t.Fatal(err)
		}
		for m := range batch.Messages() {
			out = append(out, decode(r.t, m)...)
			if ack {
				if err := m.Ack(); err != nil {
					r.t.Fatal(err)
				}
			}
		}
	}
	return out
}

// decode reads a message of the changes stream: a batch of changes, or one.
func decode(t *testing.T, m jetstream.Msg) []change {
	t.Helper()
	meta, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	var chs []*flussopb.Change
	if m.Headers().Get(broker.HeaderBatch) == "" {
		ch := &flussopb.Change{}
		err = proto.Unmarshal(m.Data(), ch)
		chs = []*flussopb.Change{ch}
	} else {
		b := &flussopb.ChangeBatch{}
		err = proto.Unmarshal(m.Data(), b)
		chs = b.Changes
	}
	if err != nil {
		t.Fatalf("decoding change message %d: %v", meta.Sequence.Stream, err)
	}
	out := make([]change, len(chs))
	for i, ch := range chs {
		out[i] = change{seq: meta.Sequence.Stream, msgID: m.Headers().Get(jetstream.MsgIDHeader), Change: ch}
	}
	return out
}

// slotConfirmed reads the slot's confirmed_flush_lsn.
func (r *rig) slotConfirmed() pglogrepl.LSN {
	r.t.Helper()
	_, confirmed := harness.SlotState(r.t, r.db, r.slot)
	return confirmed
}

// logBuffer collects a capture's log for assertions and failure reports.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the log lines containing every one of words.
func (l *logBuffer) lines(words ...string) []string {
	var out []string
next:
	for _, line := range strings.Split(l.String(), "\n") {
		for _, w := range words {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err))
	}
	return hex.EncodeToString(b)
}
