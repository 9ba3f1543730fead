package logging

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// ANSI colors of the human format.
const (
	reset   = "\x1b[0m"
	dim     = "\x1b[2m"
	red     = "\x1b[31m"
	green   = "\x1b[32m"
	yellow  = "\x1b[33m"
	blue    = "\x1b[34m"
	magenta = "\x1b[35m"
)

// textHandler writes one human-readable line per record:
//
//	2026-06-03T10:20:30.123+02:00  INFO capture: slot created slot=flusso
type textHandler struct {
	mu        *sync.Mutex
	w         io.Writer
	color     bool
	component string
	prefix    string // open groups, "a.b."
	attrs     []byte // preformatted attributes of With
}

func newTextHandler(w io.Writer, color bool) *textHandler {
	return &textHandler{mu: new(sync.Mutex), w: w, color: color}
}

func (h *textHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *textHandler) Handle(_ context.Context, r slog.Record) error {
	var b []byte
	if !r.Time.IsZero() {
		b = h.paint(b, dim, r.Time.Format("2006-01-02T15:04:05.000Z07:00"))
		b = append(b, ' ')
	}
	name, c := levelName(r.Level)
	b = h.paint(b, c, padLeft(name, 5))
	b = append(b, ' ')
	if h.component != "" {
		b = h.paint(b, dim, h.component+":")
		b = append(b, ' ')
	}
	b = append(b, r.Message...)
	b = append(b, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		b = h.appendAttr(b, h.prefix, a)
		return true
	})
	b = append(b, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b)
	return err
}

func (h *textHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]byte(nil), h.attrs...)
	for _, a := range attrs {
		if a.Key == ComponentKey && h.prefix == "" {
			c.component = a.Value.String()
			continue
		}
		c.attrs = h.appendAttr(c.attrs, h.prefix, a)
	}
	return &c
}

func (h *textHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + name + "."
	return &c
}

func (h *textHandler) appendAttr(b []byte, prefix string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			b = h.appendAttr(b, p, g)
		}
		return b
	}
	b = append(b, ' ')
	b = h.paint(b, dim, prefix+a.Key+"=")
	var v string
	switch a.Value.Kind() {
	case slog.KindTime:
		v = a.Value.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			v = err.Error()
		} else {
			v = a.Value.String()
		}
	default:
		v = a.Value.String()
	}
	return append(b, quoteIfNeeded(v)...)
}

func (h *textHandler) paint(b []byte, color, s string) []byte {
	if !h.color || color == "" {
		return append(b, s...)
	}
	b = append(b, color...)
	b = append(b, s...)
	return append(b, reset...)
}

func levelName(l slog.Level) (string, string) {
	switch {
	case l < slog.LevelDebug:
		return "TRACE", magenta
	case l < slog.LevelInfo:
		return "DEBUG", blue
	case l < slog.LevelWarn:
		return "INFO", green
	case l < slog.LevelError:
		return "WARN", yellow
	}
	return "ERROR", red
}

func padLeft(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return strings.Repeat(" ", n-len(s)) + s
}

// quoteIfNeeded quotes values that would not read back as one word.
func quoteIfNeeded(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if unicode.IsSpace(r) || r == '"' || r == '=' || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
