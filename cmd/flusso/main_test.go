package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/run"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/schema"
)

// flusso runs a command line in process and returns its exit code and what
// it printed.
func flusso(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), append([]string{"flusso"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// specConfig copies the reference's complete example into a fresh directory
// and returns the config's path.
func specConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"flusso.toml", "users.schema.yml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "pkg", "config", "testdata", "spec", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "flusso.toml")
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "flusso: no command given\n"},
		{"unknown command", []string{"deploy"}, "flusso: unknown command \"deploy\" (see flusso --help)\n"},
		{"argument instead of flag", []string{"build", "flusso.toml"}, "flusso: build takes no arguments, got \"flusso.toml\" (flags go before any argument)\n"},
		{"unknown flag", []string{"build", "--fast"}, "flusso: flag provided but not defined: -fast (see flusso build --help)\n"},
		{"bad format", []string{"check", "--offline", "--format", "xml"}, "flusso: --format must be human or json, not \"xml\"\n"},
		{"online check without config", []string{"check", "-c", "/nonexistent/flusso.toml"}, "flusso: read config: open /nonexistent/flusso.toml: no such file or directory\n"},
		{"missing config", []string{"build", "-c", "/nonexistent/flusso.toml"}, "flusso: read config: open /nonexistent/flusso.toml: no such file or directory\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := flusso(t, tt.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if stderr != tt.want {
				t.Errorf("stderr = %q, want %q", stderr, tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := flusso(t, "--version")
	if code != exitOK || !strings.HasPrefix(stdout, "flusso version ") {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
}

func TestHelpShowsEnvVars(t *testing.T) {
	for cmd, vars := range map[string][]string{
		"build":   {"$FLUSSO_CONFIG", "$FLUSSO_OUT"},
		"check":   {"$FLUSSO_CONFIG", "$FLUSSO_OFFLINE", "$FLUSSO_FORMAT", "$FLUSSO_PUBLICATION", "$FLUSSO_MANAGE_PUBLICATION"},
		"schema":  {"$FLUSSO_SCHEMA"},
		"indexes": {"$FLUSSO_SERVER", "$FLUSSO_ADMIN_USER", "$FLUSSO_ADMIN_PASSWORD"},
		"reindex": {"$FLUSSO_SERVER", "$FLUSSO_ADMIN_USER", "$FLUSSO_ADMIN_PASSWORD"},
		"run": {"$FLUSSO_CONFIG", "$FLUSSO_LOCK", "$FLUSSO_LOCKED", "$FLUSSO_SLOT", "$FLUSSO_PUBLICATION",
			"$FLUSSO_MANAGE_PUBLICATION", "$FLUSSO_SKIP_BACKFILL", "$FLUSSO_PRETTY", "$FLUSSO_QUEUE_CAPACITY",
			"$FLUSSO_PUBLIC_ADDRESS", "$FLUSSO_PRIVATE_ADDRESS", "$FLUSSO_ADMIN_USER", "$FLUSSO_ADMIN_PASSWORD",
			"$FLUSSO_LAG_POLL_SECS", "$FLUSSO_INDEX_PREFIX", "$FLUSSO_NATS_URL", "$FLUSSO_DATA_DIR", "$FLUSSO_ROLE", "$FLUSSO_SINK",
			"$FLUSSO_AUDIT_EVERY", "$FLUSSO_AUDIT_SAMPLE"},
	} {
		code, stdout, _ := flusso(t, cmd, "--help")
		if code != exitOK {
			t.Errorf("%s --help: exit %d", cmd, code)
		}
		for _, v := range vars {
			if !strings.Contains(stdout, v) {
				t.Errorf("%s --help does not show %s", cmd, v)
			}
		}
	}
}

func TestBuild(t *testing.T) {
	path := specConfig(t)
	lock := filepath.Join(t.TempDir(), "out.lock")
	code, stdout, stderr := flusso(t, "build", "--config", path, "-o", lock)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stdout != "built 1 index(es) into "+lock+"\n" {
		t.Errorf("stdout = %q", stdout)
	}
	cfg, err := config.ReadLock(lock)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Indexes) != 1 || cfg.Indexes[0].Schema == nil {
		t.Errorf("lock holds %+v", cfg.Indexes)
	}
}

func TestBuildFromEnv(t *testing.T) {
	path := specConfig(t)
	lock := filepath.Join(t.TempDir(), "env.lock")
	t.Setenv("FLUSSO_CONFIG", path)
	t.Setenv("FLUSSO_OUT", lock)
	if code, _, stderr := flusso(t, "build"); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Error(err)
	}
}

func TestBuildReportsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flusso.toml")
	writeFile(t, path, "on_error = \"never\"\n[source]\ntype = \"mysql\"\n")
	code, stdout, stderr := flusso(t, "build", "-c", path, "-o", filepath.Join(t.TempDir(), "x.lock"))
	if code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	want := "flusso: " + path + `:1:1: on_error: must be "stop" or "skip", not the string "never"` + "\n" +
		"flusso: " + path + `:3:1: source.type: unsupported source type "mysql" (the only source type is "postgres")` + "\n"
	if stderr != want || stdout != "" {
		t.Errorf("stderr = %q\nwant     %q", stderr, want)
	}
}

