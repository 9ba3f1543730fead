package stdout

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/sink"
)

func fixedClock(s *Sink) {
	t0 := time.Date(2026, 6, 3, 10, 20, 30, 123_000_000, time.UTC)
	n := 0
	s.now = func() time.Time {
		n++
		return t0.Add(time.Duration(n-1) * time.Millisecond)
	}
}

func TestEnvelope(t *testing.T) {
	tests := []struct {
		name   string
		pretty bool
		calls  [][]sink.Doc
		want   string
	}{
		{
			name: "spec example",
			calls: [][]sink.Doc{
				{{Index: "users", ID: "42", Op: sink.Upsert, Body: []byte(`{"email": "ada@x.io"}`), Version: 9}},
				{{Index: "users", ID: "7", Op: sink.Delete, Version: 10}},
			},
			want: `{"document":{"email":"ada@x.io"},"id":"42","index":"users","meta":{"bytes":20,"fields":1},"op":"upsert","seq":1,"sink":"stdout","ts":"2026-06-03T10:20:30.123Z","version":"0.1.0"}
{"id":"7","index":"users","op":"delete","seq":2,"sink":"stdout","ts":"2026-06-03T10:20:30.124Z","version":"0.1.0"}
`,
		},
		{
			name: "document kept as given, html not escaped, non-object has null fields",
			calls: [][]sink.Doc{{
				{Index: "notes", ID: "1", Op: sink.Upsert, Body: []byte(`{"z":1,"a":"<b>&"}`)},
				{Index: "notes", ID: "2", Op: sink.Upsert, Body: []byte(`[1,2]`)},
			}},
			want: `{"document":{"z":1,"a":"<b>&"},"id":"1","index":"notes","meta":{"bytes":18,"fields":2},"op":"upsert","seq":1,"sink":"stdout","ts":"2026-06-03T10:20:30.123Z","version":"0.1.0"}
{"document":[1,2],"id":"2","index":"notes","meta":{"bytes":5,"fields":null},"op":"upsert","seq":2,"sink":"stdout","ts":"2026-06-03T10:20:30.123Z","version":"0.1.0"}
`,
		},
		{
			name:   "pretty",
			pretty: true,
			calls:  [][]sink.Doc{{{Index: "users", ID: "42", Op: sink.Upsert, Body: []byte(`{"email":"ada@x.io"}`)}}},
			want: `{
  "document": {
    "email": "ada@x.io"
  },
  "id": "42",
  "index": "users",
  "meta": {
    "bytes": 20,
    "fields": 1
  },
  "op": "upsert",
  "seq": 1,
  "sink": "stdout",
  "ts": "2026-06-03T10:20:30.123Z",
  "version": "0.1.0"
}
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			s := New("stdout", &out, tt.pretty, "0.1.0")
			fixedClock(s)
			for _, docs := range tt.calls {
				rej, err := s.Write(context.Background(), docs)
				if err != nil || len(rej) > 0 {
					t.Fatalf("Write: %v, rejections %v", err, rej)
				}
			}
			if out.String() != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", out.String(), tt.want)
			}
		})
	}
}

func TestRejectsInvalidJSON(t *testing.T) {
	var out bytes.Buffer
	s := New("audit", &out, false, "dev")
	fixedClock(s)
	bad := sink.Doc{Index: "users", ID: "1", Op: sink.Upsert, Body: []byte(`{"a":`)}
	good := sink.Doc{Index: "users", ID: "2", Op: sink.Delete}
	rej, err := s.Write(context.Background(), []sink.Doc{bad, good})
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0].Doc.ID != "1" {
		t.Fatalf("rejections = %+v, want the invalid document", rej)
	}
	want := `{"id":"2","index":"users","op":"delete","seq":1,"sink":"audit","ts":"2026-06-03T10:20:30.123Z","version":"dev"}` + "\n"
	if out.String() != want {
		t.Errorf("got %s want %s", out.String(), want)
	}
}

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriterFailureIsAnError(t *testing.T) {
	s := New("stdout", failing{}, false, "dev")
	_, err := s.Write(context.Background(), []sink.Doc{{Index: "users", ID: "1", Op: sink.Delete}})
	if err == nil {
		t.Fatal("want an error from a failing writer")
	}
}

func TestLifecycleIsSilent(t *testing.T) {
	var out bytes.Buffer
	s := New("stdout", &out, false, "dev")
	ctx := context.Background()
	st, err := s.Ensure(ctx, flow.Index{Name: "users"})
	if err != nil || st.Seeded {
		t.Fatalf("Ensure = %+v, %v; want unseeded", st, err)
	}
	if err := s.MarkSeeded(ctx, "users", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginReindex(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, "users", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Errorf("lifecycle calls printed %q; stdout is for envelopes only", out.String())
	}
}
