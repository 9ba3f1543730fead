// Package stdout is the development sink: every document operation is
// written as one JSON envelope, NDJSON or pretty-printed, for reading or
// piping into jq.
//
// Only envelopes go to the writer; logs go to stderr. The sink has no index
// to own, so the lifecycle calls (seeding, reindex, refresh, purge) do
// nothing, and Ensure reports the index unseeded: the pipeline keeps the
// seeding state of a stdout sink itself.
package stdout

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/sink"
)

// Sink writes envelopes to an io.Writer. It is safe for concurrent use;
// each Write call's envelopes are written contiguously, in order.
type Sink struct {
	name    string
	version string
	pretty  bool

	mu  sync.Mutex
	w   io.Writer
	seq uint64
	now func() time.Time
}

var _ sink.Sink = (*Sink)(nil)

// New returns a sink named name writing to w. version is the flusso version
// stamped into every envelope.
func New(name string, w io.Writer, pretty bool, version string) *Sink {
	return &Sink{name: name, version: version, pretty: pretty, w: w, now: time.Now}
}

// envelope is one operation. Fields are declared in alphabetical order so
// the JSON keys come out sorted.
type envelope struct {
	Document json.RawMessage `json:"document,omitempty"`
	ID       string          `json:"id"`
	Index    string          `json:"index"`
	Meta     *meta           `json:"meta,omitempty"`
	Op       string          `json:"op"`
	Seq      uint64          `json:"seq"`
	Sink     string          `json:"sink"`
	TS       string          `json:"ts"`
	Version  string          `json:"version"`
}

type meta struct {
	Bytes  int  `json:"bytes"`
	Fields *int `json:"fields"` // null when the document is not an object
}

// Name is the sink's name from flusso.toml.
func (s *Sink) Name() string { return s.name }

// Ensure reports the index unseeded; stdout holds no state.
func (s *Sink) Ensure(context.Context, flow.Index) (sink.State, error) {
	return sink.State{}, nil
}

// Write prints one envelope per doc. A document that is not valid JSON is
// rejected; a failing writer fails the whole call.
func (s *Sink) Write(_ context.Context, docs []sink.Doc) ([]sink.Rejection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	var (
		buf      bytes.Buffer
		rejected []sink.Rejection
	)
	ts := s.now().UTC().Format("2006-01-02T15:04:05.000Z")
	for _, d := range docs {
		env := envelope{ID: d.ID, Index: d.Index, Sink: s.name, TS: ts, Version: s.version}
		switch d.Op {
		case sink.Upsert:
			var compact bytes.Buffer
			if err := json.Compact(&compact, d.Body); err != nil {
				rejected = append(rejected, sink.Rejection{Doc: d, Reason: fmt.Sprintf("document is not valid JSON: %v", err)})
				continue
			}
			env.Op = "upsert"
			env.Document = compact.Bytes()
			env.Meta = &meta{Bytes: compact.Len(), Fields: topLevelFields(compact.Bytes())}
		case sink.Delete:
			env.Op = "delete"
		default:
			rejected = append(rejected, sink.Rejection{Doc: d, Reason: fmt.Sprintf("unknown operation %d", d.Op)})
			continue
		}
		s.seq++
		env.Seq = s.seq
		if err := s.encode(&buf, &env); err != nil {
			return nil, fmt.Errorf("encode envelope of %s/%s: %w", d.Index, d.ID, err)
		}
	}
	if _, err := s.w.Write(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("write envelopes: %w", err)
	}
	return rejected, nil
}

func (s *Sink) encode(buf *bytes.Buffer, env *envelope) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false) // documents stay as Postgres had them
	if s.pretty {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(env)
}

// topLevelFields counts the keys of a JSON object, nil for any other value.
func topLevelFields(doc []byte) *int {
	var obj map[string]json.RawMessage
	if json.Unmarshal(doc, &obj) != nil || obj == nil {
		return nil
	}
	n := len(obj)
	return &n
}

// Purge does nothing: there is nothing stored to remove.
func (s *Sink) Purge(context.Context, string, uint64) error { return nil }

// State is always unseeded: stdout remembers nothing (see sink.Remembered).
func (s *Sink) State(context.Context, string) (sink.State, error) { return sink.State{}, nil }

// MarkSeeded does nothing.
func (s *Sink) MarkSeeded(context.Context, string, uint32) error { return nil }

// BeginReindex does nothing and returns generation 0: every write reaches
// stdout regardless of generation.
func (s *Sink) BeginReindex(context.Context, string) (uint32, error) { return 0, nil }

// Refresh does nothing: envelopes are visible once written.
func (s *Sink) Refresh(context.Context) error { return nil }

// Close does nothing; the writer belongs to the caller.
func (s *Sink) Close() error { return nil }
