package logging

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
)

// Mask replaces a secret.
const Mask = "xxxxx"

var (
	// urlPasswordRE finds the password of a URL's user info. It runs to the
	// last @ before a blank, so a password with a raw @ is hidden whole.
	urlPasswordRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)\S*@`)
	// keywordPasswordRE finds password=… in libpq keyword/value strings.
	keywordPasswordRE = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
)

// Redact hides the passwords in s: postgres://user:pass@host becomes
// postgres://user:xxxxx@host, and password=… in a keyword/value connection
// string becomes password=xxxxx.
func Redact(s string) string {
	if !strings.Contains(s, "://") && !strings.Contains(strings.ToLower(s), "password") {
		return s // the common case, without running the expressions
	}
	s = urlPasswordRE.ReplaceAllString(s, "${1}"+Mask+"@")
	return keywordPasswordRE.ReplaceAllString(s, "${1}"+Mask)
}

// secretKey reports whether an attribute key names a secret whose value
// is hidden whole.
func secretKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"password", "passwd", "secret", "token", "authorization", "credential", "api_key", "apikey"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// redactAttr hides secrets in an attribute, whatever its kind: values under
// a secret-sounding key entirely, passwords in URLs inside strings, errors
// and anything else that prints.
func redactAttr(a slog.Attr) slog.Attr {
	a.Value = a.Value.Resolve()
	if secretKey(a.Key) && a.Value.Kind() != slog.KindGroup {
		if a.Value.Kind() == slog.KindString && a.Value.String() == "" {
			return a
		}
		return slog.String(a.Key, Mask)
	}
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(Redact(a.Value.String()))
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
			return slog.String(a.Key, Redact(v.Error()))
		case fmt.Stringer:
			text = v.String()
		default:
			text = fmt.Sprintf("%+v", v)
		}
		// Keep the value as it is (a JSON object, say) unless it hid a secret.
		if r := Redact(text); r != text {
			a.Value = slog.StringValue(r)
		}
	}
	return a
}
