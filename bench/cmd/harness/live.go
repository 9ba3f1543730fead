package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/bench/datagen"
)

// liveResult is one sustained-rate phase.
type liveResult struct {
	System string `json:"system"`
	Label  string `json:"label,omitempty"`
	// Mix is set on a phase of the realistic mix; Kinds counts its changes
	// by datagen kind ("" for the usual ones).
	Mix   bool             `json:"realistic_mix,omitempty"`
	Kinds map[string]int64 `json:"changes_by_kind,omitempty"`
	// Avoided is the work flusso skipped during the phase: changes dropped
	// at capture, and sink writes of documents that did not change.
	Avoided      *avoided `json:"avoided,omitempty"`
	Skipped      string   `json:"skipped,omitempty"`
	OfferedRate  int      `json:"offered_changes_per_sec"`
	TxSize       int      `json:"changes_per_transaction"`
	LoadSeconds  float64  `json:"load_seconds"`
	Changes      int64    `json:"changes"`
	AchievedRate float64  `json:"achieved_changes_per_sec"` // committed by the load generator
	// DrainSeconds is how long after the load stopped every probe, the
	// last one committed right then, was searchable: the backlog left
	// behind. -1 when they were not within the drain limit; PipelineRate
	// is then -1 too.
	DrainSeconds float64 `json:"drain_seconds"`
	// PipelineRate is the changes over the load plus the drain: what the
	// pipeline sustained end to end.
	PipelineRate float64 `json:"pipeline_changes_per_sec"`

	Probes int `json:"probes"`
	Lost   int `json:"probes_not_visible"`
	// Percentiles over the probes committed during the load; -1 where the
	// percentile falls on a probe that never became visible.
	P50ms     float64 `json:"latency_p50_ms"`
	P95ms     float64 `json:"latency_p95_ms"`
	P99ms     float64 `json:"latency_p99_ms"`
	MaxMs     float64 `json:"latency_max_ms"`
	Latencies []point `json:"latencies"` // commit time since start (s), latency (ms)

	SlotLag        []point `json:"slot_lag"` // time since start (s), bytes
	MaxSlotLagMB   float64 `json:"max_slot_lag_mb"`
	FinalSlotLagMB float64 `json:"final_slot_lag_mb"`

	CPU             map[string]usage `json:"cpu"`
	CPUPer1kChanges float64          `json:"cpu_seconds_per_1k_changes"`
	// ServiceCPU is the CPU time OpenSearch and the database's Postgres
	// backends spent during the phase.
	ServiceCPU map[string]float64 `json:"service_cpu_seconds"`
	LoadAvg    float64            `json:"loadavg_1m_at_end"`
}

type point [2]float64

// liveSpec says what load to apply and where to look for it.
type liveSpec struct {
	system string
	label  string
	db     *pgxpool.Pool // the source database
	admin  *pgxpool.Pool // for slot lag
	dbName string
	search *search
	index  string // alias or index the probes are searched in
	gen    datagen.Gen
	stream uint64
	mix    bool // the realistic mix (datagen.MixWorkload)
	// status is the public surface of the flusso process under test, read
	// for the work it avoided; "" for other systems.
	status   string
	rate     int
	duration time.Duration
	txSize   int
	procs    group
	// drainLimit bounds the wait for the backlog after the load.
	drainLimit time.Duration
}

// probeSeq numbers probe values across the whole run so that none repeats.
var probeSeq atomic.Int64

// probe interval and search poll interval: the poll interval bounds the
// latency resolution.
const (
	probeEvery = 100 * time.Millisecond
	pollEvery  = 50 * time.Millisecond
)

