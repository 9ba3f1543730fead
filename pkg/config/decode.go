package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/redact"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sink/opensearch"
	"github.com/flusso/flusso/pkg/suggest"
)

// The keys each table accepts; anything else is an error. The JSON Schema
// (config.schema.json) lists the same keys, which a test checks.
var (
	topKeys        = []string{"on_error", "prefix", "source", "sinks", "index", "server"}
	sourceKeys     = []string{"type", "connection_url", "manage_publication"}
	partsKeys      = []string{"host", "port", "user", "password", "database"}
	envKeys        = []string{"env"}
	openSearchKeys = []string{
		"type", "url", "username", "password", "tls_verify", "batch_size", "max_bytes",
		"timeout_secs", "max_retries", "pipeline", "number_of_shards", "number_of_replicas",
		"refresh_interval", "text_analysis", "auto_subfields",
	}
	stdoutKeys = []string{"type", "pretty"}
	indexKeys  = []string{"name", "schema", "enabled", "on_error"}
	serverKeys = []string{"public_address", "private_address"}
)

// Text analysis backends of an OpenSearch sink.
const (
	TextAnalysisBuiltin = "builtin"
	TextAnalysisICU     = "icu"
)

// Parts defaults of [source.connection_url].
const (
	DefaultHost = "127.0.0.1"
	DefaultPort = 5432
	DefaultUser = "postgres"
)

// StdoutFallback names the sink used when the config defines none.
const StdoutFallback = "stdout"

var (
	identRE    = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	pgURLRE    = regexp.MustCompile(`^(postgresql|postgres)://\S+$`)
	intervalRE = regexp.MustCompile(`^(-1|0|[0-9]+(d|h|m|s|ms|micros|nanos))$`)
)

func (l *loader) config(doc map[string]any) *Config {
	cfg := &Config{Path: l.file, OnError: flow.Stop}
	l.unknownKeys(doc, "", topKeys)

	if v, ok := doc["on_error"]; ok {
		cfg.OnError = l.onError(v, "on_error")
	}
	if s, ok := l.str(doc, "", "prefix"); ok {
		if err := ValidatePrefix(s); err != nil {
			l.errorf("prefix", "%w", err)
		}
		cfg.Prefix = s
	}

	if v, ok := doc["source"]; ok {
		cfg.Source = l.source(v)
	} else {
		l.errorf("source", "missing required table [source]")
	}
	cfg.Sinks = l.sinks(doc["sinks"])
	if len(cfg.Sinks) == 0 {
		cfg.Sinks = []Sink{{Name: StdoutFallback, Type: Stdout}}
	}
	cfg.Indexes = l.indexes(doc["index"], cfg.OnError, cfg.Prefix)
	cfg.Server = l.server(doc["server"])
	return cfg
}

func (l *loader) source(v any) Source {
	src := Source{Type: Postgres, ManagePublication: true}
	m, ok := l.table(v, "source", sourceKeys)
	if !ok {
		return src
	}
	switch t, ok := l.str(m, "source", "type"); {
	case !ok:
		if _, present := m["type"]; !present {
			l.errorf("source", `missing required key type (the only source type is "postgres")`)
		}
	case t != Postgres:
		l.errorf("source.type", `unsupported source type %q (the only source type is "postgres")`, t)
	}
	if b, ok := l.boolean(m, "source", "manage_publication"); ok {
		src.ManagePublication = b
	}

	const key = "source.connection_url"
	switch cu := m["connection_url"].(type) {
	case nil:
		// Omitted: DATABASE_URL must supply it at run time.
	case string:
		if !pgURLRE.MatchString(cu) {
			l.errorf(key, "must be a postgres URL like postgresql://user@host:5432/db (starting with postgresql:// or postgres://, no spaces)")
		}
		src.URL = Value{Literal: cu}
	case map[string]any:
		if _, isRef := cu["env"]; isRef {
			if len(cu) > 1 {
				l.errorf(key, `is either { env = "VAR" } or the connection parts (host, port, user, password, database), not both`)
				break
			}
			src.URL = l.value(m, "source", "connection_url")
			break
		}
		src.Parts = l.parts(cu)
	default:
		l.errorf(key, `must be a URL string, { env = "VAR" } or a table of connection parts, not %s`, describe(cu))
	}
	return src
}

