package faults

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestSourceDDL: a column the schema reads is dropped while the pipeline
// runs. /status shows the assembler degraded with an error naming index,
// field and column, /readyz answers 503 after the grace period; once the
// column is back (and the rows updated) it recovers by itself and the
// index equals Postgres.
func TestSourceDDL(t *testing.T) {
	r := newRig(t, setup{Env: []string{readyGraceEnv + "=" + strconv.Itoa(int(readyGrace/time.Second))}})
	r.start()
	rp := &report{scenario: "source DDL"}
	if code, body, err := r.get("/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("expected /readyz 200 before the DDL; got %d %s %v", code, body, err)
	}
	w := r.startWorkload(20 * time.Millisecond)
	o := r.observe()

	rp.inject("ALTER TABLE accounts DROP COLUMN name (field title)")
	from := time.Now()
	r.exec(`ALTER TABLE accounts DROP COLUMN name`)
	rep := r.expectStage(assemblerStage, "degraded", 2*time.Minute)
	if !containsAll(rep.LastError, indexName, "title", "name") {
		t.Errorf("expected the assembler's last_error to name index %q, field %q and column %q; it is %q", indexName, "title", "name", rep.LastError)
	}
	r.waitFor("/readyz to answer 503 once the grace period passed", readyGrace+time.Minute, func() bool {
		code, _, err := r.get("/readyz")
		return err == nil && code == http.StatusServiceUnavailable
	})
	notReady := time.Since(from)

	rp.inject("the column added back and every row updated")
	fixed := time.Now()
	r.exec(`ALTER TABLE accounts ADD COLUMN name text NOT NULL DEFAULT ''`)
	r.exec(`UPDATE accounts SET name = 'account ' || id`)
	r.expectStage(assemblerStage, "ok", 2*time.Minute)
	r.waitFor("/readyz to answer 200 again", time.Minute, func() bool {
		code, _, err := r.get("/readyz")
		return err == nil && code == http.StatusOK
	})
	recovered := time.Since(fixed)
	out := r.finish(w)
	samples := o.stop()
	rp.saw = seen(between(samples, from, fixed))

	rp.figure("/readyz 503 %v after the drop (grace %v)", notReady.Round(100*time.Millisecond), readyGrace)
	rp.figure("recovery %v from the fix to the assembler ok and /readyz 200", recovered.Round(100*time.Millisecond))
	maxLag, _ := slotFigures(between(samples, from, fixed))
	rp.figure("max slot lag while degraded %s", mib(maxLag))
	rp.figure("writes %d", w.writes.Load())
	rp.log(r, out)
}
