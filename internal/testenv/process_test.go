package testenv_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/flusso/flusso/internal/testenv"
)

// TestProcessStartsAgainAfterItEnds ends a process in each way a test can and
// starts it again with the same command and log.
func TestProcessStartsAgainAfterItEnds(t *testing.T) {
	tests := []struct {
		name string
		end  func(*testenv.Process)
	}{
		{"stop", (*testenv.Process).Stop},
		{"kill", (*testenv.Process).Kill},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// sh exits 0 on SIGTERM once its trap is set, then says "up".
			p := testenv.NewProcess(t, "sleeper", t.TempDir(), "/bin/sh", "-c", "trap 'exit 0' TERM; echo up; while :; do sleep 0.05; done")
			run := 0
			p.Ready = func() error {
				log, err := os.ReadFile(p.LogFile)
				if err == nil && strings.Count(string(log), "up\n") < run {
					err = errors.New("not up yet")
				}
				return err
			}
			for run = 1; run <= 2; run++ {
				p.Start()
				if done, err := p.Exited(); done {
					t.Fatalf("run %d: %s exited (%v) after Start", run, p.Name, err)
				}
				tt.end(p)
				if done, _ := p.Exited(); !done {
					t.Fatalf("run %d: %s still runs after %s", run, p.Name, tt.name)
				}
			}
			log, err := os.ReadFile(p.LogFile)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(log), "=== start sleeper"); n != 2 {
				t.Errorf("the log marks %d starts, want 2:\n%s", n, log)
			}
		})
	}
}
