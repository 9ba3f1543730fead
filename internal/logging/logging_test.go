package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

func TestParseFilter(t *testing.T) {
	type check struct {
		target string
		level  slog.Level
		want   bool
	}
	tests := []struct {
		spec    string
		wantErr string
		checks  []check
	}{
		{"", "", []check{
			{"flusso", slog.LevelInfo, true}, {"flusso", slog.LevelDebug, false}, {"flusso::capture", slog.LevelInfo, true},
		}},
		{"warn", "", []check{
			{"flusso", slog.LevelWarn, true}, {"flusso", slog.LevelInfo, false}, {"flusso::writer", slog.LevelError, true},
		}},
		{"flusso=debug,info", "", []check{
			{"flusso", slog.LevelDebug, true}, {"flusso::capture", slog.LevelDebug, true},
			{"flusso", LevelTrace, false}, {"other", slog.LevelDebug, true}, // every target is under flusso
		}},
		{"info,capture=trace", "", []check{
			{"flusso::capture", LevelTrace, true}, {"flusso::assembler", slog.LevelDebug, false}, {"flusso", slog.LevelInfo, true},
		}},
		{"flusso::capture=debug,flusso=warn", "", []check{
			{"flusso::capture", slog.LevelDebug, true}, {"flusso::writer", slog.LevelInfo, false}, {"flusso::writer", slog.LevelWarn, true},
		}},
		{"flusso.writer=error, flusso/assembler=DEBUG , INFO", "", []check{
			{"flusso::writer", slog.LevelWarn, false}, {"flusso::assembler", slog.LevelDebug, true}, {"flusso::capture", slog.LevelInfo, true},
		}},
		// Without a bare level, what no directive matches is off, as in tracing.
		{"capture=debug", "", []check{
			{"flusso::capture", slog.LevelDebug, true}, {"flusso::writer", slog.LevelError, false}, {"flusso", slog.LevelError, false},
		}},
		{"capture", "", []check{{"flusso::capture", LevelTrace, true}, {"flusso", slog.LevelError, false}}},
		{"off", "", []check{{"flusso", slog.LevelError, false}}},
		{"info,writer=off", "", []check{{"flusso::writer", slog.LevelError, false}, {"flusso::capture", slog.LevelInfo, true}}},
		{"flusso=debug,flusso=warn", "", []check{{"flusso", slog.LevelInfo, false}, {"flusso", slog.LevelWarn, true}}},
		{"info,,", "", []check{{"flusso", slog.LevelInfo, true}}},
		// Bad directives are reported and left out; the rest applies.
		{"flusso=loud,debug", `ignoring directive "flusso=loud": unknown level "loud"`, []check{
			{"flusso", slog.LevelDebug, true},
		}},
		{"flusso[span]=debug,warn", `ignoring directive "flusso[span]=debug": span and field filters are not supported`, []check{
			{"flusso", slog.LevelInfo, false}, {"flusso", slog.LevelWarn, true},
		}},
		{"=debug,warn", `ignoring directive "=debug"`, []check{{"flusso", slog.LevelWarn, true}}},
		{"fl usso=debug", `is not a target`, []check{{"flusso", slog.LevelInfo, true}}},
		// Nothing usable: the default, info.
		{"verbose=please", `unknown level "please"`, []check{{"flusso", slog.LevelInfo, true}, {"flusso", slog.LevelDebug, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			f, err := ParseFilter(tt.spec)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ParseFilter(%q): %v", tt.spec, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ParseFilter(%q) error %v, want %q", tt.spec, err, tt.wantErr)
			}
			for _, c := range tt.checks {
				if got := f.Enabled(c.target, c.level); got != c.want {
					t.Errorf("Enabled(%s, %v) = %v, want %v", c.target, c.level, got, c.want)
				}
			}
		})
	}
}

func newJSON(t *testing.T, spec string) (*slog.Logger, *bytes.Buffer) {
	t.Helper()
	f, err := ParseFilter(spec)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	return New(&buf, Options{Filter: f, Format: FormatJSON}), &buf
}

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line is not one JSON object: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

