package broker_test

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

// TestWireFormat checks what each typed operation puts on the wire: the
// subject, headers and message every version of flusso reads, spelled out
// here rather than through the package's constants, so that a process of
// another version keeps understanding them.
func TestWireFormat(t *testing.T) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator()) })
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	traced := trace.ContextWithSpanContext(ctxT(t), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

	change := &flussopb.Change{Op: flussopb.ChangeOp_UPDATE, Schema: "public", Table: "users", CommitLsn: 7, Xid: 3}
	change2 := &flussopb.Change{Op: flussopb.ChangeOp_DELETE, Schema: "public", Table: "users", CommitLsn: 7, Xid: 3, Seq: 1}
	doc := &flussopb.Document{Index: "users", Id: "1", Op: flussopb.DocOp_UPSERT, Body: []byte(`{"a":1}`), Version: 7}
	doc2 := &flussopb.Document{Index: "users", Id: "2", Op: flussopb.DocOp_DELETE_DOC, Version: 7}
	seeded := &flussopb.Document{Index: "users", Op: flussopb.DocOp_SEEDED, Sinks: []string{"primary"}, Generation: 2, Version: 7}
	tests := []struct {
		name    string
		publish func(context.Context, *broker.Conn) error
		stream  string
		subject string
		headers map[string]string // "" : absent
		body    proto.Message     // decodes to this; nil: raw is the body
		raw     string
		newBody func() proto.Message
	}{{
		name: "change",
		publish: func(ctx context.Context, c *broker.Conn) error {
			return changes(traced, c, change)
		},
		stream: "FLUSSO_CHANGES", subject: "flusso.changes",
		headers: map[string]string{"Nats-Msg-Id": "7-0", "Traceparent": traceparent, "Flusso-Batch": ""},
		body:    change, newBody: func() proto.Message { return &flussopb.Change{} },
	}, {
		name: "changes of a transaction",
		publish: func(ctx context.Context, c *broker.Conn) error {
			return changes(traced, c, change, change2)
		},
		stream: "FLUSSO_CHANGES", subject: "flusso.changes",
		headers: map[string]string{"Nats-Msg-Id": "7-0-1", "Traceparent": traceparent, "Flusso-Batch": "2"},
		body:    &flussopb.ChangeBatch{Changes: []*flussopb.Change{change, change2}}, newBody: func() proto.Message { return &flussopb.ChangeBatch{} },
	}, {
		name: "backfill batch",
		publish: func(ctx context.Context, c *broker.Conn) error {
			_, err := c.PublishChange(traced, &flussopb.Change{Op: flussopb.ChangeOp_BACKFILL, Index: "users", Keys: []string{"1"}}, "bf-1")
			return err
		},
		stream: "FLUSSO_CHANGES", subject: "flusso.changes",
		headers: map[string]string{"Nats-Msg-Id": "bf-1", "Traceparent": ""},
		body:    &flussopb.Change{Op: flussopb.ChangeOp_BACKFILL, Index: "users", Keys: []string{"1"}}, newBody: func() proto.Message { return &flussopb.Change{} },
	}, {
		name: "document",
		publish: func(ctx context.Context, c *broker.Conn) error {
			return acked(c.PublishDocumentAsync(traced, doc, broker.MaxPayload))
		},
		stream: "FLUSSO_DOCS", subject: "flusso.docs.users",
		headers: map[string]string{"Traceparent": traceparent, "Nats-Msg-Id": "", "Flusso-Batch": ""},
		body:    doc, newBody: func() proto.Message { return &flussopb.Document{} },
	}, {
		name: "documents",
		publish: func(ctx context.Context, c *broker.Conn) error {
			sent, refused, err := publishDocs(traced, c, []*flussopb.Document{doc, doc2}, broker.MaxPayload)
			if err != nil || len(sent) != 1 || len(refused) != 0 {
				return fmt.Errorf("%d messages, %d refused (%v), want one message", len(sent), len(refused), err)
			}
			return acked(sent[0].Sent, nil)
		},
		stream: "FLUSSO_DOCS", subject: "flusso.docs.users",
		headers: map[string]string{"Traceparent": traceparent, "Nats-Msg-Id": "", "Flusso-Batch": "2"},
		body:    &flussopb.DocumentBatch{Documents: []*flussopb.Document{doc, doc2}}, newBody: func() proto.Message { return &flussopb.DocumentBatch{} },
	}, {
		name: "seeded marker",
		publish: func(ctx context.Context, c *broker.Conn) error {
			return c.PublishDocument(ctx, seeded, "seeded-1-primary")
		},
		stream: "FLUSSO_DOCS", subject: "flusso.docs.users",
		headers: map[string]string{"Nats-Msg-Id": "seeded-1-primary"},
		body:    seeded, newBody: func() proto.Message { return &flussopb.Document{} },
	}, {
		name: "document a sink refused",
		publish: func(ctx context.Context, c *broker.Conn) error {
			return c.PublishQuarantine(ctx, broker.Rejected{Sink: "primary", Index: "users", ID: "1", Version: 7, Reason: "mapping", Doc: doc})
		},
		stream: "FLUSSO_QUARANTINE", subject: "flusso.quarantine.primary.users",
		headers: map[string]string{"Flusso-Sink": "primary", "Flusso-Index": "users", "Flusso-Id": "1", "Flusso-Reason": "mapping", "Flusso-Version": "7"},
		body:    doc, newBody: func() proto.Message { return &flussopb.Document{} },
	}, {
		name: "document that could not be built",
		publish: func(ctx context.Context, c *broker.Conn) error {
			return acked(c.PublishQuarantineAsync(broker.Rejected{Sink: broker.AssemblerSink, Index: "users", ID: "1", Version: 7, Reason: "bad value"}))
		},
		stream: "FLUSSO_QUARANTINE", subject: "flusso.quarantine.assembler.users",
		headers: map[string]string{"Flusso-Sink": "assembler", "Flusso-Index": "users", "Flusso-Id": "1", "Flusso-Reason": "bad value", "Flusso-Version": "7"},
		raw:     "bad value",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t)
			conn := testenv.Broker(t, "primary")
			if err := tt.publish(ctx, conn); err != nil {
				t.Fatalf("publishing: %v", err)
			}
			s, err := conn.JS.Stream(ctx, tt.stream)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := s.GetLastMsgForSubject(ctx, tt.subject)
			if err != nil {
				t.Fatalf("no message on %s: %v", tt.subject, err)
			}
			for k, want := range tt.headers {
				if got := msg.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if tt.body == nil {
				if string(msg.Data) != tt.raw {
					t.Errorf("body %q, want %q", msg.Data, tt.raw)
				}
				return
			}
			got := tt.newBody()
			if err := proto.Unmarshal(msg.Data, got); err != nil {
				t.Fatalf("decoding the body: %v", err)
			}
			if !proto.Equal(got, tt.body) {
				t.Errorf("body %v, want %v", got, tt.body)
			}
		})
	}
}

// acked waits for the stream's answer to an asynchronous publish.
func acked(s broker.Sent, err error) error {
	if err != nil {
		return err
	}
	select {
	case <-s.Ack.Ok():
		return nil
	case err := <-s.Ack.Err():
		return err
	}
}

// changes publishes the changes of one transaction and waits until the
// stream stored them.
func changes(ctx context.Context, c *broker.Conn, chs ...*flussopb.Change) error {
	b := c.ChangeBatcher()
	var sent []*broker.ChangesSent
	for _, ch := range chs {
		s, err := b.Add(ctx, ch)
		if err != nil {
			return err
		}
		if s != nil {
			sent = append(sent, s)
		}
	}
	s, err := b.Flush()
	if err != nil {
		return err
	}
	if s != nil {
		sent = append(sent, s)
	}
	for _, s := range sent {
		select {
		case <-s.Ack.Ok():
		case err := <-s.Ack.Err():
			return err
		}
	}
	return nil
}
