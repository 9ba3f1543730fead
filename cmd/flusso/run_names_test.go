package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestRunRefusesBadNames: a slot or publication name Postgres would refuse
// is a usage error naming the flag, its variable and the rule, and no
// pipeline starts.
func TestRunRefusesBadNames(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"slot flag", []string{"--slot", "Bad-Slot"}, nil, `flusso: --slot (FLUSSO_SLOT) "Bad-Slot": a replication slot name is 1 to 63 lowercase letters, digits and underscores`},
		{"slot variable", nil, map[string]string{"FLUSSO_SLOT": "slot.1"}, `--slot (FLUSSO_SLOT) "slot.1"`},
		{"empty slot", []string{"--slot", ""}, nil, `--slot (FLUSSO_SLOT) ""`},
		{"publication flag", []string{"--publication", "9pub"}, nil, `flusso: --publication (FLUSSO_PUBLICATION) "9pub": a publication name is an unquoted Postgres identifier`},
		{"publication variable", nil, map[string]string{"FLUSSO_PUBLICATION": "Pub"}, `--publication (FLUSSO_PUBLICATION) "Pub"`},
		{"negative grace", []string{"--ready-grace-secs", "-1"}, nil, "--ready-grace-secs (FLUSSO_READY_GRACE_SECS) must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			started := captureRun(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{"run", "-c", specConfig(t), "--lock", filepath.Join(t.TempDir(), "flusso.lock")}, tt.args...)
			code, _, stderr := flusso(t, args...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, exitUsage, tt.want)
			}
			if started.Config != nil {
				t.Fatal("the pipeline was started")
			}
		})
	}
}

// TestCheckRefusesABadPublication: check names the publication the way run
// would refuse it, offline too.
func TestCheckRefusesABadPublication(t *testing.T) {
	for _, args := range [][]string{
		{"check", "-c", "", "--offline", "--publication", "My-Pub"},
		{"check", "-c", "", "--offline", "--format", "json", "--publication", "My-Pub"},
	} {
		args[2] = specConfig(t)
		code, _, stderr := flusso(t, args...)
		want := `flusso: --publication (FLUSSO_PUBLICATION) "My-Pub": a publication name is an unquoted Postgres identifier`
		if code != exitUsage || !strings.Contains(stderr, want) {
			t.Fatalf("%v: exit %d, stderr %q; want %d and %q", args, code, stderr, exitUsage, want)
		}
	}
}
