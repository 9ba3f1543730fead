// Package backfill holds backfill jobs: the work of seeding one index into
// the sinks that lack it. A job lives in the JetStream state bucket, so any
// process can request one (startup seeding, an on-demand reindex) and the
// capture that runs it resumes from its checkpoint after a crash.
package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/pkg/broker"
)

// Phase is where a job is.
type Phase string

// Phases, in order.
const (
	// Pending: keys are being read and published as BACKFILL changes.
	Pending Phase = "pending"
	// Published: every key is on the changes stream; waiting for the
	// assemblers to get past LastSeq before marking the sinks seeded.
	Published Phase = "published"
	// Done: SEEDED markers are on the documents stream.
	Done Phase = "done"
)

// Job seeds one index into some sinks.
type Job struct {
	Index string `json:"index"`
	Hash  string `json:"hash"`
	// Targets maps each sink to seed to the generation being seeded.
	Targets map[string]uint32 `json:"targets"`
	Phase   Phase             `json:"phase"`
	Reason  string            `json:"reason"` // "initial", "schema change", "reindex", "new sink"

	// Checkpoint: After is the last key published (text form), Started
	// tells whether any key was; Rows counts keys published; Total is an
	// estimate for progress.
	After   string `json:"after"`
	Started bool   `json:"started"`
	Rows    int64  `json:"rows"`
	Total   int64  `json:"total"`
	// Version is the LSN of the snapshot the keys were first read in; it
	// versions every document the job builds.
	Version uint64 `json:"version"`
	// LastSeq is the changes-stream sequence of the last key batch.
	LastSeq uint64 `json:"last_seq"`

	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	Finished time.Time `json:"finished,omitzero"`

	rev uint64
}

// Sinks lists the target sink names in order.
func (j *Job) Sinks() []string {
	out := make([]string, 0, len(j.Targets))
	for s := range j.Targets {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Generations groups the target sinks by the generation they seed, in
// order of generation, sinks sorted within each.
func (j *Job) Generations() []Target {
	by := map[uint32][]string{}
	for _, s := range j.Sinks() {
		by[j.Targets[s]] = append(by[j.Targets[s]], s)
	}
	out := make([]Target, 0, len(by))
	for gen, sinks := range by {
		out = append(out, Target{Generation: gen, Sinks: sinks})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Generation < out[b].Generation })
	return out
}

// Target is one generation being seeded and the sinks seeding it.
type Target struct {
	Generation uint32
	Sinks      []string
}

// ID names the job's run: it changes whenever the job is requested anew, so
// message ids of one run never deduplicate against another's.
func (j *Job) ID() string {
	return fmt.Sprintf("%s-%s-%d", j.Index, j.Hash, j.Created.UnixNano())
}

// Store keeps jobs in the state bucket under backfill.<index>.
type Store struct {
	kv jetstream.KeyValue
}

// NewStore wraps the state bucket.
func NewStore(kv jetstream.KeyValue) *Store { return &Store{kv: kv} }

const prefix = "backfill."

func key(index string) string { return prefix + index }

// Get reads the job of an index; nil when there is none.
func (s *Store) Get(ctx context.Context, index string) (*Job, error) {
	e, err := s.kv.Get(ctx, key(index))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading backfill job of %s: %w", index, err)
	}
	var j Job
	if err := json.Unmarshal(e.Value(), &j); err != nil {
		return nil, fmt.Errorf("decoding backfill job of %s: %w", index, err)
	}
	j.rev = e.Revision()
	return &j, nil
}

// List reads every job.
func (s *Store) List(ctx context.Context) ([]*Job, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing backfill jobs: %w", err)
	}
	var out []*Job
	for k := range lister.Keys() {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		j, err := s.Get(ctx, strings.TrimPrefix(k, prefix))
		if err != nil {
			return nil, err
		}
		if j != nil {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Index < out[b].Index })
	return out, nil
}

// ErrRunning says a job for the index is already under way.
var ErrRunning = errors.New("a backfill of this index is already running")

// Request creates a job for an index unless one is under way. A done job is
// replaced.
func (s *Store) Request(ctx context.Context, j *Job) error {
	if len(j.Targets) == 0 {
		// Key batches go to the targets' generations: with none, no key
		// would be built and the job would still finish.
		return fmt.Errorf("requesting backfill of %s: no sink to seed", j.Index)
	}
	now := time.Now().UTC()
	j.Phase, j.Created, j.Updated = Pending, now, now
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encoding backfill job of %s: %w", j.Index, err)
	}
	cur, err := s.Get(ctx, j.Index)
	if err != nil {
		return err
	}
	if cur == nil {
		rev, err := s.kv.Create(ctx, key(j.Index), b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrRunning
		}
		if err != nil {
			return fmt.Errorf("requesting backfill of %s: %w", j.Index, err)
		}
		j.rev = rev
		return nil
	}
	if cur.Phase != Done {
		return ErrRunning
	}
	rev, err := s.kv.Update(ctx, key(j.Index), b, cur.rev)
	if err != nil {
		return fmt.Errorf("requesting backfill of %s: %w", j.Index, err)
	}
	j.rev = rev
	return nil
}

// Save writes a job's progress; it fails if someone else changed it since
// it was read (a second capture, a new request).
func (s *Store) Save(ctx context.Context, j *Job) error {
	j.Updated = time.Now().UTC()
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encoding backfill job of %s: %w", j.Index, err)
	}
	rev, err := s.kv.Update(ctx, key(j.Index), b, j.rev)
	if err != nil {
		return fmt.Errorf("saving backfill checkpoint of %s: %w", j.Index, err)
	}
	j.rev = rev
	return nil
}

// Open returns the state bucket's job store.
func Open(ctx context.Context, c *broker.Conn) (*Store, error) {
	kv, err := c.State(ctx)
	if err != nil {
		return nil, err
	}
	return NewStore(kv), nil
}
