package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	verify "github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/pkg/audit"
	"github.com/flusso/flusso/pkg/schema"
)

// The Rust flusso, the implementation this one replaces: crate flusso-cli
// from crates.io, installed with cargo into a cache shared between runs.
const (
	rustCrate   = "flusso-cli"
	rustVersion = "0.15.1"
	rustPrefix  = "bench_r_"
	rustSlot    = "bench_rust"
)

// rustInstall is the outcome of installing the Rust flusso: its binary, or
// why there is none.
type rustInstall struct {
	bin  string
	skip string // set when it is not run
	err  error
}

// rustCache is where the Rust flusso is installed: built once, reused by
// every later run.
func rustCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = filepath.Join(os.TempDir(), "cache")
	}
	return filepath.Join(dir, "flusso-dev", "rust-flusso-"+rustVersion)
}

// installRust installs the Rust flusso in the background (a build takes
// many minutes on two cores, so it starts first and overlaps the other
// phases, at the lowest priority) and sends the outcome once.
func (h *harness) installRust(ctx context.Context) <-chan rustInstall {
	out := make(chan rustInstall, 1)
	root := rustCache()
	bin := filepath.Join(root, "bin", "flusso")
	if _, err := os.Stat(bin); err == nil {
		out <- rustInstall{bin: bin}
		return out
	}
	cargo, err := exec.LookPath("cargo")
	if err != nil {
		h.logf("rust flusso: skipped, cargo is not installed (https://rustup.rs installs it)")
		out <- rustInstall{skip: "cargo is not installed"}
		return out
	}
	logPath := filepath.Join(h.work, "cargo-install.log")
	h.logf("rust flusso: installing %s %s with cargo into %s in the background (log %s)", rustCrate, rustVersion, root, logPath)
	p, err := startProc("cargo-install", "build", logPath, nil,
		"nice", "-n", "19", cargo, "install", rustCrate, "--version", rustVersion, "--locked", "--root", root,
		// A build cut short (the run ended first) resumes next time.
		"--target-dir", filepath.Join(root, "target"))
	if err != nil {
		out <- rustInstall{err: err}
		return out
	}
	go func() {
		select {
		case <-p.done:
		case <-ctx.Done():
			p.stop(5 * time.Second)
			out <- rustInstall{err: ctx.Err()}
			return
		}
		if p.err != nil {
			out <- rustInstall{err: fmt.Errorf("cargo install %s %s: %w\n%s", rustCrate, rustVersion, p.err, p.tail(15))}
			return
		}
		out <- rustInstall{bin: bin}
	}()
	return out
}

// rustResult is the Rust flusso's run.
type rustResult struct {
	Version  string        `json:"version"`
	Skipped  string        `json:"skipped,omitempty"`
	Backfill *backfillRes  `json:"backfill,omitempty"`
	Live     []*liveResult `json:"live,omitempty"`
	// Wrong compares its documents, after the live phases, with a fresh
	// build from Postgres.
	Wrong *wrongDocs `json:"wrong_documents,omitempty"`
	Error string     `json:"error,omitempty"`
}

// wrongDocs is how an index differs from what Postgres holds.
type wrongDocs struct {
	Compared   int `json:"compared"`
	Missing    int `json:"missing"`
	Extra      int `json:"extra"`
	Mismatched int `json:"mismatched"`
	// Rendered counts documents that differ in form only: a timestamp
	// written with another offset notation for the same instant.
	Rendered int      `json:"rendered_differently"`
	Examples []string `json:"examples,omitempty"`
	Skipped  string   `json:"skipped,omitempty"`
}

func (w *wrongDocs) total() int { return w.Missing + w.Extra + w.Mismatched }

// compareLimit bounds the data sets whose documents are compared: the
// comparison holds both sides in memory.
const compareLimit = 200_000

// compare compares an index (or pattern) with a fresh build of every
// document from the flusso database.
func (h *harness) compare(ctx context.Context, db, index string) *wrongDocs {
	if h.users > compareLimit {
		return &wrongDocs{Skipped: fmt.Sprintf("not compared above %d users", compareLimit)}
	}
	r, err := verify.Compare(ctx, h.dbURL(db), h.osURL, index, "users", h.schema)
	if err != nil {
		return &wrongDocs{Skipped: "comparison failed: " + err.Error()}
	}
	w := &wrongDocs{Compared: r.Compared, Missing: len(r.Missing), Extra: len(r.Extra)}
	for _, s := range [][]string{r.Missing, r.Extra} {
		for _, e := range s[:min(len(s), 2)] {
			w.Examples = append(w.Examples, e)
		}
	}
	for _, e := range r.Mismatches {
		diff, same := mismatch(e)
		if same {
			w.Rendered++
			continue
		}
		w.Mismatched++
		if w.Mismatched <= 3 {
			w.Examples = append(w.Examples, diff)
		}
	}
	h.logf("compared %s with Postgres: %d documents, %d missing, %d extra, %d different", index, w.Compared, w.Missing, w.Extra, w.Mismatched)
	return w
}