func (l *loader) parts(m map[string]any) *ConnParts {
	const base = "source.connection_url"
	l.unknownKeys(m, base, partsKeys)
	p := &ConnParts{Host: DefaultHost, Port: DefaultPort, User: DefaultUser}
	if s, ok := l.nonEmpty(m, base, "host"); ok {
		p.Host = s
	}
	if n, ok := l.integer(m, base, "port", 1, math.MaxUint16); ok {
		p.Port = n
	}
	if s, ok := l.nonEmpty(m, base, "user"); ok {
		p.User = s
	}
	p.Password = l.value(m, base, "password")
	if s, ok := l.nonEmpty(m, base, "database"); ok {
		p.Database = s
	} else if _, present := m["database"]; !present {
		l.errorf(base, "missing required key database")
	}
	return p
}

func (l *loader) sinks(v any) []Sink {
	if v == nil {
		return nil
	}
	m, ok := l.table(v, "sinks", nil)
	if !ok {
		return nil
	}
	var out []Sink
	seen := map[string]string{} // normalized name → key as written
	for _, name := range l.orderedKeys(m, "sinks") {
		key := child("sinks", name)
		norm := strings.ToLower(strings.TrimSpace(name))
		if err := validateIdent(norm); err != nil {
			l.errorf(key, "sink name %q: %w", name, err)
			continue
		}
		if prev, dup := seen[norm]; dup {
			l.errorf(key, "sink %q is defined twice (also as [sinks.%s])", norm, prev)
			continue
		}
		seen[norm] = name
		if s, ok := l.sink(m[name], key, norm); ok {
			out = append(out, s)
		}
	}
	return out
}

func (l *loader) sink(v any, key, name string) (Sink, bool) {
	m, ok := l.table(v, key, nil) // keys depend on the type, checked below
	if !ok {
		return Sink{}, false
	}
	s := Sink{Name: name}
	t, ok := l.str(m, key, "type")
	if !ok {
		if _, present := m["type"]; !present {
			l.errorf(key, `missing required key type ("opensearch" or "stdout")`)
		}
		return s, false
	}
	s.Type = t
	switch t {
	case OpenSearch:
		l.unknownKeys(m, key, openSearchKeys)
		l.openSearch(m, key, &s)
	case Stdout:
		l.unknownKeys(m, key, stdoutKeys)
		if b, ok := l.boolean(m, key, "pretty"); ok {
			s.Pretty = b
		}
	default:
		l.errorf(child(key, "type"), `unknown sink type %q ("opensearch" or "stdout")`, t)
		return s, false
	}
	return s, true
}

func (l *loader) openSearch(m map[string]any, key string, s *Sink) {
	s.TLSVerify = true
	// The sink owns its defaults.
	s.BatchSize = opensearch.DefaultBatchSize
	s.MaxBytes = opensearch.DefaultMaxBytes
	s.TimeoutSecs = int(opensearch.DefaultTimeout / time.Second)
	s.MaxRetries = opensearch.DefaultMaxRetries
	s.NumberOfShards = opensearch.DefaultShards
	s.NumberOfReplicas = opensearch.DefaultReplicas
	s.RefreshInterval = opensearch.DefaultRefreshInterval
	s.TextAnalysis = TextAnalysisBuiltin
	s.AutoSubfields = true

	// url may be omitted: <NAME>_OPENSEARCH_URL can fill it at run time, and
	// only the run-time environment knows whether it does.
	s.URL = l.value(m, key, "url")
	if s.URL.Literal != "" {
		if err := validateHTTPURL(s.URL.Literal); err != nil {
			l.errorf(child(key, "url"), "%w", err)
		}
	} else if lit, ok := m["url"].(string); ok && lit == "" {
		l.errorf(child(key, "url"), "must not be empty")
	}
	s.Username = l.value(m, key, "username")
	s.Password = l.value(m, key, "password")

	if b, ok := l.boolean(m, key, "tls_verify"); ok {
		s.TLSVerify = b
	}
	if n, ok := l.integer(m, key, "batch_size", 1, math.MaxInt32); ok {
		s.BatchSize = n
	}
	if n, ok := l.integer(m, key, "max_bytes", 1, math.MaxInt32); ok {
		s.MaxBytes = n
	}
	if n, ok := l.integer(m, key, "timeout_secs", 1, math.MaxInt32); ok {
		s.TimeoutSecs = n
	}
	if n, ok := l.integer(m, key, "max_retries", 0, math.MaxInt32); ok {
		s.MaxRetries = n
	}
	if p, ok := l.nonEmpty(m, key, "pipeline"); ok {
		s.Pipeline = p
	}
	if n, ok := l.integer(m, key, "number_of_shards", 1, 1024); ok {
		s.NumberOfShards = n
	}
	if n, ok := l.integer(m, key, "number_of_replicas", 0, math.MaxInt32); ok {
		s.NumberOfReplicas = n
	}
	if r, ok := l.str(m, key, "refresh_interval"); ok {
		if !intervalRE.MatchString(r) {
			l.errorf(child(key, "refresh_interval"), `%q is not an OpenSearch time value (e.g. "10s", "1s", "500ms", or "-1" to disable refresh)`, r)
		}
		s.RefreshInterval = r
	}
	if t, ok := l.str(m, key, "text_analysis"); ok {
		if t != TextAnalysisBuiltin && t != TextAnalysisICU {
			l.errorf(child(key, "text_analysis"), `must be "builtin" or "icu", not %q`, t)
		}
		s.TextAnalysis = t
	}
	if b, ok := l.boolean(m, key, "auto_subfields"); ok {
		s.AutoSubfields = b
	}
}

