package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

// quarantineEntry is one entry as a stage writes it; a zero version is an
// assembler's entry, which carries its reason as the body.
type quarantineEntry struct {
	sink, index, id, reason string
	version                 uint64
}

// seedQuarantine sets up a deployment's streams on conn and quarantines
// entries.
func seedQuarantine(t *testing.T, conn *broker.Conn, entries ...quarantineEntry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if err := conn.Setup(ctx, []string{"primary"}); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		msg := &nats.Msg{Subject: broker.QuarantineSubject(e.sink, e.index), Header: nats.Header{}}
		msg.Header.Set(broker.HeaderIndex, e.index)
		msg.Header.Set(broker.HeaderID, e.id)
		if e.version == 0 {
			msg.Data = []byte(e.reason)
		} else {
			msg.Header.Set(broker.HeaderSink, e.sink)
			msg.Header.Set(broker.HeaderReason, e.reason)
			msg.Header.Set(broker.HeaderVersion, strconv.FormatUint(e.version, 10))
			if msg.Data, err = proto.Marshal(&flussopb.Document{Index: e.index, Id: e.id, Op: flussopb.DocOp_UPSERT, Version: e.version}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.JS.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
}

func listed(t *testing.T, args ...string) []broker.QuarantineEntry {
	t.Helper()
	code, stdout, stderr := flusso(t, append([]string{"quarantine", "list", "--format", "json"}, args...)...)
	if code != exitOK {
		t.Fatalf("quarantine list %v: exit %d: %s", args, code, stderr)
	}
	var out []broker.QuarantineEntry
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("quarantine list %v: %v\n%s", args, err, stdout)
	}
	return out
}

func ids(entries []broker.QuarantineEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Sink + "/" + e.Index + "/" + e.ID
	}
	return out
}

func TestQuarantineListAndReplay(t *testing.T) {
	url := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := broker.Connect(ctx, url, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	seedQuarantine(t, conn,
		quarantineEntry{sink: "primary", index: "items", id: "2", reason: "status 400: mapper_parsing_exception", version: 100},
		quarantineEntry{sink: "primary", index: "tags", id: "7", reason: "status 400: strict_dynamic_mapping_exception", version: 200},
		quarantineEntry{sink: broker.AssemblerSink, index: "items", id: "9", reason: "building: bad value"},
	)

	for _, tc := range []struct {
		name  string
		flags []string
		want  []string
	}{
		{"everything", nil, []string{"primary/items/2", "primary/tags/7", "assembler/items/9"}},
		{"one index", []string{"--index", "items"}, []string{"primary/items/2", "assembler/items/9"}},
		{"one sink", []string{"--sink", "primary"}, []string{"primary/items/2", "primary/tags/7"}},
		{"both", []string{"--sink", "assembler", "--index", "items"}, []string{"assembler/items/9"}},
		{"nothing", []string{"--index", "other"}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(listed(t, append([]string{"--nats-url", url}, tc.flags...)...)); !slices.Equal(got, tc.want) {
				t.Errorf("listed %v, want %v", got, tc.want)
			}
		})
	}
	all := listed(t, "--nats-url", url)
	if e := all[0]; e.Version != 100 || e.Reason != "status 400: mapper_parsing_exception" || e.Seq == 0 || e.Time.IsZero() {
		t.Errorf("a sink's entry: %+v", e)
	}
	if e := all[2]; e.Version != 0 || e.Reason != "building: bad value" {
		t.Errorf("an assembler's entry: %+v", e)
	}
	code, human, _ := flusso(t, "quarantine", "list", "--nats-url", url, "--index", "tags")
	if code != exitOK || !strings.HasPrefix(human, "SEQ") || !strings.Contains(human, "strict_dynamic_mapping_exception") {
		t.Errorf("human list: exit %d\n%s", code, human)
	}

	code, stdout, stderr := flusso(t, "quarantine", "replay", "--nats-url", url, "--index", "items")
	if code != exitOK || !strings.Contains(stdout, "replayed 1 entries: 1 documents") || !strings.Contains(stderr, "items/9") {
		t.Fatalf("replay: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if got := ids(listed(t, "--nats-url", url)); !slices.Equal(got, []string{"primary/tags/7", "assembler/items/9"}) {
		t.Errorf("left after the replay: %v", got)
	}
	changes, err := conn.JS.Stream(ctx, broker.ChangesStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := changes.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("want one rebuild request on the changes stream: %v %+v", err, info.State)
	}
	msg, err := changes.GetMsg(ctx, info.State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	var ch flussopb.Change
	if err := proto.Unmarshal(msg.Data, &ch); err != nil {
		t.Fatal(err)
	}
	if ch.Op != flussopb.ChangeOp_BACKFILL || ch.Index != "items" || !slices.Equal(ch.Keys, []string{"2"}) ||
		!slices.Equal(ch.Sinks, []string{"primary"}) || ch.CommitLsn != 100 {
		t.Errorf("rebuild request: %v", &ch)
	}
}

func TestQuarantineOnADataDir(t *testing.T) {
	dir := t.TempDir()
	emb, err := broker.StartEmbedded(filepath.Join(dir, "nats"), nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := emb.Connect(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	seedQuarantine(t, conn, quarantineEntry{sink: "primary", index: "items", id: "2", reason: "refused", version: 5})
	conn.Close()
	emb.Close()

	if got := ids(listed(t, "--data-dir", dir)); !slices.Equal(got, []string{"primary/items/2"}) {
		t.Errorf("listed %v from the data dir", got)
	}

	running, err := broker.StartEmbedded(filepath.Join(dir, "nats"), nil) // as a running pipeline would
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := flusso(t, "quarantine", "list", "--data-dir", dir)
	running.Close()
	if code != exitFailure || !strings.Contains(stderr, "is in use") {
		t.Errorf("a data dir in use: exit %d: %s", code, stderr)
	}

	code, _, stderr = flusso(t, "quarantine", "replay", "--data-dir", filepath.Join(dir, "missing"))
	if code != exitUsage || !strings.Contains(stderr, "no embedded NATS data") {
		t.Errorf("a data dir without NATS data: exit %d: %s", code, stderr)
	}
}

// TestQuarantineThroughTheListener reaches a running one-process
// pipeline's embedded NATS through --nats-listen, with its credentials.
func TestQuarantineThroughTheListener(t *testing.T) {
	emb, err := broker.StartEmbedded(filepath.Join(t.TempDir(), "nats"), &broker.Listener{Addr: "127.0.0.1:0", User: "ops", Password: "pw-123"})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	conn, err := emb.Connect(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	seedQuarantine(t, conn, quarantineEntry{sink: "primary", index: "items", id: "2", reason: "refused", version: 5})

	if got := ids(listed(t, "--nats-url", "nats://ops:pw-123@"+emb.Addr().String())); !slices.Equal(got, []string{"primary/items/2"}) {
		t.Errorf("listed %v through the listener", got)
	}
}
