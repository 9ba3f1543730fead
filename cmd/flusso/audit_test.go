package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/run"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/audit"
)

const auditSchema = `version: 1
table: accounts
primary_key: id
soft_delete: { column: deleted }
fields:
  - integer: id
  - keyword: name
  - double: balance
  - has_many: notes
    table: notes
    foreign_key: account_id
    primary_key: id
    order_by: [{ column: id, direction: asc }]
    fields:
      - keyword: body
`

const auditTables = `
	CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL, balance numeric NOT NULL, deleted boolean NOT NULL DEFAULT false);
	INSERT INTO accounts SELECT i, 'account ' || i, i * 1.5, false FROM generate_series(1, 60) i;
	CREATE TABLE notes (id bigint PRIMARY KEY, account_id bigint NOT NULL, body text NOT NULL);
	INSERT INTO notes SELECT i, (i % 60) + 1, 'note ' || i FROM generate_series(1, 120) i;`

// auditDeployment is a deployment of the accounts index with a stdout sink
// besides OpenSearch, its config written and its lock path.
type auditDeployment struct {
	*harness.Deployment
	config string
	data   string
}

func newAuditDeployment(t *testing.T) *auditDeployment {
	d := &auditDeployment{Deployment: harness.NewDeployment(t, auditTables), data: t.TempDir()}
	d.WriteConfig(harness.Config{Sinks: "[sinks.console]\ntype = \"stdout\"\n\n", Indexes: []harness.Index{{Name: "accounts", Schema: auditSchema}}})
	d.config = filepath.Join(d.Dir, "flusso.toml")
	return d
}

// launch runs the one-process pipeline, its embedded NATS open on a port
// for repairs, and waits until the index matches Postgres.
func (d *auditDeployment) launch(listen string, tweaks ...func(*run.Options)) *harness.Pipeline {
	d.T.Helper()
	opts := d.Options(mustLoad(d.T.(*testing.T), d.config), d.data)
	opts.NATSListen, opts.NATSListenUser, opts.NATSListenPassword = listen, "auditor", "pw"
	for _, tw := range tweaks {
		tw(&opts)
	}
	p := harness.Launch(d.T, opts)
	p.Stages()
	d.Converge("accounts", auditSchema, 60*time.Second)
	// An index still being seeded is not audited.
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, rep, stderr := d.audit(d.T.(*testing.T))
		if rep == nil {
			d.T.Fatalf("audit: exit %d: %s", code, stderr)
		}
		if !rep.Indexes[0].Seeding {
			return p
		}
		if code != exitUsage || !strings.Contains(stderr, "index accounts in sink primary is not seeded yet") {
			d.T.Fatalf("audit of an index being seeded: exit %d, %s", code, stderr)
		}
		if time.Now().After(deadline) {
			d.T.Fatalf("index never seeded: %+v", rep.Indexes[0])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// audit runs flusso audit on the deployment and returns exit code, the
// JSON report and stderr.
func (d *auditDeployment) audit(t *testing.T, args ...string) (int, *audit.Report, string) {
	t.Helper()
	args = append([]string{"audit", "--config", d.config, "--slot", d.Slot(), "--format", "json", "--max-report", "50"}, args...)
	code, stdout, stderr := flusso(t, args...)
	if code == exitUsage && !strings.HasPrefix(stdout, "{") {
		return code, nil, stderr
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("audit %v: exit %d: %v\nstdout %s\nstderr %s", args, code, err, stdout, stderr)
	}
	return code, &rep, stderr
}

// kinds is the drift of the OpenSearch sink's report: id → kind.
func kinds(t *testing.T, rep *audit.Report) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, ix := range rep.Indexes {
		if ix.Sink != "primary" {
			continue
		}
		for _, d := range ix.Drift {
			out[d.ID] = d.Kind
		}
	}
	return out
}

func (d *auditDeployment) os(method, path string, body any) {
	d.T.Helper()
	code, b := testenv.OpenSearchRequest(d.T, method, d.OpenSearch+"/"+d.Prefix+"accounts"+path, body)
	if code >= 300 {
		d.T.Fatalf("%s %s: %d %s", method, path, code, b)
	}
}

// awaitClean audits until no drift is left.
func (d *auditDeployment) awaitClean(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, rep, stderr := d.audit(t)
		if code == exitOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("drift left after the repair: exit %d, %v %s", code, rep, stderr)
		}
		time.Sleep(time.Second)
	}
}