func runLive(ctx context.Context, sp liveSpec) (*liveResult, error) {
	res := &liveResult{System: sp.system, Label: sp.label, OfferedRate: sp.rate, TxSize: sp.txSize, Mix: sp.mix}
	before := sp.procs.sample()
	svcBefore := services(sp.dbName)
	var avoidedBefore *avoided
	if sp.status != "" {
		a, err := readAvoided(ctx, sp.status)
		if err != nil {
			return nil, err
		}
		avoidedBefore = a
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Slot lag, once a second, until the phase ends.
	var lagMu sync.Mutex
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if lag, err := slotLag(ctx, sp.admin, sp.dbName); err == nil {
				lagMu.Lock()
				res.SlotLag = append(res.SlotLag, point{time.Since(start).Seconds(), float64(lag)})
				lagMu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()

	// Probes: committed with a known time, searched until visible.
	pr := newProber(sp, start)
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	pollDone := make(chan error, 1)
	go func() { pollDone <- pr.poll(pollCtx) }()
	loadCtx, stopLoad := context.WithTimeout(ctx, sp.duration)
	defer stopLoad()
	probeDone := make(chan error, 1)
	go func() {
		t := time.NewTicker(probeEvery)
		defer t.Stop()
		for {
			select {
			case <-loadCtx.Done():
				probeDone <- nil
				return
			case <-t.C:
				if _, err := pr.commit(ctx, false); err != nil {
					probeDone <- err
					return
				}
			}
		}
	}()

	changes, kinds, err := load(loadCtx, sp)
	stopLoad()
	loadEnd := time.Now()
	if err != nil {
		return nil, err
	}
	if err := <-probeDone; err != nil {
		return nil, err
	}
	res.Changes = changes
	if sp.mix {
		res.Kinds = kinds
	}
	res.LoadSeconds = loadEnd.Sub(start).Seconds()
	res.AchievedRate = float64(changes) / res.LoadSeconds

	// The drain probe: committed after the last change, visible once the
	// pipeline has caught up with everything before it.
	_, err = pr.commit(ctx, true)
	if err != nil {
		return nil, err
	}
	// Caught up when every probe, the final one last, is searchable.
	deadline := time.Now().Add(sp.drainLimit)
	for !pr.allSeen() && time.Now().Before(deadline) {
		if err := sp.procs.failed(); err != nil {
			return nil, err
		}
		time.Sleep(pollEvery)
	}
	stopPoll()
	if err := <-pollDone; err != nil && ctx.Err() == nil {
		return nil, err
	}
	res.DrainSeconds, res.PipelineRate = -1, -1
	if pr.allSeen() {
		res.DrainSeconds = pr.lastSeen().Sub(loadEnd).Seconds()
		res.PipelineRate = float64(changes) / (res.LoadSeconds + res.DrainSeconds)
	}
	after := sp.procs.sample()
	res.ServiceCPU = servicesDelta(services(sp.dbName), svcBefore)
	if avoidedBefore != nil {
		a, err := readAvoided(ctx, sp.status)
		if err != nil {
			return nil, err
		}
		res.Avoided = a.minus(avoidedBefore)
	}
	res.LoadAvg = loadavg()
	cancel()
	<-lagDone

	var lat []float64
	res.Probes, res.Lost, res.Latencies, lat = pr.results()
	if len(lat) > 0 {
		// A probe never seen counts as slower than all others: a
		// percentile that lands on one is unknown (-1), not small.
		for range res.Lost {
			lat = append(lat, math.Inf(1))
		}
		res.P50ms, res.P95ms, res.P99ms = pct(lat, 50), pct(lat, 95), pct(lat, 99)
		res.MaxMs = pct(lat, 100)
	}
	for _, p := range res.SlotLag {
		res.MaxSlotLagMB = max(res.MaxSlotLagMB, p[1]/(1<<20))
	}
	if n := len(res.SlotLag); n > 0 {
		res.FinalSlotLagMB = res.SlotLag[n-1][1] / (1 << 20)
	}
	res.CPU = delta(after, before)
	if changes > 0 {
		res.CPUPer1kChanges = totalCPU(res.CPU) / float64(changes) * 1000
	}
	return res, nil
}

// load commits the workload's changes at the offered rate, txSize changes
// per transaction, on a few connections, until ctx ends. When Postgres
// cannot keep up, the achieved rate shows it.
func load(ctx context.Context, sp liveSpec) (int64, map[string]int64, error) {
	w := sp.gen.Workload(sp.stream)
	if sp.mix {
		w = sp.gen.MixWorkload(sp.stream)
	}
	kinds := map[string]int64{}
	jobs := make(chan []datagen.Change, 64)
	var done atomic.Int64
	var kindMu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				b := &pgx.Batch{}
				for _, c := range job {
					b.Queue(c.SQL, c.Args...)
				}
				// One batch runs as one implicit transaction.
				if err := sp.db.SendBatch(context.WithoutCancel(ctx), b).Close(); err != nil {
					errs <- fmt.Errorf("applying changes: %w", err)
					return
				}
				done.Add(int64(len(job)))
				kindMu.Lock()
				for _, c := range job {
					kinds[c.Kind]++
				}
				kindMu.Unlock()
			}
		}()
	}
	start := time.Now()
	sent := int64(0)
	perTx := int64(sp.txSize)
