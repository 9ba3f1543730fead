package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/harness"
)

// brokerMaxPayload is the embedded broker's largest message (8 MiB): a
// value bigger than it cannot travel as one message.
const brokerMaxPayload = 8 << 20

// TestBigRows: a 9 MiB value in a column no index reads must not wedge
// capture: later changes land and the slot moves to the end. A row whose
// document would exceed the broker's max payload is quarantined (on_error
// = "skip") with a reason naming index, id and size, and later changes
// still land.
func TestBigRows(t *testing.T) {
	r := newRig(t, setup{OnError: "skip"})
	r.start()
	rp := &report{scenario: "big rows"}
	w := r.startWorkload(20 * time.Millisecond)
	o := r.observe()

	rp.inject("a 9 MiB value in an unread column")
	from := time.Now()
	r.exec(`INSERT INTO accounts (name, blob) VALUES ('unread big value', repeat('b', 9*1024*1024))`)
	r.exec(`INSERT INTO accounts (id, name) VALUES (900001, 'after the big value')`)
	r.expectDoc("900001", time.Minute)
	rp.figure("a change after the 9 MiB row landed %v after it", time.Since(from).Round(100*time.Millisecond))

	rp.inject("a 9 MiB value in a column the index reads (document > max payload)")
	const tooBig = "900002"
	r.exec(`INSERT INTO accounts (id, name, body) VALUES (` + tooBig + `, 'too big', repeat('d', 9*1024*1024))`)
	r.waitFor("/status to count the oversized document as quarantined", 2*time.Minute, func() bool {
		st, err := r.status()
		return err == nil && st.DocumentsQuarantined >= 1
	})
	r.exec(`INSERT INTO accounts (id, name) VALUES (900003, 'after the oversized document')`)
	r.expectDoc("900003", time.Minute)
	// Small again, the document fits and lands: the index can equal Postgres.
	r.exec(`UPDATE accounts SET body = 'small again' WHERE id = ` + tooBig)
	out := r.finish(w)
	rp.saw = seen(o.stop())
	r.stop()

	entry := r.quarantined(tooBig)
	if !namesIndexIDSize(entry.Reason, indexName, tooBig, brokerMaxPayload) {
		t.Errorf("expected the quarantine reason to name index %q, id %s and a size over %d bytes; it is %q",
			indexName, tooBig, brokerMaxPayload, entry.Reason)
	}
	rp.figure("quarantined by %s: %q", entry.Sink, clip(entry.Reason, 200))
	rp.figure("writes %d", w.writes.Load())
	rp.log(r, out)
}

// TestMemory: one transaction of 200 × 1 MiB values in a column the index
// reads, one of 200 × 1 MiB in a column it does not read and one 50 MiB
// row keep the peak RSS of a one-process run under 256 MiB.
func TestMemory(t *testing.T) {
	r := newRig(t, setup{OnError: "skip"})
	r.start()
	rp := &report{scenario: "memory"}
	rp.figure("peak RSS when live %s", mib(r.peakRSS()))
	o := r.observe()
	rows := scale(200, 500)
	counts := func(n int) func() bool { return func() bool { return r.count() == int64(n) } }
	first, last := strconv.Itoa(seedAccounts+1), strconv.Itoa(seedAccounts+rows)
	steps := []struct {
		what, sql string
		landed    func() bool
	}{
		{fmt.Sprintf("one transaction of %d × 1 MiB in a read column", rows),
			`INSERT INTO accounts (name, body) SELECT 'big ' || g, repeat('m', 1024*1024) FROM generate_series(1, ` + strconv.Itoa(rows) + `) g`,
			counts(seedAccounts + rows)},
		// Small again so the final comparison reads small documents; the
		// update is itself a transaction of big old row images.
		{"the same rows updated small", `UPDATE accounts SET body = 'was big' WHERE name LIKE 'big %'`,
			func() bool { return r.body(first) == "was big" && r.body(last) == "was big" }},
		{fmt.Sprintf("one transaction of %d × 1 MiB in an unread column", rows),
			`INSERT INTO accounts (name, blob) SELECT 'blob ' || g, repeat('u', 1024*1024) FROM generate_series(1, ` + strconv.Itoa(rows) + `) g`,
			counts(seedAccounts + 2*rows)},
		{"one 50 MiB row in an unread column", `INSERT INTO accounts (name, blob) VALUES ('huge', repeat('h', 50*1024*1024))`,
			counts(seedAccounts + 2*rows + 1)},
	}
	for _, s := range steps {
		rp.inject(s.what)
		start := time.Now()
		r.exec(s.sql)
		r.waitFor("the documents of "+s.what, 3*time.Minute, s.landed)
		rp.figure("after %s: %v, peak RSS %s", s.what, time.Since(start).Round(100*time.Millisecond), mib(r.peakRSS()))
		t.Log(rp.figures[len(rp.figures)-1])
	}
	out := r.finish(nil)
	rp.saw = seen(o.stop())
	r.stop()
	if r.peak > rssLimit {
		t.Errorf("expected the peak RSS of one-process flusso run to stay under %s; it reached %s", mib(rssLimit), mib(r.peak))
	}
	rp.log(r, out)
}

