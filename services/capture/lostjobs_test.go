package capture_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/backfill"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/sqlbuild"
	"github.com/flusso/flusso/proto/flussopb"
	"github.com/flusso/flusso/services/capture"
)

// TestLostKeyBatchesAreRepublished makes the changes stream lose a
// backfill's key batches, as a broker killed before writing them does: the
// capture must publish every key again, in a new run, and mark the job
// seeded only once that run's batches are built; the changes it lost must
// be published again too. A job whose batches the stream still accounts for
// is left alone.
func TestLostKeyBatchesAreRepublished(t *testing.T) {
	const keys, batchKeys = 50, 10
	tests := []struct {
		name string
		// lose runs between the job's first and second key batch when
		// during is set; otherwise once every batch is published.
		during bool
		lose   func(ctx context.Context, r *rig, jobs *backfill.Store) error
		// pass commits, after lose, more changes than the stream held:
		// its end is past the job's last batch again.
		pass bool
		// reconnect reconnects to NATS after lose, which starts a new
		// capture session; otherwise the capture must find the loss.
		reconnect bool
		// reused: the capture sees the stream hand out a sequence again.
		reused bool
		rerun  bool
	}{
		{name: "last batch beyond the stream", lose: moveLastBatchBeyondStream, reconnect: true, rerun: true},
		{name: "stream created anew", lose: recreateChanges, reconnect: true, rerun: true},
		{name: "stream created anew while publishing", during: true, lose: recreateChanges, reused: true, rerun: true},
		{name: "stream created anew and passed by new changes", lose: recreateChanges, pass: true, reused: true, rerun: true},
		{name: "last batch within the stream", lose: func(context.Context, *rig, *backfill.Store) error { return nil }, reconnect: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, `
				CREATE TABLE items (id int PRIMARY KEY, pad text NOT NULL);
				CREATE TABLE unread (n int);
				INSERT INTO items SELECT g, 'x' FROM generate_series(1, `+fmt.Sprint(keys)+`) g;`, "")
			ctx := context.Background()
			jobs, err := backfill.Open(ctx, r.bc)
			if err != nil {
				t.Fatal(err)
			}
			// live lists the row changes committed by id (no row is
			// updated twice); update waits until the capture published them.
			var live []string
			update := func(pad string, from, to int) {
				r.exec("UPDATE items SET pad = $1 WHERE id BETWEEN $2 AND $3", pad, from, to)
				for id := from; id <= to; id++ {
					live = append(live, strconv.Itoa(id))
				}
				r.eventually("the updates to be published", time.Minute, func() bool { return r.cap.Stats().Captured >= uint64(len(live)) })
			}
			// lose hands over the job as the first run left it. The loss
			// comes with a write, so that a rerun's snapshot is past the
			// first run's.
			firstRun := make(chan *backfill.Job, 1)
			lose := func() error {
				j, err := jobs.Get(ctx, "items")
				if err != nil {
					return err
				}
				firstRun <- j
				if err := advanceWAL(ctx, r.dbURL); err != nil {
					return err
				}
				return tt.lose(ctx, r, jobs)
			}
			cfg := r.config(map[string]string{"items": itemsSchema})
			cfg.BatchKeys = batchKeys
			if tt.during {
				var once sync.Once
				hookKeys(&cfg, func() {
					once.Do(func() {
						if err := lose(); err != nil {
							t.Errorf("losing the first key batch: %v", err)
						}
					})
				})
			}
			r.start(cfg)
			r.waitStreaming()

			// Nothing consumes, so nothing is confirmed: every new
			// session publishes this change again. Where the stream kept
			// it, the copy is a duplicate numbered below the job's
			// batches, which tells of no loss.
			update("before", 1, 1)
			ix := cfg.Indexes[0]
			if err := jobs.Request(ctx, &backfill.Job{Index: ix.Name, Hash: ix.Hash, Targets: map[string]uint32{"primary": 1}, Reason: "reindex"}); err != nil {
				t.Fatal(err)
			}
			if !tt.during {
				waitJob(t, r, jobs, ix.Name, "the keys to be published", func(j *backfill.Job) bool { return j.Phase == backfill.Published })
				update("after", 2, 2)
				if err := lose(); err != nil {
					t.Fatal(err)
				}
				if tt.pass {
					update("passing", 11, 20)
				}
				if tt.reconnect {
					if err := r.bc.NC.ForceReconnect(); err != nil {
						t.Fatal(err)
					}
				}
				r.eventually("a new capture session", time.Minute, func() bool { return len(r.logs.lines("msg=streaming")) >= 2 })
			}

			var first *backfill.Job
			select {
			case first = <-firstRun:
			case <-time.After(time.Minute):
				t.Fatal("the first run never got to its second key batch")
			}
			what := "the job to stay published"
			if tt.rerun {
				what = "the keys to be published again"
			}
			j := waitJob(t, r, jobs, ix.Name, what, func(j *backfill.Job) bool {
				return j.Phase == backfill.Published && (!tt.rerun || !j.Created.Equal(first.Created))
			})
			if tt.rerun {
				if j.Version <= first.Version {
					t.Errorf("the rerun has version %d, want one past the first run's %d", j.Version, first.Version)
				}
			} else if j.Version != first.Version || !j.Created.Equal(first.Created) {
				t.Errorf("the job changed from version %d created %v to %d created %v", first.Version, first.Created, j.Version, j.Created)
			}

			// Play the assemblers: build everything before the job's last
			// batch; the job must wait for that one.
			p, err := r.bc.Progress(ctx, broker.ChangesStream)
			if err != nil {
				t.Fatal(err)
			}
			read := r.read(int(j.LastSeq-p.Done-1), true)
			time.Sleep(2 * time.Second) // the capture looks for finished jobs every second
			if j := getJob(t, jobs, ix.Name); j.Phase != backfill.Published {
				t.Fatalf("the job is %s with its last key batch not built", j.Phase)
			}
			read = append(read, r.read(1, true)...)
			if last := read[len(read)-1]; last.seq != j.LastSeq {
				t.Fatalf("read sequence %d, want the job's last batch %d", last.seq, j.LastSeq)
			}
			waitJob(t, r, jobs, ix.Name, "the job to be marked seeded", func(j *backfill.Job) bool { return j.Phase == backfill.Done })

			var got []int
			for _, ch := range read {
				if ch.Op != flussopb.ChangeOp_BACKFILL || !strings.HasPrefix(ch.msgID, "bf-"+j.ID()+"-") {
					continue
				}
				for _, k := range ch.Keys {
					n, err := strconv.Atoi(k)
					if err != nil {
						t.Fatalf("key %q: %v", k, err)
					}
					got = append(got, n)
				}
			}
			slices.Sort(got)
			want := make([]int, keys)
			for i := range want {
				want[i] = i + 1
			}
			if !slices.Equal(got, want) {
				t.Errorf("the run marked seeded published keys %v, want each of 1..%d once", got, keys)
			}

			// A change the stream lost is published again by the session
			// after it: the slot was not confirmed past it.
			for len(updates(read, live)) > 0 {
				read = append(read, r.read(1, true)...)
			}

			reruns, wantReruns := r.logs.lines("the broker lost key batches of a backfill"), 0
			if tt.rerun {
				wantReruns = 1
			}
			if len(reruns) != wantReruns {
				t.Errorf("the job was run again %d times, want %d: %q", len(reruns), wantReruns, reruns)
			}
			reuses := r.logs.lines("handed out sequence")
			if tt.reused && len(reuses) == 0 {
				t.Error("no session ended on a sequence handed out again")
			}
			if !tt.reused && len(reuses) > 0 {
				t.Errorf("a session ended on a sequence handed out again: %q", reuses)
			}
		})
	}
}

