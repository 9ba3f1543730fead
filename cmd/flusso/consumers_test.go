package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
)

func TestConsumers(t *testing.T) {
	url := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := testenv.BrokerAt(t, url)
	// Sink b was configured once, then removed: its consumer stays.
	if err := conn.Setup(ctx, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.JS.Publish(ctx, broker.DocsSubject("users"), []byte("doc")); err != nil {
		t.Fatal(err)
	}
	if err := conn.Setup(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	list := func() []broker.WriterState {
		t.Helper()
		code, stdout, stderr := flusso(t, "consumers", "list", "--nats-url", url, "--format", "json")
		if code != exitOK {
			t.Fatalf("consumers list: exit %d: %s", code, stderr)
		}
		var out []broker.WriterState
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatalf("consumers list: %v\n%s", err, stdout)
		}
		return out
	}
	if got := list(); len(got) != 2 || got[1].Sink != "b" || got[1].Pending != 1 {
		t.Fatalf("listed %+v, want a and b, b holding one document", got)
	}
	code, human, _ := flusso(t, "consumers", "list", "--nats-url", url)
	if code != exitOK || !strings.HasPrefix(human, "SINK") || !strings.Contains(human, "writer_b") {
		t.Errorf("human list: exit %d\n%s", code, human)
	}

	tests := []struct {
		name   string
		args   []string
		code   int
		output string // in stdout, or stderr on failure
	}{
		{"no sink", []string{"consumers", "delete", "--nats-url", url}, exitUsage, "takes one SINK"},
		{"deleted", []string{"consumers", "delete", "--nats-url", url, "b"}, exitOK, "deleted consumer writer_b"},
		{"already gone", []string{"consumers", "delete", "--nats-url", url, "b"}, exitUsage, `no writer consumer for sink "b"`},
		{"help", []string{"consumers", "delete", "--help"}, exitOK, "FLUSSO_NATS_URL"},
	}
	for _, tt := range tests {
		code, stdout, stderr := flusso(t, tt.args...)
		if code != tt.code || !strings.Contains(stdout+stderr, tt.output) {
			t.Errorf("%s: exit %d, want %d saying %q\nstdout: %s\nstderr: %s", tt.name, code, tt.code, tt.output, stdout, stderr)
		}
	}
	if got := list(); len(got) != 1 || got[0].Sink != "a" {
		t.Errorf("listed %+v after deleting b, want a alone", got)
	}
}