// count is the number of documents in the index, -1 when unknown.
func (r *rig) count() int64 {
	n, err := harness.Count(r.ctx, r.OpenSearch, r.Prefix+indexName)
	if err != nil {
		return -1
	}
	return n
}

// body is the field body of document id, "" when unknown.
func (r *rig) body(id string) string {
	docs, err := harness.Get(r.ctx, r.OpenSearch, r.Prefix+indexName, []string{id})
	var doc struct {
		Body string `json:"body"`
	}
	if err != nil || json.Unmarshal(docs[id], &doc) != nil {
		return ""
	}
	return doc.Body
}

// expectDoc waits until document id is in the index (read in real time).
func (r *rig) expectDoc(id string, within time.Duration) {
	r.t.Helper()
	r.waitFor("document "+id+" in the index", within, func() bool {
		docs, err := harness.Get(r.ctx, r.OpenSearch, r.Prefix+indexName, []string{id})
		return err == nil && docs[id] != nil
	})
}

// quarantineEntry is one entry of `flusso quarantine list --format json`.
type quarantineEntry struct {
	Sink, Index, ID, Reason string
}

// quarantined lists the stopped pipeline's quarantine the way an operator
// would and returns the entry of id.
func (r *rig) quarantined(id string) quarantineEntry {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(r.t), "quarantine", "list", "--data-dir", "data", "--format", "json")
	cmd.Dir = r.Dir
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatalf("flusso quarantine list: %v\n%s", err, out)
	}
	var entries []quarantineEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		r.t.Fatalf("decoding flusso quarantine list: %v\n%s", err, out)
	}
	for _, e := range entries {
		if e.ID == id {
			return e
		}
	}
	r.t.Fatalf("expected document %s in quarantine; flusso quarantine list has: %s", id, out)
	return quarantineEntry{}
}

// sizeRE matches a size in a message: a number and an optional unit.
var sizeRE = regexp.MustCompile(`(\d+(?:\.\d+)?)\s*(MiB|MB|KiB|kB|KB|bytes|B)?\b`)

// namesIndexIDSize reports whether reason names index, id and a size of
// at least over bytes (in bytes or a unit).
func namesIndexIDSize(reason, index, id string, over int) bool {
	if !containsAll(reason, index, id) {
		return false
	}
	unit := map[string]float64{"": 1, "B": 1, "bytes": 1, "kB": 1e3, "KB": 1e3, "KiB": 1 << 10, "MB": 1e6, "MiB": 1 << 20}
	for _, m := range sizeRE.FindAllStringSubmatch(reason, -1) {
		n, err := strconv.ParseFloat(m[1], 64)
		// MB rounds: 9 MiB is 9.4 MB, 8 MiB 8.4 MB.
		if err == nil && n*unit[m[2]] >= float64(over)*0.95 {
			return true
		}
	}
	return false
}