// indexes decodes the [[index]] entries. Each name is also checked as
// OpenSearch will see it, after prefix, unless the prefix is itself refused
// (that is reported once, on its own key).
func (l *loader) indexes(v any, global flow.OnError, prefix string) []Index {
	if v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		l.errorf("index", "must be an array of tables ([[index]] entries), not %s", describe(v))
		return nil
	}
	var out []Index
	seen := map[string]string{} // name → key path of its first entry
	checkNames := ValidatePrefix(prefix) == nil
	for i, e := range list {
		key := fmt.Sprintf("index[%d]", i)
		m, ok := l.table(e, key, indexKeys)
		if !ok {
			continue
		}
		ix := Index{OnError: global}
		name, hasName := l.str(m, key, "name")
		if hasName {
			ix.Name = strings.ToLower(strings.TrimSpace(name))
			if err := validateIdent(ix.Name); err != nil {
				l.errorf(key+".name", "index name %q: %w", name, err)
			} else if prev, dup := seen[ix.Name]; dup {
				p := l.pos.lookup(prev)
				l.errorf(key+".name", "index %q is defined twice (first at line %d)", ix.Name, p.line)
			} else {
				seen[ix.Name] = key
				if err := checkOwnedNames(prefix, ix.Name); checkNames && err != nil {
					// A Postgres identifier may still start with _.
					l.errorf(key+".name", "%w", err)
				}
			}
		} else if _, present := m["name"]; !present {
			l.errorf(key, "missing required key name")
		}
		if p, ok := l.str(m, key, "schema"); ok {
			if err := validateSchemaPath(p); err != nil {
				l.errorf(key+".schema", "%w", err)
			}
			ix.SchemaPath = p
		} else if _, present := m["schema"]; !present {
			l.errorf(key, "missing required key schema")
		}
		if b, ok := l.boolean(m, key, "enabled"); ok {
			ix.Enabled = b
		} else if _, present := m["enabled"]; !present {
			l.errorf(key, "missing required key enabled")
		}
		if v, ok := m["on_error"]; ok {
			ix.OnError = l.onError(v, key+".on_error")
		}
		out = append(out, ix)
	}
	return out
}

func (l *loader) server(v any) Server {
	srv := Server{PublicAddress: DefaultPublicAddress, PrivateAddress: DefaultPrivateAddress}
	if v == nil {
		return srv
	}
	m, ok := l.table(v, "server", serverKeys)
	if !ok {
		return srv
	}
	if a, ok := l.str(m, "server", "public_address"); ok {
		if err := ValidateAddress(a); err != nil {
			l.errorf("server.public_address", "%w", err)
		}
		srv.PublicAddress = a
	}
	if a, ok := l.str(m, "server", "private_address"); ok {
		if err := ValidateAddress(a); err != nil {
			l.errorf("server.private_address", "%w", err)
		}
		srv.PrivateAddress = a
	}
	return srv
}

func (l *loader) onError(v any, key string) flow.OnError {
	s, ok := v.(string)
	if !ok || (s != string(flow.Stop) && s != string(flow.Skip)) {
		l.errorf(key, `must be "stop" or "skip", not %s`, describe(v))
		return flow.Stop
	}
	return flow.OnError(s)
}

// value decodes an env_or_value: a literal string or { env = "VAR" }.
func (l *loader) value(m map[string]any, base, name string) Value {
	key := child(base, name)
	switch v := m[name].(type) {
	case nil:
		return Value{}
	case string:
		return Value{Literal: v}
	case map[string]any:
		if _, isRef := v["env"]; !isRef {
			l.errorf(key, `must be a string or { env = "VAR" }, not a table without env`)
			return Value{}
		}
		l.unknownKeys(v, key, envKeys)
		env, ok := l.str(v, key, "env")
		if !ok {
			return Value{}
		}
		if env == "" || strings.ContainsAny(env, "=\x00") {
			l.errorf(child(key, "env"), "%q is not an environment variable name", env)
		}
		return Value{Env: env}
	default:
		l.errorf(key, `must be a string or { env = "VAR" }, not %s`, describe(v))
		return Value{}
	}
}

