// Package faults injects the faults production brings into a running
// one-process `flusso run` against real Postgres, NATS and OpenSearch:
// refusing and slow sinks (through internal/faultproxy in front of
// OpenSearch), big rows, big transactions, source DDL and an open broker
// port. Each scenario ends with the index equal to a fresh build from
// Postgres and the slot confirmed to the end, and logs one "fault report"
// line: what was injected, what /status showed and the figures.
//
// FLUSSO_FAULTS_LONG=1 (make faults) runs longer faults and bigger volumes.
package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/flusso/flusso/internal/faultproxy"
	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
)

// What the scenarios need from the fixes of issue 14 that are built on
// other branches: adjust here once they are merged.
const (
	// readyGraceEnv sets how long (whole seconds) a stage may stay degraded
	// before /readyz answers 503; readyGrace is what the DDL scenario sets.
	readyGraceEnv = "FLUSSO_READY_GRACE_SECS"
	readyGrace    = 5 * time.Second
	// natsListenFlag opts a one-process run into a NATS listener for the
	// nats CLI, which admits only the user and password of the next two.
	natsListenFlag         = "--nats-listen"
	natsListenUserFlag     = "--nats-listen-user"
	natsListenPasswordFlag = "--nats-listen-password"
	// sinkStage and assemblerStage are the names /status gives the stages
	// in its "stages" array.
	sinkStage      = "sink.primary"
	assemblerStage = "assembler"
)

// rssLimit bounds the peak RSS of a one-process run under big rows.
const rssLimit = 256 << 20

// isLong reports whether the long variant runs (make faults).
func isLong() bool { return os.Getenv("FLUSSO_FAULTS_LONG") != "" }

// scale picks the short or the long variant's value.
func scale[T any](short, long T) T {
	if isLong() {
		return long
	}
	return short
}

const indexName = "accounts"

// accountsSchema reads name through the field title (so a DDL error can
// name both) and body; blob is a column no index reads.
const accountsSchema = `version: 1
table: accounts
primary_key: id
fields:
  - long: id
  - long: ver
  - keyword: title
    column: name
  - text: body
  - has_many: notes
    table: notes
    foreign_key: account_id
    primary_key: id
    order_by: [{ column: id, direction: asc }]
    fields:
      - long: id
      - text: body
  - count: noteCount
    table: notes
    foreign_key: account_id
`

// seedAccounts is how many accounts the deployment starts with.
const seedAccounts = 2000

var accountsDDL = `
CREATE TABLE accounts (id bigserial PRIMARY KEY, ver bigint NOT NULL DEFAULT 0, name text NOT NULL DEFAULT '',
  body text NOT NULL DEFAULT '', blob text);
CREATE TABLE notes (id bigserial PRIMARY KEY, account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE, body text NOT NULL);
CREATE INDEX ON notes (account_id);
INSERT INTO accounts (name, body) SELECT 'account ' || g, 'body of ' || g FROM generate_series(1, ` + strconv.Itoa(seedAccounts) + `) g;
INSERT INTO notes (account_id, body) SELECT 1 + g % ` + strconv.Itoa(seedAccounts) + `, 'note ' || g FROM generate_series(0, 2999) g;
`

// setup is what a scenario changes in its deployment.
type setup struct {
	MaxRetries int      // of the sink; 0 keeps the default
	OnError    string   // of the index; "" keeps the default
	Env        []string // added to the process's environment
}

// budget bounds one scenario from the start of its process to its end.
var budget = scale(4*time.Minute, 20*time.Minute)

// rig is one scenario: a deployment whose only sink reaches OpenSearch
// through a fault proxy, followed by one `flusso run` process.
type rig struct {
	*harness.Deployment
	t       *testing.T
	ctx     context.Context // ends at the scenario's budget
	proxy   *faultproxy.Proxy
	proc    *harness.Proc
	private string // the process's control surface
	pid     int
	peak    int64 // VmHWM read as the process was stopped
}

