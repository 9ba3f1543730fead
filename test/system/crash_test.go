package system

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
)

const accountsSchema = `version: 1
table: accounts
primary_key: id
fields:
  - long: id
  - long: ver
  - keyword: name
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

// probes are the accounts whose ver the crash checks follow.
const probes = 50

// TestCrashDuringBackfillAndStream kills the whole pipeline (SIGKILL) in
// the middle of a 200k-row backfill and again while it streams, with
// writes running throughout. At every kill, everything the slot confirmed
// must already be in OpenSearch; at the end the index equals a fresh build.
func TestCrashDuringBackfillAndStream(t *testing.T) {
	rows := 200_000
	if testing.Short() {
		t.Skip("short mode: the crash test needs the dev services and a minute")
	}
	d := newDeployment(t, `
		CREATE TABLE accounts (id bigserial PRIMARY KEY, ver bigint NOT NULL DEFAULT 0, name text NOT NULL);
		CREATE TABLE notes (id bigserial PRIMARY KEY, account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE, body text NOT NULL);
		CREATE INDEX ON notes (account_id);
		INSERT INTO accounts (name) SELECT 'account ' || g FROM generate_series(1, `+strconv.Itoa(rows)+`) g;
		INSERT INTO notes (account_id, body) SELECT g, 'note of ' || g FROM generate_series(1, `+strconv.Itoa(rows)+`, 7) g;`)
	d.writeConfig(map[string]string{"accounts": accountsSchema}, "stop")
	p := d.proc("flusso")

	w := startWriter(t, d, rows)
	p.Start()

	// Kill mid-backfill: once some but not all documents are written.
	waitFor(t, "documents to start landing", 3*time.Minute, p, func() bool {
		n := count(t, d)
		return n > 1000 && n < int64(rows)
	})
	p.Kill()
	last := w.checkConfirmed(t, d, "mid-backfill")
	p.Start()

	// Kill while streaming, twice: each time once the restarted pipeline
	// (its capture waits out the dead one's lease) confirmed new work.
	for i := range 2 {
		waitFor(t, "the restarted pipeline to confirm new work", 2*time.Minute, p, func() bool { _, c := d.SlotState(); return c > last })
		time.Sleep(time.Duration(1+i) * time.Second)
		p.Kill()
		last = w.checkConfirmed(t, d, "mid-stream "+strconv.Itoa(i+1))
		p.Start()
	}
	w.stop()
	res := d.Converge("accounts", accountsSchema, 5*time.Minute, p)
	t.Logf("converged: %s; writes %d; kills 3", res, w.writes())
	p.Stop()
}

// writer changes the database while the pipeline runs: random note
// inserts/deletes/moves and account updates, plus a monotonic ver on the
// probe accounts with the WAL position after each commit.
type writer struct {
	mu      sync.Mutex
	history map[int64][]probeWrite // probe id → writes in order
	n       int
	cancel  context.CancelFunc
	done    chan struct{}
}

type probeWrite struct {
	ver int64
	lsn pglogrepl.LSN // WAL position right after the commit: the commit ends at or before it
}

func startWriter(t *testing.T, d *deployment, rows int) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{history: map[int64][]probeWrite{}, cancel: cancel, done: make(chan struct{})}
	conn := testenv.Conn(t, d.DBURL)
	rng := rand.New(rand.NewPCG(7, 11))
	go func() {
		defer close(w.done)
		ver := int64(0)
		for ctx.Err() == nil {
			id := rng.Int64N(int64(rows)) + 1
			var err error
			switch rng.IntN(5) {
			case 0:
				_, err = conn.Exec(ctx, `INSERT INTO notes (account_id, body) VALUES ($1, 'new')`, id)
			case 1:
				_, err = conn.Exec(ctx, `DELETE FROM notes WHERE id = (SELECT min(id) FROM notes WHERE account_id = $1)`, id)
			case 2:
				_, err = conn.Exec(ctx, `UPDATE notes SET account_id = $1 WHERE id = (SELECT max(id) FROM notes WHERE account_id <> $1 AND id % 13 = $2)`, id, rng.IntN(13))
			case 3:
				_, err = conn.Exec(ctx, `UPDATE accounts SET name = $2 WHERE id = $1`, id, "renamed "+strconv.Itoa(rng.Int()))
			case 4:
				ver++
				probe := rng.Int64N(probes) + 1
				_, err = conn.Exec(ctx, `UPDATE accounts SET ver = $2 WHERE id = $1`, probe, ver)
				if err == nil {
					var lsn pglogrepl.LSN
					if err = conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err == nil {
						w.mu.Lock()
						w.history[probe] = append(w.history[probe], probeWrite{ver: ver, lsn: lsn})
						w.mu.Unlock()
					}
				}
			}
			if err != nil && ctx.Err() == nil {
				t.Errorf("workload: %v", err)
				return
			}
			w.mu.Lock()
			w.n++
			w.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *writer) stop() {
	w.cancel()
	<-w.done
}

func (w *writer) writes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// checkConfirmed runs with the pipeline dead: every probe write whose
// commit the slot confirmed must be visible (a newer one may be too).
func (w *writer) checkConfirmed(t *testing.T, d *deployment, when string) pglogrepl.LSN {
	t.Helper()
	_, confirmed := d.SlotState()
	ids := make([]string, probes)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	docs, err := harness.Get(context.Background(), d.OpenSearch, d.Prefix+"accounts", ids)
	if err != nil {
		t.Fatalf("%s: reading documents: %v", when, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	checked := 0
	for id, hist := range w.history {
		var want int64
		for _, pw := range hist {
			if pw.lsn <= confirmed {
				want = pw.ver
			}
		}
		if want == 0 {
			continue
		}
		checked++
		var doc struct {
			Ver int64 `json:"ver"`
		}
		raw, ok := docs[strconv.FormatInt(id, 10)]
		if ok {
			_ = json.Unmarshal(raw, &doc)
		}
		if !ok || doc.Ver < want {
			t.Fatalf("%s: slot confirmed %s but account %d has ver %d in OpenSearch, want >= %d (confirmed before durable)", when, confirmed, id, doc.Ver, want)
		}
	}
	t.Logf("%s: confirmed %s; %d probe accounts checked durable", when, confirmed, checked)
	return confirmed
}

func count(t *testing.T, d *deployment) int64 {
	n, err := harness.Count(context.Background(), d.OpenSearch, d.Prefix+"accounts")
	if err != nil {
		return 0
	}
	return n
}

func waitFor(t *testing.T, what string, within time.Duration, p *harness.Proc, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if done, err := p.Exited(); done {
			t.Fatalf("%s exited (%v) while waiting for %s:\n%s", p.Name, err, what, p.Tail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s\nstatus: %s", what, p.Tail(), p.Status())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
