package logging

import (
	"fmt"
	"log/slog"

	"github.com/flusso/flusso/pkg/redact"
)

// redactAttr hides secrets in an attribute, whatever its kind: values under
// a secret-sounding key entirely, passwords in URLs inside strings, errors
// and anything else that prints.
func redactAttr(a slog.Attr) slog.Attr {
	a.Value = a.Value.Resolve()
	if redact.Key(a.Key) && a.Value.Kind() != slog.KindGroup {
		if a.Value.Kind() == slog.KindString && a.Value.String() == "" {
			return a
		}
		return slog.String(a.Key, redact.Mask)
	}
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(redact.String(a.Value.String()))
	case slog.KindGroup:
		attrs := a.Value.Group()
		out := make([]slog.Attr, len(attrs))
		for i, g := range attrs {
			out[i] = redactAttr(g)
		}
		a.Value = slog.GroupValue(out...)
	case slog.KindAny:
		v := a.Value.Any()
		var text string
		switch v := v.(type) {
		case error:
			// An error is rendered through its message; keep it a string.
			return slog.String(a.Key, redact.String(v.Error()))
		case fmt.Stringer:
			text = v.String()
		default:
			text = fmt.Sprintf("%+v", v)
		}
		// Keep the value as it is (a JSON object, say) unless it hid a secret.
		if r := redact.String(text); r != text {
			a.Value = slog.StringValue(r)
		}
	}
	return a
}