// TestAuditFindsAndRepairsDrift breaks equality on purpose in OpenSearch
// and in Postgres while the pipeline is stopped, and checks that the audit
// reports exactly those ids and kinds, that a repair through the stopped
// pipeline's broker and then through the running one's fixes them, and
// that a second audit reports none.
func TestAuditFindsAndRepairsDrift(t *testing.T) {
	d := newAuditDeployment(t)
	listen := testenv.FreeAddr(t)
	p := d.launch(listen)

	code, rep, stderr := d.audit(t)
	if code != exitOK {
		t.Fatalf("audit of a synced index: exit %d, %+v\n%s", code, rep, stderr)
	}
	if got := rep.Indexes[0]; got.Compared != 60 || got.Equal != 60 {
		t.Errorf("clean audit compared %d, equal %d; want 60, 60", got.Compared, got.Equal)
	}
	if got := rep.Indexes[1]; got.Sink != "console" || got.Skipped == "" {
		t.Errorf("the stdout sink was not skipped: %+v", got)
	}
	p.StopClean()

	// Drift of every kind, with the pipeline stopped.
	d.os(http.MethodDelete, "/_doc/3", nil)                                                                      // missing
	d.os(http.MethodPut, "/_doc/5", map[string]any{"id": 5, "name": "edited", "balance": 7.5, "notes": []any{}}) // stale
	d.os(http.MethodPut, "/_doc/9999", map[string]any{"id": 9999, "name": "stray", "balance": 1})                // extra: no row
	d.Exec(`UPDATE accounts SET name = 'renamed' WHERE id = 7`)                                                  // stale: flusso missed it
	d.Exec(`UPDATE accounts SET deleted = true WHERE id = 8`)                                                    // extra: soft deleted
	d.Exec(`INSERT INTO notes VALUES (1000, 11, 'late note')`)                                                   // stale through a child
	d.Exec(`INSERT INTO accounts VALUES (61, 'new', 0, false)`)                                                  // missing
	want := map[string]string{"3": audit.Missing, "5": audit.Stale, "9999": audit.Extra, "7": audit.Stale, "8": audit.Extra, "11": audit.Stale, "61": audit.Missing}

	code, text, _ := flusso(t, "audit", "--config", d.config, "--slot", d.Slot())
	for _, want := range []string{
		"index accounts in sink primary (" + d.Prefix + "accounts_",
		"compared 62, equal 55, missing 2, extra 2, stale 3, rechecked 7, unsettled 0\n",
		"  stale   7 (stored version ",
		"    name: want \"renamed\", got \"account 7\"\n",
		"  extra   9999 (stored version 1)\n",
		"index accounts in sink console: skipped: this sink cannot be read back\n",
		"drift: 7 documents in 1 index(es)\n",
	} {
		if code != exitFailure || !strings.Contains(text, want) {
			t.Errorf("text report (exit %d) lacks %q:\n%s", code, want, text)
		}
	}
	t.Logf("text report:\n%s", text)

	code, rep, stderr = d.audit(t, "--repair", "--data-dir", d.data)
	if code != exitFailure {
		t.Fatalf("audit after drift: exit %d, want %d\n%s", code, exitFailure, stderr)
	}
	if got := kinds(t, rep); !mapsEqual(got, want) {
		t.Errorf("drift %v, want %v", got, want)
	}
	ir := rep.Indexes[0]
	if ir.Missing != 2 || ir.Extra != 2 || ir.Stale != 3 || ir.Compared != 62 {
		t.Errorf("counts %+v, want compared 62 (60 documents, 9999 and the soft deleted 8 from the index), missing 2, extra 2, stale 3", ir)
	}
	for _, dr := range ir.Drift {
		if dr.ID == "7" && !slices.ContainsFunc(dr.Diff, func(f audit.FieldDiff) bool {
			return f.Path == "name" && string(f.Want) == `"renamed"` && string(f.Got) == `"account 7"`
		}) {
			t.Errorf("diff of 7: %+v, want name renamed against account 7", dr.Diff)
		}
	}
	if !strings.Contains(stderr, "repair: asked the pipeline to rebuild 7 documents") {
		t.Errorf("repair said: %s", stderr)
	}

	// The rebuilds wait on the stopped pipeline's broker; it runs them when
	// it starts again (its slot also has the row changes).
	p = d.launch(listen)
	d.awaitClean(t)

	// While it runs: repair over the embedded NATS's listener.
	d.os(http.MethodDelete, "/_doc/20", nil)
	d.os(http.MethodPut, "/_doc/9998", map[string]any{"id": 9998, "name": "stray"})
	natsURL := fmt.Sprintf("nats://auditor:pw@%s", listen)
	code, rep, stderr = d.audit(t, "--repair", "--nats-url", natsURL)
	if code != exitFailure || !mapsEqual(kinds(t, rep), map[string]string{"20": audit.Missing, "9998": audit.Extra}) {
		t.Fatalf("audit of a running pipeline: exit %d, drift %v\n%s", code, kinds(t, rep), stderr)
	}
	d.awaitClean(t)
	p.CheckRunning()

	// Text output and --keys.
	keys := filepath.Join(t.TempDir(), "keys")
	writeFile(t, keys, "# a few\n1\n2\n\n9997\n")
	code, text, stderr = flusso(t, "audit", "--config", d.config, "--slot", d.Slot(), "--keys", keys, "--index", "accounts")
	if code != exitOK || !strings.Contains(text, "compared 3, equal 3, missing 0, extra 0, stale 0") || !strings.Contains(text, "index accounts in sink console: skipped") {
		t.Errorf("keys audit: exit %d\n%s\n%s", code, text, stderr)
	}
	code, _, _ = d.audit(t, "--sample", "10")
	if code != exitOK {
		t.Errorf("sample audit: exit %d", code)
	}
}

