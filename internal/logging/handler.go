package logging

import (
	"context"
	"log/slog"

	"github.com/flusso/flusso/pkg/redact"
)

// ComponentKey is the attribute naming the part of flusso a logger belongs
// to; RUST_LOG targets select on it:
//
//	log := base.With(logging.ComponentKey, "capture") // target flusso::capture
const ComponentKey = "component"

// filterHandler applies a Filter by the logger's component and hides
// secrets before the records reach the handler that formats them.
type filterHandler struct {
	next   slog.Handler
	filter *Filter
	target string
	level  slog.Level // filter.Level(target), cached
}

func newFilterHandler(next slog.Handler, f *Filter) *filterHandler {
	return &filterHandler{next: next, filter: f, target: Root, level: f.Level(Root)}
}

func (h *filterHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.level != levelOff && l >= h.level && h.next.Enabled(ctx, l)
}

func (h *filterHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, redact.String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *filterHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redactAttr(a)
		if a.Key == ComponentKey {
			c.target = Root + "::" + a.Value.String()
			c.level = c.filter.Level(c.target)
		}
	}
	c.next = h.next.WithAttrs(red)
	return &c
}

func (h *filterHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}
