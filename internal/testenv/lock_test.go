package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRestartWaitsForOtherProcesses restarts the dev NATS server, which no test uses,
// while a child test process holds the NATS service lock, proving that a restart waits
// for the tests of other processes.
func TestRestartWaitsForOtherProcesses(t *testing.T) {
	const hold = 3 * time.Second
	if os.Getenv("TESTENV_HOLD_CHILD") == "1" {
		holdService(t, "nats")
		fmt.Println("LOCKED")
		time.Sleep(hold)
		return
	}
	needsServices(t, "the dev NATS server")
	if os.Getenv("FLUSSO_TEST_NATS_URL") == "" {
		unavailable(t, "the dev NATS server", fmt.Errorf("FLUSSO_TEST_NATS_URL is unset"))
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe, "-test.run", "^TestRestartWaitsForOtherProcesses$", "-test.count=1", "-test.v")
	child.Env = append(os.Environ(), "TESTENV_HOLD_CHILD=1")
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var childOut strings.Builder
	locked := make(chan time.Time, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "LOCKED" {
				locked <- time.Now()
			}
			childOut.WriteString(sc.Text() + "\n")
		}
	}()
	var lockedAt time.Time
	select {
	case lockedAt = <-locked:
	case <-readDone:
		child.Wait()
		t.Fatalf("the child test exited without taking the lock:\n%s", childOut.String())
	}
	RestartService(t, "nats", false)
	if d := time.Since(lockedAt); d < hold {
		t.Errorf("the restart finished %v after the child took the lock; it should have waited for its %v test", d, hold)
	}
	<-readDone
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, childOut.String())
	}
}