// TestAuditFindsARestoredSnapshot: an operator restores an older snapshot
// of the index (the dev node has path.repo) while flusso is stopped; the
// audit names what the snapshot missed since, and a repair brings it back.
func TestAuditFindsARestoredSnapshot(t *testing.T) {
	d := newAuditDeployment(t)
	p := d.launch(testenv.FreeAddr(t))
	repo := "/_snapshot/" + d.Prefix + "repo"
	concrete := d.concrete(t)
	raw := func(method, path string, body any) {
		t.Helper()
		code, b := testenv.OpenSearchRequest(t, method, d.OpenSearch+path, body)
		if code >= 300 {
			t.Fatalf("%s %s: %d %s", method, path, code, b)
		}
	}
	raw(http.MethodPut, repo, map[string]any{"type": "fs", "settings": map[string]any{"location": d.Prefix + "repo"}})
	t.Cleanup(func() {
		testenv.OpenSearchRequest(t, http.MethodDelete, d.OpenSearch+repo+"/before", nil)
		testenv.OpenSearchRequest(t, http.MethodDelete, d.OpenSearch+repo, nil)
	})
	raw(http.MethodPut, repo+"/before?wait_for_completion=true", map[string]any{"indices": concrete, "include_global_state": false})

	// Changes the snapshot does not hold, synced by the running pipeline.
	d.Exec(`UPDATE accounts SET name = 'after the snapshot' WHERE id = 4`)
	d.Exec(`DELETE FROM notes WHERE account_id = 12`)
	d.Exec(`INSERT INTO accounts VALUES (62, 'after the snapshot', 0, false)`)
	d.Exec(`UPDATE accounts SET deleted = true WHERE id = 13`)
	d.Converge("accounts", auditSchema, 60*time.Second)
	p.StopClean()

	raw(http.MethodPost, "/"+concrete+"/_close", nil)
	raw(http.MethodPost, repo+"/before/_restore?wait_for_completion=true", map[string]any{"indices": concrete, "include_global_state": false})

	want := map[string]string{"4": audit.Stale, "12": audit.Stale, "62": audit.Missing, "13": audit.Extra}
	code, rep, stderr := d.audit(t, "--repair", "--data-dir", d.data)
	if code != exitFailure || !mapsEqual(kinds(t, rep), want) {
		t.Fatalf("audit of the restored index: exit %d, drift %v, want %v\n%s", code, kinds(t, rep), want, stderr)
	}
	d.launch(testenv.FreeAddr(t))
	d.awaitClean(t)
	d.Converge("accounts", auditSchema, 60*time.Second)
}