// updates lists the row changes of live (by id) not among read.
func updates(read []change, live []string) []string {
	seen := map[string]bool{}
	for _, ch := range read {
		if ch.Op == flussopb.ChangeOp_UPDATE && ch.New != nil {
			seen[ch.New.Columns["id"].GetText()] = true
		}
	}
	var missing []string
	for _, u := range live {
		if !seen[u] {
			missing = append(missing, u)
		}
	}
	return missing
}

// moveLastBatchBeyondStream makes the job's last batch a sequence the
// stream never reached, as if the broker had lost the stream's tail.
func moveLastBatchBeyondStream(ctx context.Context, r *rig, jobs *backfill.Store) error {
	p, err := r.bc.Progress(ctx, broker.ChangesStream)
	if err != nil {
		return err
	}
	j, err := jobs.Get(ctx, "items")
	if err != nil {
		return err
	}
	j.LastSeq = p.Last + 100
	return jobs.Save(ctx, j)
}

// recreateChanges deletes the changes stream and creates it again: its
// sequences start over.
func recreateChanges(ctx context.Context, r *rig, _ *backfill.Store) error {
	if err := r.bc.JS.DeleteStream(ctx, broker.ChangesStream); err != nil {
		return fmt.Errorf("deleting %s: %w", broker.ChangesStream, err)
	}
	return r.bc.Setup(ctx, []string{"primary"})
}

// advanceWAL commits a write no index reads.
func advanceWAL(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "INSERT INTO unread VALUES (1)")
	return err
}

// hookKeys has cfg's capture call next before reading each page of keys
// but the first.
func hookKeys(cfg *capture.Config, next func()) {
	capture.WrapKeys(cfg, func(k capture.KeySource) capture.KeySource { return hookedKeys{KeySource: k, next: next} })
}

// hookedKeys calls next before reading each page of keys but the first.
type hookedKeys struct {
	capture.KeySource
	next func()
}

func (k hookedKeys) Keys(ctx context.Context, q sqlbuild.Querier, after string, first bool, limit int) ([]string, error) {
	if !first {
		k.next()
	}
	return k.KeySource.Keys(ctx, q, after, first, limit)
}

func getJob(t *testing.T, jobs *backfill.Store, index string) *backfill.Job {
	t.Helper()
	j, err := jobs.Get(context.Background(), index)
	if err != nil {
		t.Fatal(err)
	}
	if j == nil {
		t.Fatalf("no backfill job for %s", index)
	}
	return j
}

func waitJob(t *testing.T, r *rig, jobs *backfill.Store, index, what string, cond func(*backfill.Job) bool) *backfill.Job {
	t.Helper()
	var j *backfill.Job
	r.eventually(what, time.Minute, func() bool {
		j = getJob(t, jobs, index)
		return cond(j)
	})
	return j
}