func newRig(t *testing.T, s setup) *rig {
	t.Helper()
	if testing.Short() {
		t.Skip("short mode: the fault suite needs the dev services")
	}
	d := harness.NewDeployment(t, accountsDDL)
	p := faultproxy.New(t, d.OpenSearch)

	// The sink alone goes through the proxy; the comparisons read
	// OpenSearch directly.
	via := *d
	via.OpenSearch = p.URL
	via.WriteConfig(harness.Config{MaxRetries: s.MaxRetries, Indexes: []harness.Index{{Name: indexName, Schema: accountsSchema, OnError: s.OnError}}})

	r := &rig{Deployment: d, t: t, proxy: p}
	r.newProc("flusso", s.Env)
	// The budget counts from here: building the binary on a busy machine
	// is no part of the scenario.
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	t.Cleanup(cancel)
	r.ctx = ctx
	return r
}

// newProc prepares the scenario's `flusso run` (one process, embedded
// NATS in <dir>/data) with extra args; start starts it.
func (r *rig) newProc(name string, env []string, extra ...string) {
	r.t.Helper()
	r.private, r.pid, r.peak = testenv.FreeAddr(r.t), 0, 0
	// --private-address again: the last one wins, and the test must know it
	// to tell the process's own listeners from an open door.
	args := append([]string{"--config", "flusso.toml", "--data-dir", "data", "--slot", r.Slot(),
		"--lag-poll-secs", "1", "--private-address", r.private}, extra...)
	r.proc = harness.NewProc(r.t, name, r.Dir, args...)
	r.proc.Env = env
}

// stop stops the process (SIGTERM), keeping its peak RSS for the report.
func (r *rig) stop() {
	r.t.Helper()
	r.peak = r.peakRSS()
	r.proc.Stop()
}

// start starts the process and waits until it is live with the seeded
// index equal to Postgres.
func (r *rig) start() {
	r.t.Helper()
	begin := time.Now()
	defer func() {
		r.t.Logf("flusso (pid %d) live and seeded in %v", r.pid, time.Since(begin).Round(100*time.Millisecond))
	}()
	r.proc.Start()
	r.pid = r.findPID()
	r.waitFor("the pipeline to be live", 3*time.Minute, func() bool {
		st, err := r.status()
		return err == nil && st.Phase == "live"
	})
	r.Converge(indexName, accountsSchema, 3*time.Minute, r.proc)
	// A sink that bypassed the proxy would make every fault vacuous.
	if c := r.proxy.Counts(); c.Forwarded == 0 {
		r.t.Fatalf("expected the sink to reach OpenSearch through the fault proxy; it sent nothing through it (%s)", c)
	}
}

// exec runs sql within the scenario's budget.
func (r *rig) exec(sql string, args ...any) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, 3*time.Minute)
	defer cancel()
	if _, err := r.DB.Exec(ctx, sql, args...); err != nil {
		r.t.Fatalf("exec %.80q: %v", sql, err)
	}
}

// waitFor polls cond until it holds; it fails the test when the process
// exits, when within passes or when the scenario's budget ends.
func (r *rig) waitFor(what string, within time.Duration, cond func() bool) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, within)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		r.checkRunning("waiting for " + what)
		select {
		case <-ctx.Done():
			limit := fmt.Sprintf("within %v", within)
			if r.ctx.Err() != nil {
				limit = fmt.Sprintf("within the scenario's budget of %v", budget)
			}
			r.t.Fatalf("expected %s %s; it did not happen.\nstatus: %s\nproxy: %s\npeak RSS: %s\nlog tail:\n%s",
				what, limit, r.proc.Status(), r.proxy.Counts(), r.rss(), r.proc.Tail())
		case <-tick.C:
		}
	}
}

// checkRunning fails the test if the process exited.
func (r *rig) checkRunning(when string) {
	r.t.Helper()
	if done, err := r.proc.Exited(); done {
		r.t.Fatalf("expected flusso to keep running; it exited (%v) while %s.\nproxy: %s\nlog tail:\n%s", err, when, r.proxy.Counts(), r.proc.Tail())
	}
}