// runRust runs the Rust flusso on the flusso database, as one process:
// backfill, then the live ramp, then a comparison of its documents.
func (h *harness) runRust(ctx context.Context, install <-chan rustInstall) (*rustResult, error) {
	res := &rustResult{Version: rustVersion}
	h.logf("rust flusso: waiting for its install")
	var in rustInstall
	select {
	case in = <-install:
	case <-ctx.Done():
		return res, ctx.Err()
	}
	switch {
	case in.skip != "":
		res.Skipped = in.skip
		return res, nil
	case in.err != nil:
		return res, in.err
	}
	if err := h.search.drop(ctx, rustPrefix); err != nil {
		return res, err
	}
	dir := filepath.Join(h.work, "rust")
	// The same flusso.toml, and the same schema with the key the Rust
	// flusso's format requires of leaves (the Go flusso reads it too).
	cfg, err := h.flussoConfig(dir, h.rustDB)
	if err != nil {
		return res, err
	}
	notNull, err := h.notNullColumns(ctx)
	if err != nil {
		return res, err
	}
	src, err := os.ReadFile(h.schemaPath)
	if err != nil {
		return res, err
	}
	body, err := rustSchema(src, notNull)
	if err != nil {
		return res, fmt.Errorf("%s: %w", h.schemaPath, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.schema.yml"), body, 0o644); err != nil {
		return res, err
	}
	h.logf("rust flusso %s: backfill of %d users", rustVersion, h.users)
	svc := services(h.rustDB)
	start := time.Now()
	p, err := startProc("rust-flusso", "all", filepath.Join(dir, "rust-flusso.log"), nil,
		in.bin, "run", "--config", cfg, "--lock", filepath.Join(dir, "flusso.lock"),
		"--slot", rustSlot, "--publication", rustSlot, "--index-prefix", rustPrefix,
		"--public-address", "127.0.0.1:"+strconv.Itoa(19600), "--private-address", "127.0.0.1:"+strconv.Itoa(19601))
	if err != nil {
		return res, err
	}
	procs := group{p}
	defer func() {
		procs.stop()
		h.dropSlot(context.WithoutCancel(ctx), rustSlot)
	}()
	index := rustPrefix + "users*"
	bf, err := h.waitCount(ctx, procs, index, start, svc)
	res.Backfill = bf
	if bf != nil {
		bf.System = "Rust flusso"
		h.logf("rust flusso: %d docs in %.1fs: %.0f docs/s; %.2f CPU-s per 1k docs; peak RSS %.0f MB",
			bf.Docs, bf.Seconds, bf.DocsPerSec, bf.CPUPer1kDocs, bf.PeakRSSMB["rust-flusso"])
	}
	if err != nil {
		return res, err
	}
	res.Live, err = h.liveSeries(ctx, "Rust flusso", h.rustRates, 200, false, "", h.rustPool, h.rustDB, index, procs)
	if err != nil {
		return res, err
	}
	res.Wrong = h.compare(ctx, h.rustDB, index)
	return res, nil
}

// waitCount follows a backfill until the index holds a document per user:
// for a tool whose end of backfill the harness cannot read otherwise.
func (h *harness) waitCount(ctx context.Context, procs group, index string, start time.Time, svcBefore map[string]float64) (*backfillRes, error) {
	res := &backfillRes{PeakRSSMB: map[string]float64{}}
	timeout := time.Duration(h.users/50)*time.Second + 5*time.Minute
	peak := map[string]float64{}
	for {
		if err := procs.failed(); err != nil {
			return nil, err
		}
		if time.Since(start) > timeout {
			return nil, fmt.Errorf("%s did not reach %d documents in %s", index, h.users, timeout)
		}
		// Sampled as it runs: VmHWM is the peak, but a process that
		// forks or restarts would lose it.
		for name, u := range procs.sample() {
			peak[name] = max(peak[name], u.PeakRSSMB)
		}
		n, err := h.search.count(ctx, index)
		if err == nil && n > 0 {
			if res.FirstDocSeconds == 0 {
				res.FirstDocSeconds = time.Since(start).Seconds()
			}
			res.Curve = append(res.Curve, point{time.Since(start).Seconds(), float64(n)})
			if n >= int64(h.users) {
				res.Docs = n
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.DocsPerSec = float64(res.Docs) / res.Seconds
	res.CPU = procs.sample()
	res.ServiceCPU = servicesDelta(services(h.rustDB), svcBefore)
	res.LoadAvg = loadavg()
	res.CPUPer1kDocs = totalCPU(res.CPU) / float64(max(res.Docs, 1)) * 1000
	for name, u := range res.CPU {
		res.PeakRSSMB[name] = max(u.PeakRSSMB, peak[name])
	}
	return res, nil
}

// rustSchema is the benchmark schema as the Rust flusso reads it: the same
// file, with the required key its format makes mandatory on every leaf
// reading a column, set from the column's NOT NULL.
func rustSchema(src []byte, notNull map[string]map[string]bool) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("parsing the schema: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("parsing the schema: empty")
	}
	root := doc.Content[0]
	if err := requireLeaves(child(root, "fields"), child(root, "table").Value, notNull); err != nil {
		return nil, err
	}
	return yaml.Marshal(&doc)
}

// requireLeaves adds required to the leaf fields of a fields list read from
// table, and below it.
func requireLeaves(fields *yaml.Node, table string, notNull map[string]map[string]bool) error {
	if fields == nil {
		return nil
	}
	for _, f := range fields.Content {
		var kind schema.Kind
		var name string
		for i := 0; i+1 < len(f.Content); i += 2 {
			k := schema.Kind(f.Content[i].Value)
			if k.IsScalar() || k.IsJoin() || k.IsAggregate() || k == schema.Geo || k == schema.Object || k == schema.Map || k == schema.Constant {
				kind, name = k, f.Content[i+1].Value
			}
		}
		switch {
		case kind == "":
			return fmt.Errorf("schema field at line %d has no type", f.Line)
		case kind.IsJoin():
			if err := requireLeaves(child(f, "fields"), child(f, "table").Value, notNull); err != nil {
				return err
			}
		case kind == schema.Object:
			if err := requireLeaves(child(f, "fields"), table, notNull); err != nil {
				return err
			}
		case kind.IsAggregate() || kind == schema.Constant || child(f, "required").Value != "":
		default:
			column := name
			if c := child(f, "column").Value; c != "" {
				column = c
			}
			f.Content = append(f.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "required"},
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(notNull[table][column])})
		}
	}
	return nil
}

// child is the value of key in a mapping node; an empty node when absent.
func child(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return &yaml.Node{}
}

// notNullColumns reads the NOT NULL columns of the flusso database, by table.
func (h *harness) notNullColumns(ctx context.Context) (map[string]map[string]bool, error) {
	rows, err := h.rustPool.Query(ctx, `SELECT table_name::text, column_name::text FROM information_schema.columns
		WHERE table_schema = 'public' AND is_nullable = 'NO'`)
	if err != nil {
		return nil, fmt.Errorf("reading NOT NULL columns: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]bool{}
	for rows.Next() {
		var t, c string
		if err := rows.Scan(&t, &c); err != nil {
			return nil, err
		}
		if out[t] == nil {
			out[t] = map[string]bool{}
		}
		out[t][c] = true
	}
	return out, rows.Err()
}

// mismatch shortens a comparison's "id: want {…}, got {…}" to the first
// place the two documents differ, and reports whether they hold the same
// values in another form (see canonical).
func mismatch(s string) (diff string, same bool) {
	id, rest, _ := strings.Cut(s, ": want ")
	want, got, ok := strings.Cut(rest, ", got {")
	if !ok {
		return s[:min(len(s), 300)], false
	}
	var a, b any
	if json.Unmarshal([]byte(want), &a) != nil || json.Unmarshal([]byte("{"+got), &b) != nil {
		return s[:min(len(s), 300)], false
	}
	a, b = canonical(a), canonical(b)
	if reflect.DeepEqual(a, b) {
		return id + ": same values", true
	}
	wa, errA := json.Marshal(a)
	gb, errB := json.Marshal(b)
	d, err := audit.Diff(wa, gb, 1)
	if errA != nil || errB != nil || err != nil || len(d) == 0 {
		return s[:min(len(s), 300)], false
	}
	switch f := d[0]; {
	case f.Want == nil:
		return fmt.Sprintf("%s: %s: not expected, got %.120s", id, f.Path, f.Got), false
	case f.Got == nil:
		return fmt.Sprintf("%s: %s: want %.120s, missing", id, f.Path, f.Want), false
	default:
		return fmt.Sprintf("%s: %s: want %.120s, got %.120s", id, f.Path, f.Want, f.Got), false
	}
}

// canonical writes every timestamp of a decoded JSON value in one form
// (UTC, RFC 3339), so that "…Z" and "…+00:00" compare equal.
func canonical(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = canonical(e)
		}
	case []any:
		for i, e := range x {
			x[i] = canonical(e)
		}
	case string:
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return t.UTC().Format(time.RFC3339Nano)
		}
	}
	return v
}