// table checks that v is a table and, when known is not nil, that it has no
// other keys.
func (l *loader) table(v any, key string, known []string) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		l.errorf(key, "must be a table, not %s", describe(v))
		return nil, false
	}
	if known != nil {
		l.unknownKeys(m, key, known)
	}
	return m, true
}

func (l *loader) unknownKeys(m map[string]any, base string, known []string) {
	for _, k := range l.orderedKeys(m, base) {
		if slices.Contains(known, k) {
			continue
		}
		if s := suggest.Closest(k, known); s != "" {
			l.errorf(child(base, k), "unknown key (did you mean %s?)", s)
		} else {
			l.errorf(child(base, k), "unknown key (expected one of %s)", strings.Join(known, ", "))
		}
	}
}

// orderedKeys lists the keys of m in the order they are written in the file.
func (l *loader) orderedKeys(m map[string]any, base string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		pa, pb := l.pos.lookup(child(base, a)), l.pos.lookup(child(base, b))
		if pa.line != pb.line {
			return pa.line - pb.line
		}
		if pa.column != pb.column {
			return pa.column - pb.column
		}
		return strings.Compare(a, b)
	})
	return keys
}

// str returns the string at m[name]; ok is false when it is absent or not a
// string (which is reported).
func (l *loader) str(m map[string]any, base, name string) (string, bool) {
	v, present := m[name]
	if !present {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		l.errorf(child(base, name), "must be a string, not %s", describe(v))
	}
	return s, ok
}

// nonEmpty is str for keys where an empty string is a mistake.
func (l *loader) nonEmpty(m map[string]any, base, name string) (string, bool) {
	s, ok := l.str(m, base, name)
	if ok && strings.TrimSpace(s) == "" {
		l.errorf(child(base, name), "must not be empty")
		return "", false
	}
	return s, ok
}

func (l *loader) boolean(m map[string]any, base, name string) (bool, bool) {
	v, present := m[name]
	if !present {
		return false, false
	}
	b, ok := v.(bool)
	if !ok {
		l.errorf(child(base, name), "must be true or false, not %s", describe(v))
	}
	return b, ok
}

func (l *loader) integer(m map[string]any, base, name string, lo, hi int64) (int, bool) {
	v, present := m[name]
	if !present {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		l.errorf(child(base, name), "must be an integer, not %s", describe(v))
		return 0, false
	}
	switch {
	case n < lo && hi == math.MaxInt32:
		l.errorf(child(base, name), "must be at least %d, not %d", lo, n)
	case n < lo || n > hi:
		l.errorf(child(base, name), "must be between %d and %d, not %d", lo, hi, n)
	default:
		return int(n), true
	}
	return 0, false
}

// describe names the TOML type of a decoded value for messages, with the
// value itself when it is short and not a container.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return "the string " + strconv.Quote(v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the float %v", v)
	case bool:
		return fmt.Sprintf("the boolean %t", v)
	case map[string]any:
		return "a table"
	case []any:
		return "an array"
	case time.Time:
		return "a date-time"
	case nil:
		return "nothing"
	}
	return "a date or time"
}

// validateIdent checks a Postgres identifier as flusso accepts them for sink
// and index names (already trimmed and lowercased).
func validateIdent(s string) error {
	if len(s) > 63 {
		return fmt.Errorf("longer than 63 characters")
	}
	if !identRE.MatchString(s) {
		return fmt.Errorf("must be a Postgres identifier: a letter or _, then letters, digits or _")
	}
	return nil
}

// validateSchemaPath checks the schema path of an [[index]] as written. It
// may lead anywhere, ../shared/x.schema.yml or an absolute path included:
// schemas shared by several deployments live outside any one config folder.
func validateSchemaPath(p string) error {
	if !strings.HasSuffix(p, ".yml") && !strings.HasSuffix(p, ".yaml") {
		return fmt.Errorf("%q must end in .yml or .yaml", p)
	}
	return nil
}