// inject sets fault f, which must be counted, and waits until the sink
// has run into all of it.
func (r *rig) inject(f faultproxy.Fault, within time.Duration) {
	r.t.Helper()
	r.proxy.Set(f)
	r.waitFor(fmt.Sprintf("the sink to run into %s", f), within, func() bool { return r.proxy.Pending() == 0 })
	r.checkRunning("the proxy injected " + f.String())
}

// hold sets fault f for d under the workload, failing if the process exits.
func (r *rig) hold(f faultproxy.Fault, d time.Duration) {
	r.t.Helper()
	r.proxy.Set(f)
	end := time.Now().Add(d)
	r.waitFor(fmt.Sprintf("%v of %s to pass", d, f), d+time.Minute, func() bool { return time.Now().After(end) })
}

// --- /status ---

// statusDoc is the part of /status the scenarios read. It is decoded here,
// not from internal/server, so fields other branches add are read by name.
type statusDoc struct {
	Phase                string        `json:"phase"`
	LastError            *string       `json:"last_error"`
	DocumentsQuarantined uint64        `json:"documents_quarantined"`
	SlotLagBytes         *uint64       `json:"slot_lag_bytes"`
	ConfirmedLSN         string        `json:"confirmed_lsn"`
	Stages               []stageReport `json:"stages"`
}

// stageReport is one entry of the "stages" array of /status.
type stageReport struct {
	Stage     string `json:"stage"`
	State     string `json:"state"`
	LastError string `json:"last_error"`
	Since     string `json:"since"`
	Failures  uint64 `json:"failures"`
}

