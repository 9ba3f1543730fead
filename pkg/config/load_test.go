package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/flusso/flusso/pkg/flow"
)

// writeConfig writes a flusso.toml (and any extra files) into a fresh
// directory and returns the config's path.
func writeConfig(t *testing.T, toml string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "flusso.toml")
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const minimalSource = "[source]\ntype = \"postgres\"\nconnection_url = \"postgres://localhost/app\"\n"

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load(writeConfig(t, minimalSource+`
[sinks.primary]
type = "opensearch"
url = "https://localhost:9200"
`, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path: cfg.Path,
		Source: Source{
			Type:              Postgres,
			URL:               Value{Literal: "postgres://localhost/app"},
			ManagePublication: true,
		},
		Sinks: []Sink{{
			Name: "primary", Type: OpenSearch,
			URL:       Value{Literal: "https://localhost:9200"},
			TLSVerify: true, BatchSize: 1000, MaxBytes: 10485760, TimeoutSecs: 30, MaxRetries: 3,
			NumberOfShards: 1, NumberOfReplicas: 1, RefreshInterval: "10s",
			TextAnalysis: "builtin", AutoSubfields: true,
		}},
		OnError: flow.Stop,
		Server:  Server{PublicAddress: "127.0.0.1:9464", PrivateAddress: "127.0.0.1:9465"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestLoadEveryKey(t *testing.T) {
	cfg, err := Load(writeConfig(t, `
on_error = "skip"
prefix = "dev_"

[source]
type = "postgres"
manage_publication = false

[source.connection_url]
host = "db.internal"
port = 6432
user = "flusso"
password = { env = "PGPASSWORD" }
database = "app"

[sinks.primary]
type = "opensearch"
url = { env = "OS_URL" }
username = "flusso"
password = { env = "OS_PASSWORD" }
tls_verify = false
batch_size = 2000
max_bytes = 5242880
timeout_secs = 60
max_retries = 0
pipeline = "enrich"
number_of_shards = 3
number_of_replicas = 0
refresh_interval = "-1"
text_analysis = "icu"
auto_subfields = false

[sinks.Audit]
type = "stdout"
pretty = true

[server]
public_address = "0.0.0.0:9464"
private_address = ":9465"
`, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path: cfg.Path,
		Source: Source{
			Type:  Postgres,
			Parts: &ConnParts{Host: "db.internal", Port: 6432, User: "flusso", Password: Value{Env: "PGPASSWORD"}, Database: "app"},
		},
		Sinks: []Sink{
			{
				Name: "primary", Type: OpenSearch,
				URL: Value{Env: "OS_URL"}, Username: Value{Literal: "flusso"}, Password: Value{Env: "OS_PASSWORD"},
				BatchSize: 2000, MaxBytes: 5242880, TimeoutSecs: 60, MaxRetries: 0, Pipeline: "enrich",
				NumberOfShards: 3, NumberOfReplicas: 0, RefreshInterval: "-1", TextAnalysis: "icu",
			},
			{Name: "audit", Type: Stdout, Pretty: true},
		},
		OnError: flow.Skip,
		Prefix:  "dev_",
		Server:  Server{PublicAddress: "0.0.0.0:9464", PrivateAddress: ":9465"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestLoadFallsBackToStdout(t *testing.T) {
	cfg, err := Load(writeConfig(t, minimalSource, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []Sink{{Name: StdoutFallback, Type: Stdout}}
	if !reflect.DeepEqual(cfg.Sinks, want) {
		t.Errorf("sinks = %+v, want %+v", cfg.Sinks, want)
	}
}

func TestLoadKeepsSinkOrder(t *testing.T) {
	cfg, err := Load(writeConfig(t, minimalSource+`
[sinks.zeta]
type = "stdout"
[sinks.alpha]
type = "stdout"
[sinks.mid]
type = "stdout"
`, nil))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range cfg.Sinks {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "zeta,alpha,mid" {
		t.Errorf("sink order = %s, want the file's: zeta,alpha,mid", got)
	}
}

func TestLoadConnectionForms(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want Source
	}{
		{"literal", `connection_url = "postgresql://u:p@h:5432/db"`, Source{URL: Value{Literal: "postgresql://u:p@h:5432/db"}}},
		{"env", `connection_url = { env = "PG" }`, Source{URL: Value{Env: "PG"}}},
		{"omitted", ``, Source{}},
		{"parts defaults", "[source.connection_url]\ndatabase = \"db\"", Source{Parts: &ConnParts{Host: "127.0.0.1", Port: 5432, User: "postgres", Database: "db"}}},
		{"parts literal password", "connection_url = { database = \"db\", password = \"pw\" }", Source{Parts: &ConnParts{Host: "127.0.0.1", Port: 5432, User: "postgres", Password: Value{Literal: "pw"}, Database: "db"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(writeConfig(t, "[source]\ntype = \"postgres\"\n"+tt.toml+"\n", nil))
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Type, tt.want.ManagePublication = Postgres, true
			if !reflect.DeepEqual(cfg.Source, tt.want) {
				t.Errorf("source = %+v, want %+v", cfg.Source, tt.want)
			}
		})
	}
}

// TestLoadRejects holds one case per validation rule: the message must name
// the line, the key path and the cause.
func TestLoadRejects(t *testing.T) {
	const sink = minimalSource + "[sinks.primary]\ntype = \"opensearch\"\nurl = \"http://os:9200\"\n"
	const index = minimalSource + "[[index]]\nname = \"users\"\nschema = \"users.schema.yml\"\nenabled = true\n"
	tests := []struct {
		name string
		toml string
		want string // the whole message after the file name
	}{
		// top level
		{"unknown top-level key", "sinkz = 1\n" + minimalSource, `:1:1: sinkz: unknown key (did you mean sinks?)`},
		{"unknown key far from any", "color = 1\n" + minimalSource, `:1:1: color: unknown key (expected one of on_error, prefix, source, sinks, index, server)`},
		{"on_error value", "on_error = \"ignore\"\n" + minimalSource, `:1:1: on_error: must be "stop" or "skip", not the string "ignore"`},
		{"on_error type", "on_error = true\n" + minimalSource, `:1:1: on_error: must be "stop" or "skip", not the boolean true`},
		{"prefix uppercase", "prefix = \"Dev_\"\n" + minimalSource, `:1:1: prefix: index prefix "Dev_" must be lowercase`},
		{"prefix leading underscore", "prefix = \"_dev\"\n" + minimalSource, `:1:1: prefix: index prefix "_dev" must start with a letter or digit`},
		{"prefix forbidden char", "prefix = \"dev*\"\n" + minimalSource, `:1:1: prefix: index prefix "dev*" contains '*', which OpenSearch forbids in index names`},
		{"prefix too long", "prefix = \"" + strings.Repeat("a", 51) + "\"\n" + minimalSource, `:1:1: prefix: index prefix "` + strings.Repeat("a", 51) + `" is longer than 50 bytes`},

		// source
		{"no source", "prefix = \"dev_\"\n", `: source: missing required table [source]`},
		{"source not a table", "source = \"postgres\"\n", `:1:1: source: must be a table, not the string "postgres"`},
		{"source type missing", "[source]\nconnection_url = \"postgres://h/db\"\n", `:1:2: source: missing required key type (the only source type is "postgres")`},
		{"source type unsupported", "[source]\ntype = \"mysql\"\n", `:2:1: source.type: unsupported source type "mysql" (the only source type is "postgres")`},
		{"source unknown key", minimalSource + "slot = \"x\"\n", `:4:1: source.slot: unknown key (expected one of type, connection_url, manage_publication)`},
		{"manage_publication type", minimalSource + "manage_publication = \"yes\"\n", `:4:1: source.manage_publication: must be true or false, not the string "yes"`},
		{"url scheme", "[source]\ntype = \"postgres\"\nconnection_url = \"mysql://h/db\"\n", `:3:1: source.connection_url: must be a postgres URL like postgresql://user@host:5432/db (starting with postgresql:// or postgres://, no spaces)`},
		{"url type", "[source]\ntype = \"postgres\"\nconnection_url = 5432\n", `:3:1: source.connection_url: must be a URL string, { env = "VAR" } or a table of connection parts, not the integer 5432`},
		{"env and parts mixed", "[source]\ntype = \"postgres\"\nconnection_url = { env = \"X\", database = \"db\" }\n", `:3:1: source.connection_url: is either { env = "VAR" } or the connection parts (host, port, user, password, database), not both`},
		{"env empty", "[source]\ntype = \"postgres\"\nconnection_url = { env = \"\" }\n", `:3:20: source.connection_url.env: "" is not an environment variable name`},
		{"env not a string", "[source]\ntype = \"postgres\"\nconnection_url = { env = 1 }\n", `:3:20: source.connection_url.env: must be a string, not the integer 1`},
		{"parts database missing", "[source]\ntype = \"postgres\"\n[source.connection_url]\nhost = \"h\"\n", `:3:9: source.connection_url: missing required key database`},
		{"parts port range", "[source]\ntype = \"postgres\"\n[source.connection_url]\ndatabase = \"db\"\nport = 70000\n", `:5:1: source.connection_url.port: must be between 1 and 65535, not 70000`},
		{"parts port zero", "[source]\ntype = \"postgres\"\n[source.connection_url]\ndatabase = \"db\"\nport = 0\n", `:5:1: source.connection_url.port: must be between 1 and 65535, not 0`},
		{"parts port type", "[source]\ntype = \"postgres\"\n[source.connection_url]\ndatabase = \"db\"\nport = \"5432\"\n", `:5:1: source.connection_url.port: must be an integer, not the string "5432"`},
		{"parts empty host", "[source]\ntype = \"postgres\"\n[source.connection_url]\ndatabase = \"db\"\nhost = \"\"\n", `:5:1: source.connection_url.host: must not be empty`},
		{"parts unknown key", "[source]\ntype = \"postgres\"\n[source.connection_url]\ndatabase = \"db\"\nsslmode = \"require\"\n", `:5:1: source.connection_url.sslmode: unknown key (expected one of host, port, user, password, database)`},
		{"parts password type", "[source]\ntype = \"postgres\"\n[source.connection_url]\ndatabase = \"db\"\npassword = 1234\n", `:5:1: source.connection_url.password: must be a string or { env = "VAR" }, not the integer 1234`},

		// sinks
		{"sinks not a table", "sinks = [\"a\"]\n" + minimalSource, `:1:1: sinks: must be a table, not an array`},
		{"sink name", minimalSource + "[sinks.\"my-sink\"]\ntype = \"stdout\"\n", `:4:8: sinks.my-sink: sink name "my-sink": must be a Postgres identifier: a letter or _, then letters, digits or _`},
		{"sink name length", minimalSource + "[sinks." + strings.Repeat("s", 64) + "]\ntype = \"stdout\"\n", `:4:8: sinks.` + strings.Repeat("s", 64) + `: sink name "` + strings.Repeat("s", 64) + `": longer than 63 characters`},
		{"sink defined twice by case", minimalSource + "[sinks.out]\ntype = \"stdout\"\n[sinks.OUT]\ntype = \"stdout\"\n", `:6:8: sinks.OUT: sink "out" is defined twice (also as [sinks.out])`},
		{"sink type missing", minimalSource + "[sinks.primary]\nurl = \"http://os:9200\"\n", `:4:8: sinks.primary: missing required key type ("opensearch" or "stdout")`},
		{"sink type unknown", minimalSource + "[sinks.primary]\ntype = \"kafka\"\n", `:5:1: sinks.primary.type: unknown sink type "kafka" ("opensearch" or "stdout")`},
		{"stdout unknown key", minimalSource + "[sinks.out]\ntype = \"stdout\"\nurl = \"http://x\"\n", `:6:1: sinks.out.url: unknown key (expected one of type, pretty)`},
		{"stdout pretty type", minimalSource + "[sinks.out]\ntype = \"stdout\"\npretty = 1\n", `:6:1: sinks.out.pretty: must be true or false, not the integer 1`},
		{"opensearch typo", sink + "batchsize = 10\n", `:7:1: sinks.primary.batchsize: unknown key (did you mean batch_size?)`},
		{"opensearch url scheme", minimalSource + "[sinks.primary]\ntype = \"opensearch\"\nurl = \"localhost:9200\"\n", `:6:1: sinks.primary.url: "localhost:9200" is not an http:// or https:// URL`},
		{"opensearch url empty", minimalSource + "[sinks.primary]\ntype = \"opensearch\"\nurl = \"\"\n", `:6:1: sinks.primary.url: must not be empty`},
		{"opensearch node url scheme", minimalSource + "[sinks.primary]\ntype = \"opensearch\"\nurl = \"http://a:9200,ftp://b:9200\"\n", `:6:1: sinks.primary.url: node 2 of 2: "ftp://b:9200" is not an http:// or https:// URL`},
		{"opensearch nodes without scheme", minimalSource + "[sinks.primary]\ntype = \"opensearch\"\nurl = \"http://a:9200,b:9200\"\n", `:6:1: sinks.primary.url: "http://a:9200,b:9200" lists nodes without their scheme: give each its own URL, comma-separated (http://a:9200,http://b:9200)`},
		{"opensearch url redacted", minimalSource + "[sinks.primary]\ntype = \"opensearch\"\nurl = \"ftp://u:secret@h\"\n", `:6:1: sinks.primary.url: "ftp://u:xxxxx@h" is not an http:// or https:// URL`},
		{"opensearch password table", sink + "password = { value = \"x\" }\n", `:7:1: sinks.primary.password: must be a string or { env = "VAR" }, not a table without env`},
		{"opensearch password extra key", sink + "password = { env = \"X\", default = \"x\" }\n", `:7:25: sinks.primary.password.default: unknown key (expected one of env)`},
		{"opensearch tls_verify", sink + "tls_verify = \"false\"\n", `:7:1: sinks.primary.tls_verify: must be true or false, not the string "false"`},
		{"batch_size zero", sink + "batch_size = 0\n", `:7:1: sinks.primary.batch_size: must be at least 1, not 0`},
		{"batch_size float", sink + "batch_size = 1e3\n", `:7:1: sinks.primary.batch_size: must be an integer, not the float 1000`},
		{"max_bytes zero", sink + "max_bytes = 0\n", `:7:1: sinks.primary.max_bytes: must be at least 1, not 0`},
		{"max_bytes huge", sink + "max_bytes = 4294967296\n", `:7:1: sinks.primary.max_bytes: must be between 1 and 2147483647, not 4294967296`},
		{"timeout_secs zero", sink + "timeout_secs = 0\n", `:7:1: sinks.primary.timeout_secs: must be at least 1, not 0`},
		{"max_retries negative", sink + "max_retries = -1\n", `:7:1: sinks.primary.max_retries: must be at least 0, not -1`},
		{"pipeline empty", sink + "pipeline = \"\"\n", `:7:1: sinks.primary.pipeline: must not be empty`},
		{"shards zero", sink + "number_of_shards = 0\n", `:7:1: sinks.primary.number_of_shards: must be between 1 and 1024, not 0`},
		{"replicas negative", sink + "number_of_replicas = -1\n", `:7:1: sinks.primary.number_of_replicas: must be at least 0, not -1`},
		{"refresh_interval", sink + "refresh_interval = \"10 seconds\"\n", `:7:1: sinks.primary.refresh_interval: "10 seconds" is not an OpenSearch time value (e.g. "10s", "1s", "500ms", or "-1" to disable refresh)`},
		{"refresh_interval type", sink + "refresh_interval = 10\n", `:7:1: sinks.primary.refresh_interval: must be a string, not the integer 10`},
		{"text_analysis", sink + "text_analysis = \"smart\"\n", `:7:1: sinks.primary.text_analysis: must be "builtin" or "icu", not "smart"`},
		{"auto_subfields", sink + "auto_subfields = \"no\"\n", `:7:1: sinks.primary.auto_subfields: must be true or false, not the string "no"`},

		// indexes
		{"index not an array", "index = \"users\"\n" + minimalSource, `:1:1: index: must be an array of tables ([[index]] entries), not the string "users"`},
		{"index name missing", minimalSource + "[[index]]\nschema = \"u.yml\"\nenabled = true\n", `:4:3: index[0]: missing required key name`},
		{"index schema missing", minimalSource + "[[index]]\nname = \"u\"\nenabled = true\n", `:4:3: index[0]: missing required key schema`},
		{"index enabled missing", minimalSource + "[[index]]\nname = \"u\"\nschema = \"u.yml\"\n", `:4:3: index[0]: missing required key enabled`},
		{"index enabled type", minimalSource + "[[index]]\nname = \"u\"\nschema = \"u.yml\"\nenabled = \"yes\"\n", `:7:1: index[0].enabled: must be true or false, not the string "yes"`},
		{"index name", minimalSource + "[[index]]\nname = \"2users\"\nschema = \"u.yml\"\nenabled = true\n", `:5:1: index[0].name: index name "2users": must be a Postgres identifier: a letter or _, then letters, digits or _`},
		{"index name refused by OpenSearch", minimalSource + "[[index]]\nname = \"u\"\nschema = \"u.yml\"\nenabled = true\n[[index]]\nname = \" _Users\"\nschema = \"u.yml\"\nenabled = true\n",
			`:9:1: index[1].name: OpenSearch refuses the index name "_users": it must not start with '_'`},
		{"index duplicate", index + "[[index]]\nname = \"Users\"\nschema = \"other.yml\"\nenabled = false\n", `:9:1: index[1].name: index "users" is defined twice (first at line 4)`},
		{"index on_error", index + "on_error = \"retry\"\n", `:8:1: index[0].on_error: must be "stop" or "skip", not the string "retry"`},
		{"index unknown key", index + "sink = \"primary\"\n", `:8:1: index[0].sink: unknown key (expected one of name, schema, enabled, on_error)`},
		{"schema extension", minimalSource + "[[index]]\nname = \"u\"\nschema = \"u.json\"\nenabled = true\n", `:6:1: index[0].schema: "u.json" must end in .yml or .yaml`},
		{"schema not found", index, `:6:1: index[0].schema: schema file ` + "DIR" + `/users.schema.yml not found`},

		// server
		{"server unknown key", minimalSource + "[server]\nport = 9464\n", `:5:1: server.port: unknown key (expected one of public_address, private_address)`},
		{"server address", minimalSource + "[server]\npublic_address = \"9464\"\n", `:5:1: server.public_address: "9464" is not a host:port address (e.g. 0.0.0.0:9464)`},
		{"server port", minimalSource + "[server]\nprivate_address = \"localhost:http\"\n", `:5:1: server.private_address: "localhost:http" has an invalid port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.toml, nil)
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			want := path + strings.ReplaceAll(tt.want, "DIR", filepath.Dir(path))
			if err.Error() != want {
				t.Errorf("error:\n got %s\nwant %s", err, want)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != path {
				t.Errorf("error %v is not a *Error naming %s", err, path)
			}
		})
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	path := writeConfig(t, `
on_error = "never"
[source]
type = "postgres"
[sinks.primary]
type = "opensearch"
batch_size = 0
`, nil)
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		path + `:2:1: on_error: must be "stop" or "skip", not the string "never"`,
		path + `:7:1: sinks.primary.batch_size: must be at least 1, not 0`,
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadBadInput(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, []byte(strings.Repeat("# padding\n", 1<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(dir, "binary.toml")
	if err := os.WriteFile(binary, []byte("\x00\xff\xfe[source\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"empty file", writeConfig(t, "", nil), `: source: missing required table [source]`},
		{"only comments", writeConfig(t, "# nothing here\n", nil), `: source: missing required table [source]`},
		{"syntax error", writeConfig(t, "[source\ntype = \"postgres\"\n", nil), `:1:8: invalid TOML: expected ']' to close table name`},
		{"unterminated string", writeConfig(t, "[source]\ntype = \"postgres\n", nil), `:2:17: invalid TOML: basic strings cannot have new lines`},
		{"duplicate key", writeConfig(t, minimalSource+"type = \"postgres\"\n", nil), `:4:1: type: invalid TOML: key type is already defined`},
		{"binary", binary, `:1:1: invalid TOML: invalid character`},
		{"deeply nested", writeConfig(t, "a = "+strings.Repeat("[", 100000)+strings.Repeat("]", 100000), nil), "invalid TOML: arrays and inline tables are nested more than"},
		{"10 MB file", big, ": file is 10.0 MiB, larger than the 1.0 MiB allowed"},
		{"missing file", filepath.Join(dir, "nope.toml"), ": no such file or directory"},
		{"directory", dir, ": not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.path)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s and say %q", err, tt.path, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
}

// TestLoadSchemaOutsideConfigDir: a schema may live outside the config's
// folder (shared by several deployments): a relative path resolves from the
// config's directory, ../ included, and an absolute one is taken as it is.
func TestLoadSchemaOutsideConfigDir(t *testing.T) {
	root := t.TempDir()
	shared := filepath.Join(root, "shared", "x.schema.yml")
	for _, dir := range []string{"shared", "deploy"} {
		if err := os.Mkdir(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(shared, []byte("version: 1\ntable: things\nfields:\n  - integer: id\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, schema string }{
		{"parent folder", "../shared/x.schema.yml"},
		{"through a subfolder", "sub/../../shared/x.schema.yml"},
		{"absolute", shared},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(root, "deploy", "flusso.toml")
			toml := minimalSource + fmt.Sprintf("[[index]]\nname = \"things\"\nschema = %q\nenabled = true\n", tt.schema)
			if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			ix := cfg.Indexes[0]
			if ix.Schema == nil || ix.Schema.Table != "things" || ix.SchemaPath != tt.schema {
				t.Errorf("index = %+v, schema %+v", ix, ix.Schema)
			}
		})
	}
}
