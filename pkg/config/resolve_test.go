package config

import (
	"reflect"
	"strings"
	"testing"
)

// envOf is an environment made of the given variables only.
func envOf(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

func TestValueResolve(t *testing.T) {
	tests := []struct {
		name    string
		v       Value
		env     map[string]string
		want    string
		wantErr string
	}{
		{"literal", Value{Literal: "secret"}, map[string]string{"X": "other"}, "secret", ""},
		{"unset value", Value{}, nil, "", ""},
		{"reference", Value{Env: "X"}, map[string]string{"X": "from-env"}, "from-env", ""},
		{"reference set empty", Value{Env: "X"}, map[string]string{"X": ""}, "", ""},
		{"reference unset", Value{Env: "X"}, nil, "", "environment variable X is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.v.Resolve(envOf(tt.env))
			if msg := errText(err); msg != tt.wantErr {
				t.Fatalf("error = %q, want %q", msg, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValueStringHidesLiterals(t *testing.T) {
	for v, want := range map[Value]string{
		{Literal: "hunter2"}: "***",
		{Env: "OS_PASSWORD"}: "${OS_PASSWORD}",
		{}:                   "",
	} {
		if got := v.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", v, got, want)
		}
	}
}

// TestConnStringPrecedence: { env } reference > DATABASE_URL > literal or
// parts > error.
func TestConnStringPrecedence(t *testing.T) {
	const (
		fileURL = "postgresql://file@h/db"
		envURL  = "postgresql://env@h/db"
		dbURL   = "postgres://database-url@h/db"
	)
	parts := &ConnParts{Host: "db.internal", Port: 6432, User: "flusso", Password: Value{Literal: "p@ss:/w rd"}, Database: "app"}
	tests := []struct {
		name    string
		src     Source
		env     map[string]string
		want    string
		ovs     []string
		wantErr string
	}{
		{"literal", Source{URL: Value{Literal: fileURL}}, nil, fileURL, nil, ""},
		{"DATABASE_URL overrides literal", Source{URL: Value{Literal: fileURL}}, map[string]string{"DATABASE_URL": dbURL}, dbURL, []string{"DATABASE_URL overrides [source].connection_url"}, ""},
		{"empty DATABASE_URL ignored", Source{URL: Value{Literal: fileURL}}, map[string]string{"DATABASE_URL": ""}, fileURL, nil, ""},
		{"reference beats DATABASE_URL", Source{URL: Value{Env: "PG_URL"}}, map[string]string{"PG_URL": envURL, "DATABASE_URL": dbURL}, envURL, nil, ""},
		{"reference to DATABASE_URL", Source{URL: Value{Env: "DATABASE_URL"}}, map[string]string{"DATABASE_URL": dbURL}, dbURL, nil, ""},
		{"reference unset is not rescued", Source{URL: Value{Env: "PG_URL"}}, map[string]string{"DATABASE_URL": dbURL}, "", nil, "resolve [source].connection_url: environment variable PG_URL is not set"},
		{"reference not a postgres URL", Source{URL: Value{Env: "PG_URL"}}, map[string]string{"PG_URL": "mysql://secret@h"}, "", nil, "resolve [source].connection_url: the value of PG_URL is not a postgres URL (postgresql://… or postgres://…)"},
		{"DATABASE_URL fills omitted", Source{}, map[string]string{"DATABASE_URL": dbURL}, dbURL, []string{"DATABASE_URL fills [source].connection_url"}, ""},
		{"DATABASE_URL not a postgres URL", Source{}, map[string]string{"DATABASE_URL": "host=h password=secret"}, "", nil, "resolve [source].connection_url: DATABASE_URL is not a postgres URL (postgresql://… or postgres://…)"},
		{"nothing anywhere", Source{}, nil, "", nil, "resolve [source].connection_url: it is not set in the config and DATABASE_URL is not set"},
		{"parts, password escaped", Source{Parts: parts}, nil, "postgresql://flusso:p%40ss%3A%2Fw%20rd@db.internal:6432/app", nil, ""},
		{"DATABASE_URL overrides parts", Source{Parts: parts}, map[string]string{"DATABASE_URL": dbURL}, dbURL, []string{"DATABASE_URL overrides [source].connection_url"}, ""},
		{"parts without password", Source{Parts: &ConnParts{Host: "127.0.0.1", Port: 5432, User: "postgres", Database: "db"}}, nil, "postgresql://postgres@127.0.0.1:5432/db", nil, ""},
		{"parts, IPv6 host", Source{Parts: &ConnParts{Host: "::1", Port: 5432, User: "postgres", Database: "db"}}, nil, "postgresql://postgres@[::1]:5432/db", nil, ""},
		{"parts, socket directory", Source{Parts: &ConnParts{Host: "/var/run/postgresql", Port: 5432, User: "postgres", Database: "db"}}, nil, "postgresql://postgres@/db?host=%2Fvar%2Frun%2Fpostgresql&port=5432", nil, ""},
		{"parts, password reference", Source{Parts: &ConnParts{Host: "h", Port: 5432, User: "u", Password: Value{Env: "PGPASSWORD"}, Database: "db"}}, map[string]string{"PGPASSWORD": "s3cret"}, "postgresql://u:s3cret@h:5432/db", nil, ""},
		{"parts, password reference unset", Source{Parts: &ConnParts{Host: "h", Port: 5432, User: "u", Password: Value{Env: "PGPASSWORD"}, Database: "db"}}, nil, "", nil, "resolve [source].connection_url: password: environment variable PGPASSWORD is not set"},
		{"DATABASE_URL overrides parts with unset password reference", Source{Parts: &ConnParts{Host: "h", Port: 5432, User: "u", Password: Value{Env: "PGPASSWORD"}, Database: "db"}}, map[string]string{"DATABASE_URL": dbURL}, dbURL, []string{"DATABASE_URL overrides [source].connection_url"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ovs, err := tt.src.ConnString(envOf(tt.env))
			if msg := errText(err); msg != tt.wantErr {
				t.Fatalf("error = %q, want %q", msg, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q leaks a value", err)
			}
			if got != tt.want {
				t.Errorf("url = %q, want %q", got, tt.want)
			}
			if s := overrideTexts(ovs); !reflect.DeepEqual(s, tt.ovs) {
				t.Errorf("overrides = %q, want %q", s, tt.ovs)
			}
		})
	}
}

// TestSinkConnectionPrecedence runs every field of an OpenSearch sink
// through the same matrix: { env } > <NAME>_OPENSEARCH_* > literal > unset.
func TestSinkConnectionPrecedence(t *testing.T) {
	const base = "https://base:9200"
	fields := []struct {
		key      string // config key
		variable string // reserved variable of [sinks.primary]
		set      func(*Sink, Value)
		get      func(Connection) string
	}{
		{"url", "PRIMARY_OPENSEARCH_URL", func(s *Sink, v Value) { s.URL = v }, func(c Connection) string { return c.URL }},
		{"username", "PRIMARY_OPENSEARCH_USERNAME", func(s *Sink, v Value) { s.Username = v }, func(c Connection) string { return c.Username }},
		{"password", "PRIMARY_OPENSEARCH_PASSWORD", func(s *Sink, v Value) { s.Password = v }, func(c Connection) string { return c.Password }},
	}
	cases := []struct {
		name     string
		value    Value
		ref      string // value of $MY_VAR, "" for unset
		reserved string // value of the reserved variable, "" for unset
		want     string // "" with wantErr for an error
		override string // "overrides", "fills" or ""
		wantErr  bool
	}{
		{"literal", Value{Literal: "http://literal:9200"}, "", "", "http://literal:9200", "", false},
		{"reserved overrides literal", Value{Literal: "http://literal:9200"}, "", "http://reserved:9200", "http://reserved:9200", "overrides", false},
		{"reference", Value{Env: "MY_VAR"}, "http://ref:9200", "", "http://ref:9200", "", false},
		{"reference beats reserved", Value{Env: "MY_VAR"}, "http://ref:9200", "http://reserved:9200", "http://ref:9200", "", false},
		{"reference unset", Value{Env: "MY_VAR"}, "", "http://reserved:9200", "", "", true},
		{"reserved fills omitted", Value{}, "", "http://reserved:9200", "http://reserved:9200", "fills", false},
	}
	for _, f := range fields {
		for _, tc := range cases {
			t.Run(f.key+"/"+tc.name, func(t *testing.T) {
				s := Sink{Name: "primary", Type: OpenSearch, URL: Value{Literal: base}}
				f.set(&s, tc.value)
				env := map[string]string{}
				if tc.ref != "" {
					env["MY_VAR"] = tc.ref
				}
				if tc.reserved != "" {
					env[f.variable] = tc.reserved
				}
				c, ovs, err := s.Connection(envOf(env))
				if tc.wantErr {
					want := "resolve [sinks.primary]." + f.key + ": environment variable MY_VAR is not set"
					if errText(err) != want {
						t.Fatalf("error = %q, want %q", errText(err), want)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := f.get(c); got != tc.want {
					t.Errorf("%s = %q, want %q", f.key, got, tc.want)
				}
				var want []string
				if tc.override != "" {
					want = []string{f.variable + " " + tc.override + " [sinks.primary]." + f.key}
				}
				if got := overrideTexts(ovs); !reflect.DeepEqual(got, want) {
					t.Errorf("overrides = %q, want %q", got, want)
				}
			})
		}
	}
}

func TestSinkConnectionErrors(t *testing.T) {
	tests := []struct {
		name    string
		sink    Sink
		env     map[string]string
		wantErr string
	}{
		{"url nowhere", Sink{Name: "primary", Type: OpenSearch}, nil, "resolve [sinks.primary].url: it is not set in the config and PRIMARY_OPENSEARCH_URL is not set"},
		{"reserved url invalid", Sink{Name: "primary", Type: OpenSearch}, map[string]string{"PRIMARY_OPENSEARCH_URL": "opensearch:9200"}, `resolve [sinks.primary].url: "opensearch:9200" is not an http:// or https:// URL`},
		{"reserved node url invalid", Sink{Name: "primary", Type: OpenSearch}, map[string]string{"PRIMARY_OPENSEARCH_URL": "http://os-0:9200, os-1:9200"}, `resolve [sinks.primary].url: "http://os-0:9200, os-1:9200" lists nodes without their scheme: give each its own URL, comma-separated (http://a:9200,http://b:9200)`},
		{"stdout sink", Sink{Name: "audit", Type: Stdout}, nil, "sink audit is a stdout sink, it has no connection"},
		{"names do not collide", Sink{Name: "secondary", Type: OpenSearch}, map[string]string{"PRIMARY_OPENSEARCH_URL": "http://p:9200"}, "resolve [sinks.secondary].url: it is not set in the config and SECONDARY_OPENSEARCH_URL is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.sink.Connection(envOf(tt.env))
			if errText(err) != tt.wantErr {
				t.Errorf("error = %q, want %q", errText(err), tt.wantErr)
			}
		})
	}
}

func TestConnectionStringHidesSecrets(t *testing.T) {
	c := Connection{URL: "https://u:urlsecret@os:9200", Username: "flusso", Password: "pwsecret"}
	s := c.String()
	if strings.Contains(s, "urlsecret") || strings.Contains(s, "pwsecret") {
		t.Errorf("%q shows a secret", s)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func overrideTexts(ovs []Override) []string {
	var out []string
	for _, o := range ovs {
		out = append(out, o.String())
	}
	return out
}