var ctx = context.Background()

func TestComponentFiltering(t *testing.T) {
	log, buf := newJSON(t, "warn,capture=debug,writer=trace")
	capture := log.With(ComponentKey, "capture")
	writer := log.With(ComponentKey, "writer")
	server := log.With(ComponentKey, "server")

	capture.Debug("capture debug")
	capture.Log(ctx, LevelTrace, "capture trace")
	writer.Log(ctx, LevelTrace, "writer trace")
	server.Info("server info")
	server.Warn("server warn")
	log.Info("root info")
	log.Error("root error")
	capture.WithGroup("g").With("k", 1).Debug("capture grouped debug")

	var got []string
	for _, m := range lines(t, buf) {
		got = append(got, m["msg"].(string))
	}
	want := "[capture debug writer trace server warn root error capture grouped debug]"
	if fmt.Sprint(got) != want {
		t.Errorf("logged %v, want %v", got, want)
	}
}

func TestJSONFormat(t *testing.T) {
	log, buf := newJSON(t, "trace")
	log.With(ComponentKey, "assembler").Log(ctx, LevelTrace, "built", "index", "users", "n", 3)
	log.WithGroup("batch").Info("flushed", "docs", 10)
	log.Warn("multi\nline message")
	got := lines(t, buf)
	if len(got) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(got), buf)
	}
	first := got[0]
	for k, v := range map[string]any{"level": "TRACE", "msg": "built", "component": "assembler", "index": "users", "n": 3.0} {
		if first[k] != v {
			t.Errorf("%s = %v, want %v (%v)", k, first[k], v, first)
		}
	}
	if _, ok := first["time"]; !ok {
		t.Errorf("no time in %v", first)
	}
	if b, ok := got[1]["batch"].(map[string]any); !ok || b["docs"] != 10.0 {
		t.Errorf("group: %v", got[1])
	}
	if got[2]["level"] != "WARN" || got[2]["msg"] != "multi\nline message" {
		t.Errorf("third line: %v", got[2])
	}
}

func TestTextFormat(t *testing.T) {
	tests := []struct {
		name  string
		color bool
		want  []string
		not   []string
	}{
		{"plain", false, []string{" INFO capture: slot created slot=flusso lag=12 note=\"two words\" err=\"dial: refused\" g.k=v\n"}, []string{"\x1b["}},
		{"color", true, []string{"\x1b[32m INFO\x1b[0m", "\x1b[2mcapture:\x1b[0m slot created", "\x1b[2mslot=\x1b[0mflusso"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := New(&buf, Options{Format: FormatText, Color: tt.color}).With(ComponentKey, "capture")
			log.Info("slot created", "slot", "flusso", "lag", 12, "note", "two words", "err", errors.New("dial: refused"), slog.Group("g", "k", "v"))
			for _, w := range tt.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("%q does not contain %q", buf.String(), w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(buf.String(), n) {
					t.Errorf("%q contains %q", buf.String(), n)
				}
			}
		})
	}
}

type dsn struct{ URL string }