feed:
	for ctx.Err() == nil {
		due := int64(time.Since(start).Seconds() * float64(sp.rate))
		for sent+perTx <= due {
			job := make([]datagen.Change, perTx)
			for i := range job {
				job[i] = w.Next()
			}
			select {
			case jobs <- job:
				sent += perTx
			case <-ctx.Done():
				break feed
			case err := <-errs:
				close(jobs)
				wg.Wait()
				return done.Load(), kinds, err
			}
		}
		time.Sleep(time.Millisecond)
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return done.Load(), kinds, err
	default:
	}
	return done.Load(), kinds, nil
}

// prober commits probe values and finds when they become searchable.
type prober struct {
	sp    liveSpec
	start time.Time

	mu        sync.Mutex
	committed map[int64]time.Time
	visibleAt map[int64]time.Time
	final     map[int64]bool
}

func newProber(sp liveSpec, start time.Time) *prober {
	return &prober{sp: sp, start: start, committed: map[int64]time.Time{}, visibleAt: map[int64]time.Time{}, final: map[int64]bool{}}
}

// commit writes the next probe value on a user row and returns it; its
// commit time is when COMMIT returned.
func (p *prober) commit(ctx context.Context, final bool) (int64, error) {
	v := probeSeq.Add(1)
	user := 1 + (v*7919)%int64(p.sp.gen.Users)
	if _, err := p.sp.db.Exec(ctx, "UPDATE users SET probe = $1 WHERE id = $2", v, user); err != nil {
		return 0, fmt.Errorf("committing probe: %w", err)
	}
	now := time.Now()
	p.mu.Lock()
	p.committed[v] = now
	p.final[v] = final
	p.mu.Unlock()
	return v, nil
}

func (p *prober) seen(v int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.visibleAt[v]
	return ok
}

func (p *prober) allSeen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.visibleAt) == len(p.committed)
}

// lastSeen is when the last probe became visible.
func (p *prober) lastSeen() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var last time.Time
	for _, t := range p.visibleAt {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// poll searches for the outstanding probes every pollEvery.
func (p *prober) poll(ctx context.Context) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		p.mu.Lock()
		var out []int64
		for v := range p.committed {
			if _, ok := p.visibleAt[v]; !ok {
				out = append(out, v)
			}
		}
		p.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		slices.Sort(out)
		out = out[:min(len(out), 1000)]
		seen, err := p.sp.search.visible(ctx, p.sp.index, out)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := time.Now()
		p.mu.Lock()
		for v := range seen {
			if _, ok := p.committed[v]; ok {
				if _, ok := p.visibleAt[v]; !ok {
					p.visibleAt[v] = now
				}
			}
		}
		p.mu.Unlock()
	}
}

// results are the probes committed during the load: their count, how many
// never showed, and the latencies of the others.
func (p *prober) results() (n, lost int, pts []point, lat []float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	vals := make([]int64, 0, len(p.committed))
	for v := range p.committed {
		if !p.final[v] {
			vals = append(vals, v)
		}
	}
	slices.Sort(vals)
	for _, v := range vals {
		n++
		at, ok := p.visibleAt[v]
		if !ok {
			lost++
			continue
		}
		ms := float64(at.Sub(p.committed[v]).Microseconds()) / 1000
		lat = append(lat, ms)
		pts = append(pts, point{p.committed[v].Sub(p.start).Seconds(), ms})
	}
	return n, lost, pts, lat
}

// pct is the q-th percentile by nearest rank; -1 when it is infinite.
func pct(vals []float64, q float64) float64 {
	s := slices.Clone(vals)
	slices.Sort(s)
	i := int(math.Ceil(q/100*float64(len(s)))) - 1
	v := s[max(0, min(i, len(s)-1))]
	if math.IsInf(v, 1) {
		return -1
	}
	return v
}

// slotLag is the largest distance in bytes between the server's WAL and a
// slot's confirmed position, over the slots of database db.
func slotLag(ctx context.Context, admin *pgxpool.Pool, db string) (int64, error) {
	var lag *int64
	err := admin.QueryRow(ctx, `SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn))::bigint
		FROM pg_replication_slots WHERE database = $1`, db).Scan(&lag)
	if err != nil || lag == nil {
		return 0, err
	}
	return *lag, nil
}
