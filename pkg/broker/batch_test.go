package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

// publishDocs publishes docs as the assemblers do and returns every
// message sent.
func publishDocs(ctx context.Context, c *broker.Conn, docs []*flussopb.Document, limit int) ([]broker.DocumentsSent, []broker.Refused, error) {
	var sent []broker.DocumentsSent
	refused, err := c.PublishDocumentsAsync(ctx, docs, limit, func(s broker.DocumentsSent) error {
		sent = append(sent, s)
		return nil
	})
	return sent, refused, err
}

func docsOf(prefix string, n, size int) []*flussopb.Document {
	out := make([]*flussopb.Document, n)
	for i := range out {
		out[i] = &flussopb.Document{Index: "users", Id: fmt.Sprintf("%s%d", prefix, i), Op: flussopb.DocOp_UPSERT, Version: 1,
			Body: []byte(`"` + strings.Repeat("x", size) + `"`)}
	}
	return out
}

// TestDocumentBatches checks how documents are split into messages (by
// count and bytes, a marker alone, a document too large for a message
// refused and the others sent) and that a writer's consumer reads every
// document in the order published, also from a message of one document
// as versions before batching wrote it.
func TestDocumentBatches(t *testing.T) {
	purge := &flussopb.Document{Index: "users", Op: flussopb.DocOp_PURGE, Version: 2}
	tests := []struct {
		name        string
		old         []*flussopb.Document // published one to a message first, as before batching
		docs        []*flussopb.Document
		limit       int
		wantSizes   []int // documents per message
		wantRefused []string
	}{
		{name: "a few small documents: one message", docs: docsOf("a", 3, 10), limit: broker.MaxPayload, wantSizes: []int{3}},
		{name: "many small documents: split by count", docs: docsOf("a", 300, 10), limit: broker.MaxPayload, wantSizes: []int{128, 128, 44}},
		{name: "large documents: split by bytes", docs: docsOf("a", 5, 100<<10), limit: broker.MaxPayload, wantSizes: []int{2, 2, 1}},
		{name: "one alone is a plain document", docs: docsOf("a", 1, 10), limit: broker.MaxPayload, wantSizes: []int{1}},
		{name: "a marker goes alone, in order", docs: append(append(docsOf("a", 2, 10), purge), docsOf("b", 2, 10)...),
			limit: broker.MaxPayload, wantSizes: []int{2, 1, 2}},
		{name: "too large for a message of its own: refused, the rest sent", docs: append(docsOf("a", 2, 10), append(docsOf("big", 1, 300<<10), docsOf("b", 2, 10)...)...),
			limit: 200 << 10, wantSizes: []int{2, 2}, wantRefused: []string{"big0"}},
		{name: "old single messages then batches", old: docsOf("old", 2, 10), docs: docsOf("a", 3, 10),
			limit: broker.MaxPayload, wantSizes: []int{1, 1, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := testenv.Broker(t, "primary")
			for _, d := range tt.old {
				if err := conn.PublishDocument(ctx, d, ""); err != nil {
					t.Fatal(err)
				}
			}
			sent, refused, err := publishDocs(ctx, conn, tt.docs, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sent {
				if err := acked(s.Sent, nil); err != nil {
					t.Fatal(err)
				}
			}
			var gotRefused []string
			for _, r := range refused {
				gotRefused = append(gotRefused, r.Doc.Id)
				if r.Err.Limit != tt.limit {
					t.Errorf("refused %s with limit %d, want %d", r.Doc.Id, r.Err.Limit, tt.limit)
				}
			}
			if fmt.Sprint(gotRefused) != fmt.Sprint(tt.wantRefused) {
				t.Errorf("refused %v, want %v", gotRefused, tt.wantRefused)
			}

			cons, err := conn.Documents(ctx, "primary")
			if err != nil {
				t.Fatal(err)
			}
			var sizes []int
			var ids []string
			for len(sizes) < len(tt.wantSizes) {
				msgs, err := cons.Next(ctx, 1000, 2*time.Second, 0)
				if err != nil || len(msgs) == 0 {
					t.Fatalf("got %d messages (%v), want %d", len(sizes), err, len(tt.wantSizes))
				}
				for _, m := range msgs {
					if m.Err != nil {
						t.Fatal(m.Err)
					}
					sizes = append(sizes, len(m.Values))
					for _, d := range m.Values {
						ids = append(ids, d.Id+d.Op.String())
					}
					_ = m.Ack()
				}
			}
			if fmt.Sprint(sizes) != fmt.Sprint(tt.wantSizes) {
				t.Errorf("messages of %v documents, want %v", sizes, tt.wantSizes)
			}
			var want []string
			for _, d := range append(append([]*flussopb.Document{}, tt.old...), tt.docs...) {
				if !strings.HasPrefix(d.Id, "big") {
					want = append(want, d.Id+d.Op.String())
				}
			}
			if fmt.Sprint(ids) != fmt.Sprint(want) {
				t.Errorf("documents delivered %v, want %v", ids, want)
			}
		})
	}
}

// TestNextCountsItems checks that a fetch bounded to n items takes batch
// messages up to n changes or documents in all, at least one message.
func TestNextCountsItems(t *testing.T) {
	tests := []struct {
		max  int
		want int // messages of 100 documents taken
	}{
		{max: 1, want: 1},
		{max: 250, want: 2},
		{max: 1000, want: 5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.max), func(t *testing.T) {
			ctx := ctxT(t)
			conn := testenv.Broker(t, "primary")
			for i := range 5 {
				sent, _, err := publishDocs(ctx, conn, docsOf(fmt.Sprint(i, "-"), 100, 10), broker.MaxPayload)
				if err != nil || len(sent) != 1 {
					t.Fatalf("%d messages (%v), want 1", len(sent), err)
				}
				if err := acked(sent[0].Sent, nil); err != nil {
					t.Fatal(err)
				}
			}
			cons, err := conn.Documents(ctx, "primary")
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := cons.Next(ctx, tt.max, 2*time.Second, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != tt.want {
				t.Errorf("took %d messages, want %d", len(msgs), tt.want)
			}
		})
	}
}

// TestWatchSeesBatchedDocuments checks that a watch of the documents
// stream (the writer's rebuild path) sees documents inside batches.
func TestWatchSeesBatchedDocuments(t *testing.T) {
	ctx := ctxT(t)
	conn := testenv.Broker(t, "primary")
	if err := conn.PublishDocument(ctx, docsOf("old", 1, 10)[0], ""); err != nil {
		t.Fatal(err)
	}
	sent, _, err := publishDocs(ctx, conn, docsOf("a", 10, 10), broker.MaxPayload)
	if err != nil || len(sent) != 1 {
		t.Fatalf("%d messages (%v), want 1", len(sent), err)
	}
	if err := acked(sent[0].Sent, nil); err != nil {
		t.Fatal(err)
	}
	w, err := conn.WatchDocuments(ctx, []string{"users"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(ctx) //nolint:errcheck // expires on its own
	docs, err := w.Fetch(10, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 11 || docs[0].Id != "old0" || docs[10].Id != "a9" {
		t.Errorf("watch saw %d documents, want the old one and the 10 of the batch", len(docs))
	}
}

// TestChangeBatches checks that changes of a transaction travel many to a
// message, that a transaction published again (a capture restarted before
// the slot was confirmed) is deduplicated, and that the assemblers'
// consumer reads every change in order, also from a message of one change
// as versions before batching wrote it.
func TestChangeBatches(t *testing.T) {
	ctx := ctxT(t)
	conn := testenv.Broker(t, "primary")
	old := &flussopb.Change{Op: flussopb.ChangeOp_INSERT, Table: "users", CommitLsn: 5}
	if _, err := conn.PublishChange(ctx, old, "5-0"); err != nil {
		t.Fatal(err)
	}
	txn := make([]*flussopb.Change, 300)
	for i := range txn {
		txn[i] = &flussopb.Change{Op: flussopb.ChangeOp_UPDATE, Table: "users", CommitLsn: 9, Seq: uint32(i),
			New: &flussopb.Row{Columns: map[string]*flussopb.Datum{"id": {Text: fmt.Sprint(i)}}}}
	}
	for range 2 { // the second time, as after a crash
		if err := changes(ctx, conn, txn...); err != nil {
			t.Fatal(err)
		}
	}
	p, err := conn.Progress(ctx, broker.ChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	// 1 + 128 + 128 + 44 changes.
	if p.Pending != 4 {
		t.Errorf("%d messages stored, want 4 (the old change, then the transaction in 3, once)", p.Pending)
	}
	cons, err := conn.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 301 {
		msgs, err := cons.Next(ctx, 1000, 2*time.Second, 0)
		if err != nil || len(msgs) == 0 {
			t.Fatalf("got %d changes (%v), want 301", len(got), err)
		}
		for _, m := range msgs {
			if m.Err != nil {
				t.Fatal(m.Err)
			}
			for _, ch := range m.Values {
				got = append(got, fmt.Sprint(ch.CommitLsn, "-", ch.Seq))
			}
			_ = m.Ack()
		}
	}
	want := []string{"5-0"}
	for i := range txn {
		want = append(want, fmt.Sprint(9, "-", i))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("changes delivered out of order or changed: %v", got)
	}
}

// TestChangeTooLarge checks that a change larger than the broker takes is
// refused on its own, leaving the changes queued before it as they were.
func TestChangeTooLarge(t *testing.T) {
	ctx := ctxT(t)
	conn := testenv.Broker(t, "primary")
	b := conn.ChangeBatcher()
	small := &flussopb.Change{Op: flussopb.ChangeOp_INSERT, Table: "users", CommitLsn: 9}
	if s, err := b.Add(ctx, small); err != nil || s != nil {
		t.Fatalf("queueing a small change: published %v (%v), want nothing yet", s, err)
	}
	big := &flussopb.Change{Op: flussopb.ChangeOp_INSERT, Table: "users", CommitLsn: 9, Seq: 1,
		New: &flussopb.Row{Columns: map[string]*flussopb.Datum{"id": {Text: strings.Repeat("k", broker.MaxPayload)}}}}
	var tooLarge *broker.TooLargeError
	if _, err := b.Add(ctx, big); !errors.As(err, &tooLarge) || tooLarge.Limit != conn.MaxChange() {
		t.Fatalf("queueing a change over the limit: %v, want a TooLargeError naming limit %d", err, conn.MaxChange())
	}
	s, err := b.Flush()
	if err != nil || s == nil || s.Changes != 1 {
		t.Fatalf("flush: %+v (%v), want the small change alone", s, err)
	}
}