func (s statusDoc) stage(name string) (stageReport, bool) {
	for _, st := range s.Stages {
		if st.Stage == name {
			return st, true
		}
	}
	return stageReport{}, false
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// get fetches a path of the public surface: its status code and body.
func (r *rig) get(path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.proc.Public+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (r *rig) status() (statusDoc, error) {
	var st statusDoc
	code, body, err := r.get("/status")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("/status answered %d: %s", code, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("decoding /status: %w", err)
	}
	return st, nil
}

// expectStage waits until /status shows stage in state, and returns it.
func (r *rig) expectStage(name, state string, within time.Duration) stageReport {
	r.t.Helper()
	var got stageReport
	r.waitFor(fmt.Sprintf("/status to show stage %q %s", name, state), within, func() bool {
		st, err := r.status()
		if err != nil {
			return false
		}
		s, ok := st.stage(name)
		got = s
		return ok && s.State == state
	})
	return got
}

// --- sampling during a fault ---

// sample is what the operator and Postgres showed at one moment.
type sample struct {
	at        time.Time
	confirmed pglogrepl.LSN
	lagBytes  int64 // current WAL position less the slot's confirmed one
	status    statusDoc
	statusErr error
	ready     int // /readyz status code; 0 when it did not answer
}

// observer samples the slot and the process's surfaces every second.
type observer struct {
	mu      sync.Mutex
	samples []sample
	task    *harness.Task
}

func (r *rig) observe() *observer {
	o := &observer{}
	o.task = harness.Go(r.t, func(ctx context.Context) error {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			s := r.sample(ctx)
			o.mu.Lock()
			o.samples = append(o.samples, s)
			o.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	})
	return o
}

func (r *rig) sample(ctx context.Context) sample {
	s := sample{at: time.Now()}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Not harness.SlotState: that fails the test, which a goroutine must not.
	_ = r.DB.QueryRow(qctx, `SELECT coalesce(max(confirmed_flush_lsn), '0/0')::text,
		coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)), 0)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, r.Slot()).Scan(&s.confirmed, &s.lagBytes)
	s.status, s.statusErr = r.status()
	if code, _, err := r.get("/readyz"); err == nil {
		s.ready = code
	}
	return s
}

// stop ends the sampling and returns every sample.
func (o *observer) stop() []sample {
	_ = o.task.Stop()
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.samples
}

// between keeps the samples taken in [from, to].
func between(samples []sample, from, to time.Time) []sample {
	var out []sample
	for _, s := range samples {
		if !s.at.Before(from) && !s.at.After(to) {
			out = append(out, s)
		}
	}
	return out
}

// degradedWith returns the first sample's report of stage degraded (since
// a time) with a last error containing every one of words.
func degradedWith(samples []sample, stage string, words ...string) (stageReport, bool) {
	for _, s := range samples {
		rep, ok := s.status.stage(stage)
		if !ok || rep.State != "degraded" || rep.LastError == "" || rep.Since == "" {
			continue
		}
		if containsAll(rep.LastError, words...) {
			return rep, true
		}
	}
	return stageReport{}, false
}

func containsAll(s string, words ...string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// expectDegraded fails unless some sample showed stage degraded with an
// error naming words.
func (r *rig) expectDegraded(samples []sample, stage string, words ...string) stageReport {
	r.t.Helper()
	rep, ok := degradedWith(samples, stage, words...)
	if !ok {
		r.t.Errorf("expected /status to show stage %q degraded, with since and a last_error naming %q, during the fault; it showed: %s",
			stage, words, seen(samples))
	}
	return rep
}

// seen sums up what /status showed over samples, for the report and
// failure messages: each phase, each stage's states and its last error.
func seen(samples []sample) string {
	phases := map[string]int{}
	states := map[string]map[string]int{}
	lastErr := map[string]string{}
	fails := map[string]uint64{}
	var order []string
	ready := map[int]int{}
	var failures int
	var quarantined uint64
	for _, s := range samples {
		if s.statusErr != nil {
			failures++
			continue
		}
		phases[s.status.Phase]++
		quarantined = max(quarantined, s.status.DocumentsQuarantined)
		ready[s.ready]++
		for _, st := range s.status.Stages {
			if states[st.Stage] == nil {
				states[st.Stage] = map[string]int{}
				order = append(order, st.Stage)
			}
			states[st.Stage][st.State]++
			fails[st.Stage] = max(fails[st.Stage], st.Failures)
			if st.LastError != "" {
				lastErr[st.Stage] = st.LastError
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d samples: phases %v, /readyz %v", len(samples), phases, ready)
	if failures > 0 {
		fmt.Fprintf(&b, ", /status unreachable %d×", failures)
	}
	if quarantined > 0 {
		fmt.Fprintf(&b, ", documents_quarantined %d", quarantined)
	}
	if len(order) == 0 {
		b.WriteString(", no stages array")
	}
	for _, name := range order {
		fmt.Fprintf(&b, "; %s %v", name, states[name])
		if n := fails[name]; n > 0 {
			fmt.Fprintf(&b, " failures %d", n)
		}
		if e := lastErr[name]; e != "" {
			fmt.Fprintf(&b, " last_error %q", clip(e, 160))
		}
	}
	return b.String()
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// slotFigures are the slot's movement over samples: the largest lag and
// how many times the confirmed position advanced. The lag is in the
// cluster's WAL, which the other tests running on the dev cluster grow too.
func slotFigures(samples []sample) (maxLag int64, advances int) {
	var last pglogrepl.LSN
	for i, s := range samples {
		maxLag = max(maxLag, s.lagBytes)
		if i > 0 && s.confirmed > last {
			advances++
		}
		last = s.confirmed
	}
	return maxLag, advances
}

// --- workload ---

// workload changes the database steadily while the pipeline runs; it never
// names the column name, which the DDL scenario drops.
type workload struct {
	task   *harness.Task
	writes atomic.Int64
}

func (r *rig) startWorkload(every time.Duration) *workload {
	w := &workload{}
	rng := rand.New(rand.NewPCG(14, uint64(time.Now().UnixNano())))
	w.task = harness.Go(r.t, func(ctx context.Context) error {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
			id := 1 + rng.Int64N(seedAccounts)
			var err error
			switch rng.IntN(5) {
			case 0:
				_, err = r.DB.Exec(ctx, `UPDATE accounts SET ver = ver + 1 WHERE id = $1`, id)
			case 1:
				_, err = r.DB.Exec(ctx, `UPDATE accounts SET body = $2 WHERE id = $1`, id, "changed "+strconv.Itoa(rng.Int()))
			case 2:
				_, err = r.DB.Exec(ctx, `INSERT INTO notes (account_id, body) VALUES ($1, 'new')`, id)
			case 3:
				_, err = r.DB.Exec(ctx, `DELETE FROM notes WHERE id = (SELECT min(id) FROM notes WHERE account_id = $1)`, id)
			case 4:
				_, err = r.DB.Exec(ctx, `INSERT INTO accounts (body) VALUES ('inserted')`)
			}
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("workload write %d: %w", w.writes.Load()+1, err)
			}
			w.writes.Add(1)
		}
	})
	return w
}

// --- the end of every scenario ---

// outcome is how a scenario ended.
type outcome struct {
	result    harness.Result
	end       pglogrepl.LSN // WAL position after the last write
	confirmed pglogrepl.LSN
	converged time.Duration // from the call to the index equal to Postgres
	caughtUp  time.Duration // from the call to the slot confirmed past end
}

// finish stops the workload, then expects the index to equal a fresh
// build (0 missing, 0 extra, 0 stale) and the slot confirmed past the WAL
// position taken after the last write.
func (r *rig) finish(w *workload) outcome {
	r.t.Helper()
	if w != nil {
		w.task.StopClean()
	}
	var out outcome
	out.end = r.WALPosition()
	start := time.Now()
	out.result = r.Converge(indexName, accountsSchema, 3*time.Minute, r.proc)
	out.converged = time.Since(start)
	r.waitFor(fmt.Sprintf("the slot confirmed to the end (confirmed_flush_lsn ≥ %s)", out.end), 2*time.Minute, func() bool {
		_, out.confirmed = r.SlotState()
		return out.confirmed >= out.end
	})
	out.caughtUp = time.Since(start)
	return out
}

// --- the process ---

// findPID finds the started process by its executable and directory:
// testenv.Process does not expose it.
func (r *rig) findPID() int {
	r.t.Helper()
	bin := harness.Binary(r.t)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
			cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
			if exe == bin && cwd == r.Dir {
				return pid
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("no process of %s runs in %s", bin, r.Dir)
	return 0
}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func (r *rig) peakRSS() int64 {
	r.t.Helper()
	n, err := procStatusKB(r.pid, "VmHWM")
	if err != nil {
		r.t.Fatalf("reading the peak RSS of flusso (pid %d): %v", r.pid, err)
	}
	return n << 10
}

// procStatusKB reads one "kB" line of /proc/<pid>/status.
func procStatusKB(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no " + key + " line")
}

// rss is the process's peak RSS for a message, or why it is unknown.
func (r *rig) rss() string {
	n, err := procStatusKB(r.pid, "VmHWM")
	if err != nil {
		return err.Error()
	}
	return mib(n << 10)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// --- the report ---

// report is the one line per scenario the lead quotes.
type report struct {
	scenario string
	injected []string
	saw      string
	figures  []string
}

func (rp *report) inject(what string) { rp.injected = append(rp.injected, what) }
func (rp *report) figure(format string, args ...any) {
	rp.figures = append(rp.figures, fmt.Sprintf(format, args...))
}

// log prints the report with the process's final figures.
func (rp *report) log(r *rig, out outcome) {
	r.t.Helper()
	rp.figure("index %s (converged in %v)", out.result, out.converged.Round(100*time.Millisecond))
	rp.figure("slot confirmed %s ≥ end %s in %v", out.confirmed, out.end, out.caughtUp.Round(100*time.Millisecond))
	rp.figure("proxy: %s", r.proxy.Counts())
	if peak := r.peak; peak != 0 {
		rp.figure("peak RSS %s", mib(peak))
	} else if n, err := procStatusKB(r.pid, "VmHWM"); err == nil {
		rp.figure("peak RSS %s", mib(n<<10))
	}
	r.t.Logf("fault report: %s | injected: %s | /status during the fault: %s | %s",
		rp.scenario, strings.Join(rp.injected, ", "), rp.saw, strings.Join(rp.figures, "; "))
}
