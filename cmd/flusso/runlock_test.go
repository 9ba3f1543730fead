package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// logTo sends the default logger to a buffer for the rest of the test.
func logTo(t *testing.T) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return &buf
}

// TestRunConfigOrLock: run builds a config only when one is given (--config
// or FLUSSO_CONFIG); otherwise it runs the lock, even with a flusso.toml in
// the working directory, and leaves the lock as it is. A lock that a given
// config refreshes is logged.
func TestRunConfigOrLock(t *testing.T) {
	tests := []struct {
		name       string
		lock       bool   // a lock built from the config with prefix "lock_" is there
		env        string // FLUSSO_CONFIG
		args       []string
		wantErr    string // on stderr; the run starts when empty
		wantPrefix string // of the config run
		wantLog    string // in the log
		lockKept   bool   // the lock's bytes are unchanged (or it is still missing)
	}{
		{name: "lock, config here", lock: true, args: []string{"run"}, wantPrefix: "lock_", lockKept: true},
		{name: "locked, config here", lock: true, args: []string{"run", "--locked"}, wantPrefix: "lock_", lockKept: true},
		{name: "no lock, config here", args: []string{"run"}, lockKept: true,
			wantErr: "flusso: no lock at flusso.lock: build one with flusso build, or run a config with --config flusso.toml\n"},
		{name: "--config over a lock", lock: true, args: []string{"run", "--config", "flusso.toml"}, wantPrefix: "toml_",
			wantLog: `msg="wrote the lock from the config" lock=flusso.lock config=flusso.toml lock_was=stale`},
		{name: "FLUSSO_CONFIG over a lock", lock: true, env: "flusso.toml", args: []string{"run"}, wantPrefix: "toml_",
			wantLog: `msg="wrote the lock from the config" lock=flusso.lock config=flusso.toml lock_was=stale`},
		{name: "--config without a lock", args: []string{"run", "--config", "flusso.toml"}, wantPrefix: "toml_",
			wantLog: `msg="wrote the lock from the config" lock=flusso.lock config=flusso.toml lock_was=missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := captureRun(t)
			log := logTo(t)
			path := specConfig(t)
			t.Chdir(filepath.Dir(path))
			original := mustRead(t, path)
			if tt.lock {
				writeFile(t, path, "prefix = \"lock_\"\n"+original)
				if code, _, stderr := flusso(t, "build", "-o", "flusso.lock"); code != exitOK {
					t.Fatal(stderr)
				}
			}
			writeFile(t, path, "prefix = \"toml_\"\n"+original)
			before, _ := os.ReadFile("flusso.lock")
			if tt.env != "" {
				t.Setenv("FLUSSO_CONFIG", tt.env)
			}

			code, _, stderr := flusso(t, tt.args...)
			switch {
			case tt.wantErr != "" && (code != exitUsage || stderr != tt.wantErr):
				t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr, exitUsage, tt.wantErr)
			case tt.wantErr == "" && code != exitOK:
				t.Fatalf("exit %d: %s", code, stderr)
			case tt.wantErr == "" && (got.Config == nil || got.Config.Prefix != tt.wantPrefix):
				t.Errorf("ran %+v, want the config with prefix %q", got.Config, tt.wantPrefix)
			}
			after, _ := os.ReadFile("flusso.lock")
			if kept := bytes.Equal(before, after); kept != tt.lockKept {
				t.Errorf("lock kept: %v, want %v", kept, tt.lockKept)
			}
			if tt.wantLog != "" && !strings.Contains(log.String(), tt.wantLog) {
				t.Errorf("log %q does not say %q", log, tt.wantLog)
			}
			if tt.lockKept && log.Len() > 0 {
				t.Errorf("log %q, want nothing", log)
			}
		})
	}
}