// validateHTTPURL checks a sink's url: one node's base URL or several,
// comma-separated, each an http:// or https:// URL.
func validateHTTPURL(s string) error {
	nodes := opensearch.Nodes(s)
	for i, n := range nodes {
		u, err := url.Parse(n)
		switch {
		case strings.Contains(authority(n), ","):
			return fmt.Errorf("%q lists nodes without their scheme: give each its own URL, comma-separated (http://a:9200,http://b:9200)", redact.String(n))
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			if len(nodes) > 1 {
				return fmt.Errorf("node %d of %d: %q is not an http:// or https:// URL", i+1, len(nodes), redact.String(n))
			}
			return fmt.Errorf("%q is not an http:// or https:// URL", redact.String(n))
		}
	}
	if len(nodes) == 0 {
		return errors.New("must not be empty")
	}
	return nil
}

// authority is the host and port part of a URL: after the scheme and any
// user info, before the path.
func authority(u string) string {
	_, rest, _ := strings.Cut(u, "://")
	rest, _, _ = strings.Cut(rest, "/")
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	return rest
}

// ValidateAddress checks an HTTP bind address: host:port, host optional.
func ValidateAddress(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not a host:port address (e.g. 0.0.0.0:9464)", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > math.MaxUint16 {
		return fmt.Errorf("%q has an invalid port", a)
	}
	return nil
}

// indexNameForbidden are the characters an OpenSearch index name may not
// hold (the comma would also split a multi-index search), and +, which it
// refuses only in first place but a URL may read as a space anywhere.
const indexNameForbidden = ` ,:"*+/\|?#<>`

// maxIndexName is the longest index name OpenSearch accepts, in bytes.
const maxIndexName = 255

// ValidateIndexName checks a whole OpenSearch index name, prefix included,
// against the rules OpenSearch applies when it creates one.
func ValidateIndexName(n string) error {
	switch {
	case n == "":
		return errors.New("it must not be empty")
	case n == "." || n == "..":
		return fmt.Errorf("%q is reserved", n)
	case len(n) > maxIndexName:
		return fmt.Errorf("it is %d bytes long, more than the %d allowed", len(n), maxIndexName)
	case strings.ContainsAny(n, indexNameForbidden):
		return fmt.Errorf("it contains %q", n[strings.IndexAny(n, indexNameForbidden)])
	case strings.ToLower(n) != n:
		return errors.New("it must be lowercase")
	case strings.ContainsAny(n[:1], "_-+"):
		return fmt.Errorf("it must not start with %q", n[0])
	}
	return nil
}

// checkOwnedNames checks the OpenSearch names flusso gives the logical
// index name under prefix: the alias prefix+name and, the longest, its
// generations prefix+name_<hash>_<generation> (see pkg/sink/opensearch).
func checkOwnedNames(prefix, name string) error {
	full := prefix + name
	longest := fmt.Sprintf("%s_%s_%d", full, strings.Repeat("f", schema.HashLen), uint32(math.MaxUint32))
	for _, n := range []string{full, longest} {
		if err := ValidateIndexName(n); err != nil {
			how := ""
			if prefix != "" {
				how = fmt.Sprintf(" (prefix %q + index name %q)", prefix, name)
			}
			return fmt.Errorf("OpenSearch refuses the index name %q%s: %w", n, how, err)
		}
	}
	return nil
}

// CheckPrefix checks an index prefix given at run time (--index-prefix,
// FLUSSO_INDEX_PREFIX) the way Load checks the config's own: on its own, then
// before the name of every index of c.
func (c *Config) CheckPrefix(prefix string) error {
	if err := ValidatePrefix(prefix); err != nil {
		return err
	}
	for i, ix := range c.Indexes {
		if err := checkOwnedNames(prefix, ix.Name); err != nil {
			return fmt.Errorf("index[%d] of %s: %w", i, c.Path, err)
		}
	}
	return nil
}

// ValidatePrefix checks an index prefix: it is prepended verbatim to every
// index name flusso owns, so it must be a legal start of an OpenSearch index
// name. The empty prefix (none) is valid.
func ValidatePrefix(p string) error {
	switch {
	case p == "":
		return nil
	case len(p) > 50:
		return fmt.Errorf("index prefix %q is longer than 50 bytes", p)
	case strings.ContainsAny(p, indexNameForbidden):
		i := strings.IndexAny(p, indexNameForbidden)
		return fmt.Errorf("index prefix %q contains %q, which OpenSearch forbids in index names", p, p[i])
	case strings.ToLower(p) != p:
		return fmt.Errorf("index prefix %q must be lowercase", p)
	}
	if c := p[0]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
		return fmt.Errorf("index prefix %q must start with a letter or digit", p)
	}
	return nil
}
