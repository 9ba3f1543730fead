package capture_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/pkg/broker"
)

// TestConfirmedOnlyPastDurableCommits plays the assemblers and the writer
// by hand: the slot must stay put while nothing consumes, move only when a
// transaction's changes are acked AND the documents built from them are
// acked by the sink's writer, and only ever to the end of a commit.
func TestConfirmedOnlyPastDurableCommits(t *testing.T) {
	// A transaction of more changes than a message holds (128) takes two.
	const txns, rows = 10, 130
	r := newRig(t, `
		CREATE EXTENSION pg_walinspect;
		CREATE TABLE users (id int PRIMARY KEY, email text);
		CREATE TABLE orders (id int PRIMARY KEY, user_id int, status text);`, "")
	c := r.start(r.config(map[string]string{"users": usersSchema}))
	r.waitStreaming()

	// Every confirmed position seen, from the capture and the slot.
	var seen []pglogrepl.LSN
	observe := func() {
		l, err := pglogrepl.ParseLSN(c.Stats().ConfirmedLSN)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, l, r.slotConfirmed())
	}
	// hold observes for a while, as the watermark ticks and status updates go.
	hold := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			observe()
		}
	}

	for i := range txns {
		r.exec(`INSERT INTO users SELECT g, 'u' || g FROM generate_series($1::int, $1::int + $2::int - 1) g`, i*rows+1, rows)
	}
	r.eventually("every change on the stream", 30*time.Second, func() bool {
		p, err := r.bc.Progress(context.Background(), broker.ChangesStream)
		return err == nil && p.Pending == txns*2
	})

	// Fetch everything, acking nothing yet.
	cons := r.consumer()
	var msgs []jetstream.Msg
	var changes []change
	for len(msgs) < txns*2 {
		batch, err := cons.Fetch(txns*2-len(msgs), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			msgs = append(msgs, m)
			changes = append(changes, decode(t, m)...)
		}
	}
	checkTransactions(t, changes)
	commits := make([]pglogrepl.LSN, 0, txns) // commit record starts, in order
	for _, ch := range changes {
		if l := pglogrepl.LSN(ch.CommitLsn); !slices.Contains(commits, l) {
			commits = append(commits, l)
		}
	}
	if len(commits) != txns {
		t.Fatalf("%d transactions on the stream, want %d", len(commits), txns)
	}
	ends := make([]pglogrepl.LSN, txns) // commit record ends: what may be confirmed
	for i, l := range commits {
		var typ, end string
		if err := r.db.QueryRow(context.Background(), `SELECT record_type, end_lsn::text FROM pg_get_wal_record_info($1::text::pg_lsn)`, l.String()).Scan(&typ, &end); err != nil {
			t.Fatalf("reading the WAL record at %s: %v", l, err)
		}
		if typ != "COMMIT" {
			t.Fatalf("the record at commit LSN %s is a %s", l, typ)
		}
		var err error
		if ends[i], err = pglogrepl.ParseLSN(end); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing consumed: the slot does not move past the first commit.
	hold(2 * time.Second)
	for _, l := range seen {
		if l > commits[0] {
			t.Fatalf("confirmed %s with nothing consumed; the first commit starts at %s", l, commits[0])
		}
	}

	ctx := context.Background()
	docs := 0
	// assemble plays an assembler: a document per change message is stored
	// on the documents stream before the message is acked.
	assemble := func(ms []jetstream.Msg) {
		for _, m := range ms {
			if _, err := r.bc.JS.Publish(ctx, broker.DocsSubject("users"), []byte("doc")); err != nil {
				t.Fatal(err)
			}
			docs++
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// write plays the sink's writer: it acks every stored document.
	writer, err := r.bc.JS.Consumer(ctx, broker.DocsStream, broker.WriterConsumer("primary"))
	if err != nil {
		t.Fatal(err)
	}
	written := 0
	write := func() {
		for written < docs {
			batch, err := writer.Fetch(docs-written, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for m := range batch.Messages() {
				if err := m.DoubleAck(ctx); err != nil {
					t.Fatal(err)
				}
				written++
			}
		}
	}

	// Assemblers done with four transactions and the first message of the
	// fifth; the writer has not written anything.
	const k = 4
	assemble(msgs[:k*2+1])
	hold(2 * time.Second)
	for _, l := range seen {
		if l > commits[0] {
			t.Fatalf("confirmed %s before the writer acked any document; the first commit starts at %s", l, commits[0])
		}
	}

	// The writer catches up: the four transactions are durable, the fifth
	// is not (its other changes are not assembled).
	write()
	r.eventually("the slot to confirm the durable transactions", 30*time.Second, func() bool {
		observe()
		return r.slotConfirmed() >= ends[k-1]
	})
	hold(2 * time.Second)
	if got := r.slotConfirmed(); got != ends[k-1] {
		t.Fatalf("slot confirmed %s, want %s: the end of transaction %d, the last one durable", got, ends[k-1], k)
	}

	// Everything consumed: the slot passes the last commit.
	assemble(msgs[k*2+1:])
	write()
	r.eventually("the slot to confirm every transaction", 30*time.Second, func() bool {
		observe()
		return r.slotConfirmed() >= ends[txns-1]
	})

	// Never inside a transaction: every position seen is before the first
	// commit, the end of one, or past the last.
	for _, l := range seen {
		if l > commits[0] && l < ends[txns-1] && !slices.Contains(ends, l) {
			t.Errorf("confirmed %s, which is no commit end (commits end at %v)", l, ends)
		}
	}
	t.Logf("confirmed positions seen: %d distinct; commit ends %v", len(slices.Compact(slices.Sorted(slices.Values(seen)))), ends)
}