// concrete is the index the accounts alias points at.
func (d *auditDeployment) concrete(t *testing.T) string {
	t.Helper()
	code, b := testenv.OpenSearchRequest(t, http.MethodGet, d.OpenSearch+"/_alias/"+d.Prefix+"accounts", nil)
	var got map[string]any
	if code != http.StatusOK || json.Unmarshal(b, &got) != nil || len(got) != 1 {
		t.Fatalf("alias %saccounts: %d %s", d.Prefix, code, b)
	}
	for name := range got {
		return name
	}
	return ""
}

// TestAuditDistributed: the stages run as separate processes on an
// external NATS; a repair reaches them through it.
func TestAuditDistributed(t *testing.T) {
	d := newAuditDeployment(t)
	url := testenv.NATS(t)
	cfg := mustLoad(t, d.config)
	for _, roles := range [][]run.Role{{run.Capture, run.Assembler}, {run.Writer}} {
		opts := d.Options(cfg, t.TempDir())
		opts.NATSURL, opts.Roles = url, roles
		harness.Launch(t, opts).Stages()
	}
	d.Converge("accounts", auditSchema, 60*time.Second)
	d.awaitClean(t)

	d.os(http.MethodDelete, "/_doc/30", nil)
	d.os(http.MethodPut, "/_doc/31", map[string]any{"id": 31, "name": "edited", "balance": 46.5, "notes": []any{}})
	d.Exec(`UPDATE accounts SET deleted = true WHERE id = 32`) // the pipeline follows it: no drift
	// A row written while the publication lacks its table never reaches
	// the pipeline.
	d.Exec(`ALTER PUBLICATION flusso DROP TABLE notes`)
	d.Exec(`INSERT INTO notes VALUES (2000, 33, 'unpublished')`)
	d.Exec(`ALTER PUBLICATION flusso ADD TABLE notes`)
	code, rep, stderr := d.audit(t, "--repair", "--nats-url", url)
	if code != exitFailure || !mapsEqual(kinds(t, rep), map[string]string{"30": audit.Missing, "31": audit.Stale, "33": audit.Stale}) {
		t.Fatalf("audit: exit %d, drift %v\n%s", code, kinds(t, rep), stderr)
	}
	d.awaitClean(t)
}