func TestBuildCannotWrite(t *testing.T) {
	code, _, stderr := flusso(t, "build", "-c", specConfig(t), "-o", filepath.Join(t.TempDir(), "missing", "dir", "flusso.lock"))
	if code != exitFailure {
		t.Errorf("exit %d, want %d (%s)", code, exitFailure, stderr)
	}
}

func TestCheckHuman(t *testing.T) {
	path := specConfig(t)
	code, stdout, stderr := flusso(t, "check", "--offline", "-c", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	ix, err := schema.Load(filepath.Join(filepath.Dir(path), "users.schema.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		path + ": valid",
		"sink primary  opensearch  url https://localhost:9200, password ${OS_PASSWORD}",
		"must cover public.users, public.orders",
		"needs DATABASE_URL, OS_PASSWORD",
		"index users (users.schema.yml, enabled, on_error=stop, hash " + schema.Hash(ix) + ")",
		"    email       keyword   keyword  required, transforms lowercase, trim\n",
		"    orders      has_many  nested   table orders, foreign_key user_id, order_by id asc\n",
		"      total     double    double   required\n",
		"mapping (sinks primary):",
		`"dynamic": "strict"`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestCheckJSON(t *testing.T) {
	t.Setenv("FLUSSO_OFFLINE", "true")
	t.Setenv("FLUSSO_FORMAT", "json")
	t.Setenv("OS_PASSWORD", "must-not-be-printed")
	code, stdout, stderr := flusso(t, "check", "-c", specConfig(t), "--manage-publication", "false")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r struct {
		Publication struct{ Managed bool }
		Indexes     []struct {
			Name       string
			Hash       string
			Definition struct{ Table string }
			Mappings   []struct {
				Sinks   []string
				Mapping map[string]any
			}
		}
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	if r.Publication.Managed {
		t.Error("--manage-publication false did not apply")
	}
	if len(r.Indexes) != 1 || r.Indexes[0].Definition.Table != "users" || len(r.Indexes[0].Hash) != schema.HashLen {
		t.Fatalf("indexes = %+v", r.Indexes)
	}
	m := r.Indexes[0].Mappings
	if len(m) != 1 || !reflect.DeepEqual(m[0].Sinks, []string{"primary"}) || m[0].Mapping["dynamic"] != "strict" {
		t.Errorf("mappings = %+v", m)
	}
	if strings.Contains(stdout, "must-not-be-printed") {
		t.Error("check printed the value of an environment variable")
	}
}

func TestCheckInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flusso.toml")
	writeFile(t, path, "[source]\ntype = \"postgres\"\n[[index]]\nname = \"users\"\nschema = \"users.schema.yml\"\nenabled = true\n")
	writeFile(t, filepath.Join(dir, "users.schema.yml"), "version: 1\ntable: users\nfields: []\nextra: 1\n")
	code, stdout, stderr := flusso(t, "check", "--offline", "-c", path)
	if code != exitUsage || stdout != "" {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
	if !strings.HasPrefix(stderr, "flusso: "+filepath.Join(dir, "users.schema.yml")+":4") {
		t.Errorf("stderr = %q", stderr)
	}
}

func TestSchema(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string
		want []byte
	}{
		{"config", []string{"schema", "config"}, "", config.JSONSchema},
		{"index", []string{"schema", "index"}, "", schema.JSONSchema},
		{"from env", []string{"schema"}, "index", schema.JSONSchema},
		{"argument beats env", []string{"schema", "config"}, "index", config.JSONSchema},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("FLUSSO_SCHEMA", tt.env)
			code, stdout, stderr := flusso(t, tt.args...)
			if code != exitOK || stdout != string(tt.want) {
				t.Errorf("exit %d, stderr %q, stdout starts %.60q", code, stderr, stdout)
			}
		})
	}
	for _, args := range [][]string{{"schema"}, {"schema", "lock"}, {"schema", "config", "index"}} {
		t.Setenv("FLUSSO_SCHEMA", "")
		if code, _, _ := flusso(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// captureRun replaces the pipeline for the test and returns where the
// options of the last run land.
func captureRun(t *testing.T) *run.Options {
	t.Helper()
	var got run.Options
	prev := startPipeline
	startPipeline = func(_ context.Context, o run.Options) error {
		got = o
		return nil
	}
	t.Cleanup(func() { startPipeline = prev })
	return &got
}

func TestRunOptions(t *testing.T) {
	got := captureRun(t)
	path := specConfig(t)
	writeFile(t, path, strings.Replace(mustRead(t, path), "[source]", "prefix = \"cfg_\"\n[server]\npublic_address = \"0.0.0.0:19464\"\nprivate_address = \"0.0.0.0:19465\"\n\n[source]", 1))
	lock := filepath.Join(t.TempDir(), "flusso.lock")

	t.Setenv("FLUSSO_SLOT", "env_slot")
	t.Setenv("FLUSSO_PRIVATE_ADDRESS", "127.0.0.1:29465")
	t.Setenv("FLUSSO_INDEX_PREFIX", "env_")
	t.Setenv("FLUSSO_ROLE", "assembler,writer")
	t.Setenv("FLUSSO_QUARANTINE_MAX_BYTES", "4096")
	t.Setenv("FLUSSO_NATS_REPLICAS", "3")
	t.Setenv("FLUSSO_AUDIT_EVERY", "1h")
	code, _, stderr := flusso(t, "run", "-c", path, "--lock", lock, "--audit-sample", "50",
		"--slot", "flag_slot", "--index-prefix", "flag_", "--manage-publication", "false",
		"--sink", "primary", "--lag-poll-secs", "2", "--nats-url", "nats://nats-0:4222,nats://nats-1:4222", "--quarantine-max-age", "1h",
		"--nats-placement-tags", "ssd,eu")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := run.Options{
		Slot:              "flag_slot",                             // flag over env
		Publication:       "flusso",                                // default
		ManagePublication: false,                                   // flag over [source]
		QueueCapacity:     2000,                                    // default
		PublicAddress:     "0.0.0.0:19464",                         // [server]
		PrivateAddress:    "127.0.0.1:29465",                       // env over [server]
		AdminUser:         "admin",                                 // default
		AdminPassword:     "flusso",                                // default
		LagPoll:           2 * time.Second,                         // flag
		IndexPrefix:       "flag_",                                 // flag over env over config
		NATSURL:           "nats://nats-0:4222,nats://nats-1:4222", // flag
		DataDir:           ".flusso",                               // default
		Roles:             []run.Role{"assembler", "writer"},
		Sinks:             []string{"primary"},
		Version:           buildVersion(), // stamped on stdout envelopes
		Quarantine:        broker.QuarantineLimits{MaxBytes: 4096, MaxAge: time.Hour},
		Placement:         broker.Placement{Replicas: 3, Tags: []string{"ssd", "eu"}}, // env; flag
		AuditEvery:        time.Hour,                                                  // env
		AuditSample:       50,                                                         // flag
	}
	if got.Config == nil || len(got.Config.Indexes) != 1 {
		t.Fatalf("config = %+v", got.Config)
	}
	got.Config = nil
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("options:\n got %+v\nwant %+v", *got, want)
	}
	if err := config.CheckLock(lock, mustLoad(t, path)); err != nil {
		t.Errorf("run did not refresh the lock: %v", err)
	}
}

// TestRunNATSListen reads the opt-in listener of the embedded NATS from the
// environment, as from flags.
func TestRunNATSListen(t *testing.T) {
	got := captureRun(t)
	t.Setenv("FLUSSO_NATS_LISTEN", "127.0.0.1:14222")
	t.Setenv("FLUSSO_NATS_LISTEN_USER", "ops")
	t.Setenv("FLUSSO_NATS_LISTEN_PASSWORD", "pw")
	if code, _, stderr := flusso(t, "run", "-c", specConfig(t), "--lock", filepath.Join(t.TempDir(), "flusso.lock")); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got.NATSListen != "127.0.0.1:14222" || got.NATSListenUser != "ops" || got.NATSListenPassword != "pw" {
		t.Errorf("options = %+v", *got)
	}
}

func TestRunDefaultsFromConfig(t *testing.T) {
	got := captureRun(t)
	path := specConfig(t)
	code, _, stderr := flusso(t, "run", "-c", path, "--lock", filepath.Join(t.TempDir(), "flusso.lock"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got.PublicAddress != config.DefaultPublicAddress || got.PrivateAddress != config.DefaultPrivateAddress ||
		!got.ManagePublication || got.IndexPrefix != "" || got.Roles != nil || got.Sinks != nil {
		t.Errorf("options = %+v", *got)
	}
}

func TestRunFromLock(t *testing.T) {
	got := captureRun(t)
	path := specConfig(t)
	t.Chdir(t.TempDir()) // no flusso.toml here
	if code, _, stderr := flusso(t, "build", "-c", path, "-o", "flusso.lock"); code != exitOK {
		t.Fatal(stderr)
	}
	for _, args := range [][]string{{"run"}, {"run", "--locked"}} {
		*got = run.Options{}
		if code, _, stderr := flusso(t, args...); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		if got.Config == nil || got.Config.Indexes[0].Schema.Table != "users" {
			t.Errorf("%v: config = %+v", args, got.Config)
		}
	}
}

func TestRunRefuses(t *testing.T) {
	captureRun(t)
	path := specConfig(t)
	dir := filepath.Dir(path)
	stale := filepath.Join(dir, "stale.lock")
	if code, _, stderr := flusso(t, "build", "-c", path, "-o", stale); code != exitOK {
		t.Fatal(stderr)
	}
	writeFile(t, path, mustRead(t, path)+"\n[server]\npublic_address = \"0.0.0.0:9464\"\n")
	empty := t.TempDir()

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"locked without lock", []string{"run", "-c", path, "--locked", "--lock", filepath.Join(dir, "none.lock")}, "flusso: --locked: read lock: open " + filepath.Join(dir, "none.lock") + ": no such file or directory\n"},
		{"locked with stale lock", []string{"run", "-c", path, "--locked", "--lock", stale},
			"flusso: --locked: " + stale + ": lock is stale: it was not built from the current flusso.toml; rebuild it with flusso build -c " + path + " -o " + stale + "\n"},
		{"no config, no lock", []string{"run", "--lock", filepath.Join(empty, "flusso.lock")}, "flusso: no lock at " + filepath.Join(empty, "flusso.lock") + ": build one with flusso build, or run a config with --config flusso.toml\n"},
		{"bad role", []string{"run", "-c", path, "--lock", stale, "--role", "indexer"}, "flusso: --role \"indexer\": must be capture, assembler or writer\n"},
		{"unknown sink", []string{"run", "-c", path, "--lock", stale, "--sink", "backup"}, "flusso: --sink \"backup\": no such sink in " + path + "\n"},
		{"bad prefix", []string{"run", "-c", path, "--lock", stale, "--index-prefix", "Dev"}, "flusso: --index-prefix: index prefix \"Dev\" must be lowercase\n"},
		{"bad address", []string{"run", "-c", path, "--lock", stale, "--public-address", "9464"}, "flusso: --public-address: \"9464\" is not a host:port address (e.g. 0.0.0.0:9464)\n"},
		{"nats-listen with nats-url", []string{"run", "-c", path, "--lock", stale, "--nats-listen", "127.0.0.1:4222", "--nats-url", "nats://nats:4222"}, "flusso: --nats-listen opens the embedded NATS, which --nats-url replaces: give one of them\n"},
		{"replicas on the embedded NATS", []string{"run", "-c", path, "--lock", stale, "--nats-replicas", "3"}, "flusso: --nats-replicas above 1 and --nats-placement-tags need a NATS cluster (--nats-url): the embedded NATS is one server\n"},
		{"too many replicas", []string{"run", "-c", path, "--lock", stale, "--nats-url", "nats://nats:4222", "--nats-replicas", "7"}, "flusso: --nats-replicas (FLUSSO_NATS_REPLICAS) must be 1 to 5, not 7\n"},
		{"no replicas", []string{"run", "-c", path, "--lock", stale, "--nats-url", "nats://nats:4222", "--nats-replicas", "0"}, "flusso: --nats-replicas (FLUSSO_NATS_REPLICAS) must be 1 to 5, not 0\n"},
		{"empty placement tag", []string{"run", "-c", path, "--lock", stale, "--nats-url", "nats://nats:4222", "--nats-placement-tags", "ssd,,eu"}, "flusso: --nats-placement-tags (FLUSSO_NATS_PLACEMENT_TAGS) \"ssd,,eu\": a tag must not be empty\n"},
		{"bad nats-listen", []string{"run", "-c", path, "--lock", stale, "--nats-listen", "4222"}, "flusso: --nats-listen: \"4222\" is not a host:port address (e.g. 0.0.0.0:9464)\n"},
		{"bad queue capacity", []string{"run", "-c", path, "--lock", stale, "--queue-capacity", "0"}, "flusso: --queue-capacity must be at least 1, not 0\n"},
		{"bad audit sample", []string{"run", "-c", path, "--lock", stale, "--audit-every", "1h", "--audit-sample", "0"}, "flusso: --audit-every (FLUSSO_AUDIT_EVERY) must not be negative and --audit-sample (FLUSSO_AUDIT_SAMPLE) must be at least 1, not 1h0m0s and 0\n"},
		{"bad bool", []string{"run", "-c", path, "--lock", stale, "--manage-publication", "maybe"}, "flusso: invalid value \"maybe\" for flag -manage-publication: \"maybe\" is not true or false (see flusso run --help)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(empty)
			code, _, stderr := flusso(t, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if stderr != tt.want {
				t.Errorf("stderr:\n got %q\nwant %q", stderr, tt.want)
			}
		})
	}
}

func TestRunFailure(t *testing.T) {
	prev := startPipeline
	startPipeline = func(context.Context, run.Options) error { return errors.New("capture: connection refused") }
	t.Cleanup(func() { startPipeline = prev })
	code, _, stderr := flusso(t, "run", "-c", specConfig(t), "--lock", filepath.Join(t.TempDir(), "flusso.lock"))
	if code != exitFailure || stderr != "flusso: capture: connection refused\n" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestFinalErrorLineHidesSecrets: the error a run ends with may quote a
// connection URL; the line printed for it does not show the secret.
func TestFinalErrorLineHidesSecrets(t *testing.T) {
	prev := startPipeline
	startPipeline = func(context.Context, run.Options) error {
		return errors.New("connecting to NATS at nats://alice:nats-s3cret@nats:4222: context canceled\nand postgres://u@db/x?sslpassword=key-s3cret")
	}
	t.Cleanup(func() { startPipeline = prev })
	_, _, stderr := flusso(t, "run", "-c", specConfig(t), "--lock", filepath.Join(t.TempDir(), "flusso.lock"))
	want := "flusso: connecting to NATS at nats://alice:xxxxx@nats:4222: context canceled\nflusso: and postgres://u@db/x?sslpassword=xxxxx\n"
	if stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
}

func TestIndexesAndReindex(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ops" || p != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/indexes":
			w.Write([]byte(`[{"name":"users","state":"live","generation":3,"docs":1200},{"name":"orders","state":"reindexing","generation":1,"docs":0}]`))
		case r.Method == http.MethodPost && r.URL.Path == "/reindex":
			switch r.URL.Query().Get("index") {
			case "users":
				w.WriteHeader(http.StatusAccepted)
				w.Write([]byte(`{"index":"users","generation":4}`))
			case "orders":
				w.WriteHeader(http.StatusConflict)
				w.Write([]byte(`{"error":"a reindex of orders is already running"}`))
			default:
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(`{"error":"no index named nope"}`))
			}
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	t.Setenv("FLUSSO_SERVER", srv.URL)
	t.Setenv("FLUSSO_ADMIN_USER", "ops")
	auth := []string{"--admin-password", "s3cret"}

	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderrHave string
	}{
		{"indexes table", []string{"indexes"}, exitOK, "NAME    STATE       GENERATION  DOCS\nusers   live        3           1200\norders  reindexing  1           0\n", ""},
		{"indexes json", []string{"indexes", "--format", "json"}, exitOK, "[\n  {\n    \"name\": \"users\",\n    \"state\": \"live\",\n    \"generation\": 3,\n    \"docs\": 1200\n  },\n  {\n    \"name\": \"orders\",\n    \"state\": \"reindexing\",\n    \"generation\": 1,\n    \"docs\": 0\n  }\n]\n", ""},
		{"reindex", []string{"reindex", "users"}, exitOK, "reindex of users started\n", ""},
		{"reindex json", []string{"reindex", "--format", "json", "users"}, exitOK, "{\n  \"generation\": 4,\n  \"index\": \"users\"\n}\n", ""},
		{"reindex unknown", []string{"reindex", "nope"}, exitUsage, "", "404 Not Found: no index named nope"},
		{"reindex running", []string{"reindex", "orders"}, exitFailure, "", "409 Conflict: a reindex of orders is already running"},
		{"reindex no name", []string{"reindex"}, exitUsage, "", "reindex takes one argument: the index name"},
		{"reindex flag after name", []string{"reindex", "users", "--format", "json"}, exitUsage, "", "flags go before the index name: flusso reindex --format json users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{}, tt.args[0]), append(auth, tt.args[1:]...)...)
			code, stdout, stderr := flusso(t, args...)
			if code != tt.code || stdout != tt.stdout || !strings.Contains(stderr, tt.stderrHave) {
				t.Errorf("exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q, stderr with %q", code, stdout, stderr, tt.code, tt.stdout, tt.stderrHave)
			}
		})
	}

	if code, _, stderr := flusso(t, "indexes", "--admin-password", "wrong"); code != exitUsage || !strings.Contains(stderr, "401 Unauthorized") {
		t.Errorf("bad credentials: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := flusso(t, "indexes", "--server", "http://127.0.0.1:1"); code != exitFailure {
		t.Errorf("unreachable server: exit %d, want %d", code, exitFailure)
	}
	if code, _, _ := flusso(t, "indexes", "--server", "127.0.0.1:9465"); code != exitUsage {
		t.Errorf("server without scheme: exit %d, want %d", code, exitUsage)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustLoad(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
