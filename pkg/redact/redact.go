// Package redact hides secrets in text on its way to a log line, an error, /status,
// a metric label, `check` output or a file. Every surface uses String, so a new kind
// of secret is taught here once.
package redact

import (
	"regexp"
	"strings"
)

// Mask replaces a secret.
const Mask = "xxxxx"

var (
	// userinfoRE finds the password of a URL's user info. It runs to the last @
	// before a blank, so a password with a raw @ is hidden whole.
	userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)\S*@`)
	// tokenRE finds a NATS token URL (nats://TOKEN@host): user info without a colon
	// is the secret itself.
	tokenRE = regexp.MustCompile(`(?i)\b((?:nats|tls|ws|wss)://)[^\s:/@]+@`)
	// queryRE finds a secret parameter of a URL query: ?password=…&, ?sslpassword=….
	queryRE = regexp.MustCompile(`(?i)([?&](?:ssl)?(?:password|passwd|pwd|token|secret)=)[^&\s#]*`)
	// keywordRE finds password=… and sslpassword=… in libpq keyword/value strings.
	keywordRE = regexp.MustCompile(`(?i)((?:^|[\s,;(])(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)`)
)

// String hides the secrets in s: postgres://user:pass@host becomes
// postgres://user:xxxxx@host, nats://token@host becomes nats://xxxxx@host, and
// password=, sslpassword= (in a URL query or a keyword/value connection string)
// lose their values.
func String(s string) string {
	lower := strings.ToLower(s)
	if !strings.Contains(s, "://") && !strings.Contains(lower, "password") &&
		!strings.Contains(lower, "token=") && !strings.Contains(lower, "secret=") && !strings.Contains(lower, "pwd=") {
		return s // the common case, without running the expressions
	}
	s = userinfoRE.ReplaceAllString(s, "${1}"+Mask+"@")
	s = tokenRE.ReplaceAllString(s, "${1}"+Mask+"@")
	s = queryRE.ReplaceAllString(s, "${1}"+Mask)
	return keywordRE.ReplaceAllString(s, "${1}"+Mask)
}

// Error is String of err's message; nil stays "".
func Error(err error) string {
	if err == nil {
		return ""
	}
	return String(err.Error())
}

// Key reports whether an attribute or field named key holds a secret whose value is
// hidden whole.
func Key(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"password", "passwd", "secret", "token", "authorization", "credential", "api_key", "apikey"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}