// TestAuditUnderLoad audits while a workload changes rows through the
// live pipeline: nothing may be reported, since every difference is a
// change still on its way.
func TestAuditUnderLoad(t *testing.T) {
	d := newAuditDeployment(t)
	d.launch(testenv.FreeAddr(t))

	ctx, cancel := context.WithCancel(context.Background())
	var writes atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			id := i%60 + 1
			var err error
			switch i % 4 {
			case 0:
				_, err = d.DB.Exec(ctx, `UPDATE accounts SET balance = balance + 1, name = $2 WHERE id = $1`, id, fmt.Sprint("n", i))
			case 1:
				_, err = d.DB.Exec(ctx, `INSERT INTO notes VALUES ($1, $2, 'load') ON CONFLICT (id) DO UPDATE SET body = 'again'`, 10000+i%200, id)
			case 2:
				_, err = d.DB.Exec(ctx, `UPDATE accounts SET deleted = NOT deleted WHERE id = $1`, id)
			case 3:
				_, err = d.DB.Exec(ctx, `DELETE FROM notes WHERE id = $1`, 10000+(i+100)%200)
			}
			if err != nil && ctx.Err() == nil {
				done <- err
				return
			}
			writes.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
		done <- nil
	}()
	rounds := 0
	for start := time.Now(); time.Since(start) < 20*time.Second; rounds++ {
		code, rep, stderr := d.audit(t)
		if code != exitOK {
			t.Errorf("audit %d under load: exit %d, drift %v\n%s", rounds, code, kinds(t, rep), stderr)
		}
		if rep != nil && rep.Indexes[0].Rechecked > 0 {
			t.Logf("audit %d: rechecked %d, unsettled %d", rounds, rep.Indexes[0].Rechecked, rep.Indexes[0].Unsettled)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if writes.Load() < 100 || rounds < 2 {
		t.Fatalf("only %d writes in %d audits: the load did not run", writes.Load(), rounds)
	}
	t.Logf("%d audits during %d writes", rounds, writes.Load())
}

// TestContinuousAudit: flusso run --audit-every samples the indexes and
// shows the drift on /status and in the metrics.
func TestContinuousAudit(t *testing.T) {
	d := newAuditDeployment(t)
	p := d.launch(testenv.FreeAddr(t), func(o *run.Options) { o.AuditEvery, o.AuditSample = 300*time.Millisecond, 1000 })
	status := func() (*int64, string) {
		t.Helper()
		code, body, err := testenv.OpenSearchDo(context.Background(), http.MethodGet, p.PublicURL()+"/status", nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("/status: %d %v", code, err)
		}
		var st struct {
			Audit *struct {
				LastRun *time.Time       `json:"last_run"`
				Drift   map[string]int64 `json:"drift_documents"`
			} `json:"audit"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.Audit == nil || st.Audit.LastRun == nil {
			return nil, string(body)
		}
		n := st.Audit.Drift["accounts"]
		return &n, string(body)
	}
	awaitDrift := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			n, body := status()
			if n != nil && *n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/status never showed drift %d: %s", want, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	awaitDrift(0)
	d.os(http.MethodDelete, "/_doc/4", nil)
	d.os(http.MethodPut, "/_doc/9999", map[string]any{"id": 9999, "name": "stray"})
	awaitDrift(2)
	code, metrics, err := testenv.OpenSearchDo(context.Background(), http.MethodGet, p.PublicURL()+"/metrics", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	for _, want := range []string{`flusso_audit_drift_documents{index="accounts"} 2`, "flusso_audit_last_run_timestamp_seconds "} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestAuditBadInput: what the audit cannot do is a clear error, exit 2.
func TestAuditBadInput(t *testing.T) {
	d := newAuditDeployment(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "# nothing\n\n")
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "1\nnot-a-number\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown index", []string{"--index", "nope"}, `--index "nope": no enabled index of that name`},
		{"missing keys file", []string{"--keys", filepath.Join(dir, "absent")}, "--keys: open " + filepath.Join(dir, "absent")},
		{"empty keys file", []string{"--keys", empty}, "--keys " + empty + ": no keys in the file"},
		{"two selections", []string{"--sample", "3", "--keys", empty}, "give one of them"},
		{"bad sample", []string{"--sample", "0"}, "--sample must be at least 1"},
		{"bad format", []string{"--format", "xml"}, "--format must be text or json"},
		{"not prepared", nil, "has the pipeline prepared it?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := d.audit(t, tt.args...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d with %q", code, stderr, exitUsage, tt.want)
			}
		})
	}
	t.Run("unreachable sink", func(t *testing.T) {
		t.Setenv("PRIMARY_OPENSEARCH_URL", "http://127.0.0.1:1")
		code, _, stderr := d.audit(t)
		if code != exitUsage || !strings.Contains(stderr, "sink primary, index accounts: looking up") || !strings.Contains(stderr, "connection refused") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
	d.launch(testenv.FreeAddr(t))
	code, _, stderr := d.audit(t, "--keys", bad)
	if code != exitUsage || !strings.Contains(stderr, `"not-a-number" is not a key of its root table`) {
		t.Errorf("bad key: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = flusso(t, "audit", "--config", filepath.Join(dir, "none.toml"))
	if code != exitUsage || !strings.Contains(stderr, "none.toml") {
		t.Errorf("missing config: exit %d, stderr %q", code, stderr)
	}
	code, help, _ := flusso(t, "audit", "--help")
	for _, v := range []string{"$FLUSSO_CONFIG", "$FLUSSO_AUDIT_INDEX", "$FLUSSO_AUDIT_ALL", "$FLUSSO_AUDIT_SAMPLE_SIZE", "$FLUSSO_AUDIT_KEYS", "$FLUSSO_FORMAT", "$FLUSSO_AUDIT_MAX_REPORT", "$FLUSSO_AUDIT_REPAIR", "$FLUSSO_INDEX_PREFIX", "$FLUSSO_AUDIT_SETTLE_SECS", "$FLUSSO_LOCK", "$FLUSSO_SLOT", "$FLUSSO_NATS_URL", "$FLUSSO_DATA_DIR"} {
		if code != exitOK || !strings.Contains(help, v) {
			t.Errorf("audit --help does not show %s", v)
		}
	}
	_ = os.Remove(empty)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