func TestRedaction(t *testing.T) {
	tests := []struct {
		name string
		log  func(*slog.Logger)
		want string
	}{
		{"url attribute", func(l *slog.Logger) { l.Info("connecting", "url", "postgres://flusso:hunter2@db:5432/app") },
			`"url":"postgres://flusso:xxxxx@db:5432/app"`},
		{"url in message", func(l *slog.Logger) { l.Info("connecting to postgresql://u:hunter2@db/app now") },
			`"msg":"connecting to postgresql://u:xxxxx@db/app now"`},
		{"url in error", func(l *slog.Logger) {
			l.Error("failed", "err", fmt.Errorf("connect: %w", errors.New("dial https://admin:hunter2@search:9200: refused")))
		}, `"err":"connect: dial https://admin:xxxxx@search:9200: refused"`},
		{"password with @", func(l *slog.Logger) { l.Info("x", "url", "postgres://u:hun@ter2@db/app") },
			`"url":"postgres://u:xxxxx@db/app"`},
		{"escaped password", func(l *slog.Logger) { l.Info("x", "url", "postgres://u:"+url.QueryEscape("p/ss w:rd")+"@db/app") },
			`"url":"postgres://u:xxxxx@db/app"`},
		{"keyword password", func(l *slog.Logger) { l.Info("x", "conn", "host=db user=u password=hunter2 dbname=app") },
			`"conn":"host=db user=u password=xxxxx dbname=app"`},
		{"quoted keyword password", func(l *slog.Logger) { l.Info("x", "conn", "host=db password='hun ter2' dbname=app") },
			`"conn":"host=db password=xxxxx dbname=app"`},
		{"secret key", func(l *slog.Logger) { l.Info("x", "password", "hunter2", "admin_password", "hunter2", "api_token", 42) },
			`"password":"xxxxx","admin_password":"xxxxx","api_token":"xxxxx"`},
		{"empty secret stays empty", func(l *slog.Logger) { l.Info("x", "password", "") }, `"password":""`},
		{"struct value", func(l *slog.Logger) { l.Info("x", "cfg", dsn{URL: "postgres://u:hunter2@db/app"}) },
			`"cfg":"{URL:postgres://u:xxxxx@db/app}"`},
		{"harmless struct kept", func(l *slog.Logger) { l.Info("x", "cfg", dsn{URL: "postgres://db/app"}) },
			`"cfg":{"URL":"postgres://db/app"}`},
		{"with attrs", func(l *slog.Logger) { l.With("url", "nats://u:hunter2@nats:4222").Info("x") },
			`"url":"nats://u:xxxxx@nats:4222"`},
		{"in a group", func(l *slog.Logger) { l.Info("x", slog.Group("source", "url", "postgres://u:hunter2@db/app")) },
			`"source":{"url":"postgres://u:xxxxx@db/app"}`},
		{"user without password untouched", func(l *slog.Logger) { l.Info("x", "url", "postgres://u@db/app") },
			`"url":"postgres://u@db/app"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := newJSON(t, "info")
			tt.log(log)
			if !strings.Contains(buf.String(), tt.want) {
				t.Errorf("%s does not contain %s", buf, tt.want)
			}
			for _, secret := range []string{"hunter2", "hun ter2", "ter2", "p%2Fss"} {
				if strings.Contains(buf.String(), secret) {
					t.Errorf("secret %q logged: %s", secret, buf)
				}
			}
		})
	}
}

func TestSetup(t *testing.T) {
	defer slog.SetDefault(slog.Default())
	tests := []struct {
		name     string
		env      map[string]string
		wantJSON bool
		want     []string
		not      []string
	}{
		{"defaults", nil, false, []string{"INFO info line"}, []string{"debug line", "WARN"}},
		{"json", map[string]string{EnvFormat: "json"}, true, []string{`"msg":"info line"`}, []string{"debug line"}},
		{"JSON debug", map[string]string{EnvFormat: " JSON ", EnvFilter: "flusso=debug,info"}, true, []string{`"msg":"debug line"`}, nil},
		{"bad format", map[string]string{EnvFormat: "xml"}, false, []string{"FLUSSO_LOG_FORMAT: unknown format, using text", "value=xml"}, nil},
		{"bad directive", map[string]string{EnvFilter: "flusso=chatty,warn"}, false,
			[]string{`WARN RUST_LOG: ignoring directive "flusso=chatty": unknown level "chatty"`}, []string{"info line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			log := Setup(&buf, lookup)
			if slog.Default().Handler() != log.Handler() {
				t.Error("Setup did not install the logger as the default")
			}
			log.Debug("debug line")
			log.Info("info line")
			out := buf.String()
			if tt.wantJSON != strings.HasPrefix(out, "{") {
				t.Errorf("JSON %v, got %q", tt.wantJSON, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("%q does not contain %q", out, w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("%q contains %q", out, n)
				}
			}
			if strings.Contains(out, "\x1b[") {
				t.Errorf("colors on a buffer: %q", out)
			}
		})
	}
}
