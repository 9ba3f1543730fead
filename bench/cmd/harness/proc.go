package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the harness started and measures through /proc.
type proc struct {
	name string
	role string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc starts argv with its output in logPath. Extra env entries are
// added to the harness's own environment.
func startProc(name, role, logPath string, env []string, argv ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating log of %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// Its own process group: stopping it stops what it forked (PGSync's
	// workers) and nothing else.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, role: role, cmd: cmd, log: logPath, done: make(chan struct{})}
	track(p)
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// wait waits for the process to end by itself.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s did not finish within %s", p.name, timeout)
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if ok, _ := p.exited(); ok {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// usage is what /proc says about a process and its descendants.
type usage struct {
	CPUSeconds float64 `json:"cpu_seconds"` // utime + stime
	RSSMB      float64 `json:"rss_mb"`      // VmRSS now
	PeakRSSMB  float64 `json:"peak_rss_mb"` // VmHWM: the high-water mark since start
}

const clockTicks = 100 // USER_HZ on Linux

// sample reads the CPU time and memory of the process tree. A process that
// already ended reads as zero.
func (p *proc) sample() usage {
	var u usage
	for _, pid := range tree(p.pid()) {
		u.CPUSeconds += cpuSeconds(pid)
		rss, hwm := memory(pid)
		u.RSSMB += rss
		u.PeakRSSMB += hwm
	}
	return u
}

func (u usage) minus(v usage) usage {
	return usage{CPUSeconds: u.CPUSeconds - v.CPUSeconds, RSSMB: u.RSSMB, PeakRSSMB: u.PeakRSSMB}
}

func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; fields count from after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

func memory(pid int) (rssMB, hwmMB float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[0], 64)
		switch k {
		case "VmRSS":
			rssMB = kb / 1024
		case "VmHWM":
			hwmMB = kb / 1024
		}
	}
	return rssMB, hwmMB
}

// tree is pid and its descendants.
func tree(root int) []int {
	parents := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		parents[ppid] = append(parents[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, parents[out[i]]...)
	}
	return out
}

// group is the processes of one deployment.
type group []*proc

func (g group) sample() map[string]usage {
	out := map[string]usage{}
	for _, p := range g {
		out[p.name] = p.sample()
	}
	return out
}

func (g group) stop() {
	for i := len(g) - 1; i >= 0; i-- {
		g[i].stop(30 * time.Second)
	}
}

// failed returns the first process that ended, if any.
func (g group) failed() error {
	for _, p := range g {
		if ok, err := p.exited(); ok {
			if err == nil {
				err = errors.New("exited")
			}
			return fmt.Errorf("%s ended: %v; its log ends with:\n%s", p.name, err, p.tail(15))
		}
	}
	return nil
}

// delta is the CPU spent by each process between two samples, with the
// memory of the later one.
func delta(after, before map[string]usage) map[string]usage {
	out := map[string]usage{}
	for k, a := range after {
		out[k] = a.minus(before[k])
	}
	return out
}

func totalCPU(m map[string]usage) float64 {
	var s float64
	for _, u := range m {
		s += u.CPUSeconds
	}
	return s
}

// services sums the CPU time of the shared services a phase drives: the
// OpenSearch JVM, and the Postgres backends connected to database db (a
// backend that exits between two samples takes its time with it, so the
// Postgres figure is a lower bound). Other users of the same services
// show up here too: the load average in the result file tells.
func services(db string) map[string]float64 {
	return servicesOf(db, osPort)
}

// osPort is the HTTP port of the OpenSearch under test: its JVM is the one
// whose command line sets it.
var osPort = "9200"

func servicesOf(db, port string) map[string]float64 {
	out := map[string]float64{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		switch {
		case strings.HasPrefix(cmd, "java ") && (strings.Contains(cmd, "http.port="+port+" ") || strings.Contains(cmd, "org.opensearch.bootstrap.OpenSearch")):
			out["opensearch"] += cpuSeconds(pid)
		case strings.HasPrefix(cmd, "postgres: ") && strings.Contains(cmd, " "+db+" "):
			out["postgres"] += cpuSeconds(pid)
		}
	}
	return out
}

func servicesDelta(after, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		out[k] = v - before[k]
	}
	return out
}

// loadavg is the 1-minute load average: above the core count, something
// else competed with the benchmark.
func loadavg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
