package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/flusso/flusso/pkg/redact"
)

// DatabaseURLVar is the reserved variable that overrides or fills the source
// connection_url. The source is a singleton, so one well-known name is
// unambiguous.
const DatabaseURLVar = "DATABASE_URL"

// Resolve returns the value the pipeline uses: the literal, or the content of
// the variable the reference names (set but empty is returned as empty). An
// unset variable is an error: it names the variable, never a value.
func (v Value) Resolve(env func(string) (string, bool)) (string, error) {
	if v.Env == "" {
		return v.Literal, nil
	}
	s, ok := env(v.Env)
	if !ok {
		return "", fmt.Errorf("environment variable %s is not set", v.Env)
	}
	return s, nil
}

// String shows a reference by name and hides a literal, so a Value can be
// printed or logged without leaking a secret written in the file.
func (v Value) String() string {
	switch {
	case v.Env != "":
		return "${" + v.Env + "}"
	case v.Literal != "":
		return "***"
	}
	return ""
}

// Override records that a reserved deployment variable supplied a value in
// place of the file's. It holds names only, so it is safe to log.
type Override struct {
	Var    string // the reserved variable, e.g. DATABASE_URL
	Key    string // the config key it stands for, e.g. [source].connection_url
	Filled bool   // the file had no value: the variable filled it
}

func (o Override) String() string {
	if o.Filled {
		return o.Var + " fills " + o.Key
	}
	return o.Var + " overrides " + o.Key
}

// reserved returns the reserved variable's value when it is set and not
// empty: an empty assignment (a blank FOO= line in a compose file) does not
// wipe out the file's value.
func reserved(env func(string) (string, bool), name string) (string, bool) {
	s, ok := env(name)
	return s, ok && s != ""
}

// ConnString resolves the source connection URL in the running environment.
// Precedence, highest first: an explicit { env = "X" } connection_url; the
// DATABASE_URL variable; the literal URL or the URL built from the parts;
// otherwise an error. The returned overrides say which reserved variable
// applied, for the caller to log.
func (s Source) ConnString(env func(string) (string, bool)) (string, []Override, error) {
	const key = "[source].connection_url"
	var (
		conn string
		ovs  []Override
	)
	switch db, set := reserved(env, DatabaseURLVar); {
	case s.URL.Env != "":
		v, err := s.URL.Resolve(env)
		if err != nil {
			return "", nil, fmt.Errorf("resolve %s: %w", key, err)
		}
		if !pgURLRE.MatchString(v) {
			return "", nil, fmt.Errorf("resolve %s: the value of %s is not a postgres URL (postgresql://… or postgres://…)", key, s.URL.Env)
		}
		return v, nil, nil
	case set:
		if !pgURLRE.MatchString(db) {
			return "", nil, fmt.Errorf("resolve %s: %s is not a postgres URL (postgresql://… or postgres://…)", key, DatabaseURLVar)
		}
		conn = db
		ovs = []Override{{Var: DatabaseURLVar, Key: key, Filled: !s.URL.IsSet() && s.Parts == nil}}
	case s.URL.Literal != "":
		conn = s.URL.Literal
	case s.Parts != nil:
		u, err := s.Parts.url(env)
		if err != nil {
			return "", nil, fmt.Errorf("resolve %s: %w", key, err)
		}
		conn = u
	default:
		return "", nil, fmt.Errorf("resolve %s: it is not set in the config and %s is not set", key, DatabaseURLVar)
	}
	return conn, ovs, nil
}

// url builds a connection URL from the parts, escaping every component.
func (p *ConnParts) url(env func(string) (string, bool)) (string, error) {
	u := url.URL{Scheme: "postgresql", Path: "/" + p.Database}
	port := strconv.Itoa(p.Port)
	if strings.HasPrefix(p.Host, "/") {
		// A Unix socket directory cannot be a URL host; libpq and pgx take it
		// as the host parameter.
		u.RawQuery = url.Values{"host": {p.Host}, "port": {port}}.Encode()
	} else {
		u.Host = net.JoinHostPort(p.Host, port)
	}
	u.User = url.User(p.User)
	if p.Password.IsSet() {
		pw, err := p.Password.Resolve(env)
		if err != nil {
			return "", fmt.Errorf("password: %w", err)
		}
		u.User = url.UserPassword(p.User, pw)
	}
	return u.String(), nil
}

// Connection is an OpenSearch sink's endpoint and credentials, resolved in
// the running environment.
type Connection struct {
	URL      string
	Username string
	Password string
}

// String hides the password and any credentials in the URL.
func (c Connection) String() string {
	s := redact.String(c.URL)
	if c.Username != "" {
		s += " as " + c.Username
	}
	if c.Password != "" {
		s += " (password set)"
	}
	return s
}

// EnvPrefix is the start of the sink's reserved variables: its name
// uppercased, so [sinks.primary] reads PRIMARY_OPENSEARCH_URL and several
// sinks never collide.
func (s Sink) EnvPrefix() string { return strings.ToUpper(s.Name) }

// Connection resolves an OpenSearch sink's url, username and password. For
// each: an explicit { env = "X" } wins; then <NAME>_OPENSEARCH_URL,
// _USERNAME or _PASSWORD when set; then the literal. url is required,
// username and password are not. The returned overrides say which reserved
// variables applied, for the caller to log.
func (s Sink) Connection(env func(string) (string, bool)) (Connection, []Override, error) {
	if s.Type != OpenSearch {
		return Connection{}, nil, fmt.Errorf("sink %s is a %s sink, it has no connection", s.Name, s.Type)
	}
	var (
		c   Connection
		ovs []Override
	)
	for _, f := range []struct {
		key string
		v   Value
		dst *string
	}{
		{"url", s.URL, &c.URL},
		{"username", s.Username, &c.Username},
		{"password", s.Password, &c.Password},
	} {
		key := "[sinks." + s.Name + "]." + f.key
		name := s.EnvPrefix() + "_OPENSEARCH_" + strings.ToUpper(f.key)
		if f.v.Env != "" {
			v, err := f.v.Resolve(env)
			if err != nil {
				return Connection{}, nil, fmt.Errorf("resolve %s: %w", key, err)
			}
			*f.dst = v
			continue
		}
		if v, ok := reserved(env, name); ok {
			*f.dst = v
			ovs = append(ovs, Override{Var: name, Key: key, Filled: !f.v.IsSet()})
			continue
		}
		*f.dst = f.v.Literal
	}
	key := "[sinks." + s.Name + "].url"
	if c.URL == "" {
		return Connection{}, nil, fmt.Errorf("resolve %s: it is not set in the config and %s_OPENSEARCH_URL is not set", key, s.EnvPrefix())
	}
	if err := validateHTTPURL(c.URL); err != nil {
		return Connection{}, nil, fmt.Errorf("resolve %s: %w", key, err)
	}
	return c, ovs, nil
}
