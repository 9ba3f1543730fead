package opensearch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/flusso/flusso/pkg/sink"
)

// maxPage caps the ids one search returns: OpenSearch refuses a size past
// index.max_result_window, 10,000 unless changed.
const maxPage = 10_000

// progressEvery is how often a long purge logs how far it got.
const progressEvery = 10 * time.Second

// Purge deletes the documents of every live generation that are older than
// the truncate with this version: every id found gets a delete carrying
// version as its external version. Documents built from rows inserted after
// the truncate carry a version at least as high and stay, even when another
// writer process writes them while the purge runs; deleted ones leave
// tombstones, so a late upsert older than the truncate cannot bring them
// back.
//
// Ids are listed shard by shard in _seq_no order, BatchSize at a time
// (capped at maxPage). OpenSearch has no tiebreaker across shards for
// search_after (no _shard_doc), sorting on _id loads every id into the heap,
// and a scroll page is lost when its response is. A page of one shard in
// _seq_no order can be asked for again, and no document slips past the
// cursor: a document keeps its sequence number until it is written again,
// and a rewrite, being newer than the truncate, need not be seen.
func (s *Sink) Purge(ctx context.Context, index string, version uint64) error {
	if version > math.MaxInt64 {
		return fmt.Errorf("purge %s: version %d exceeds OpenSearch's external version range", index, version)
	}
	o, err := s.lookup(index)
	if err != nil {
		return fmt.Errorf("purge %s: %w", index, err)
	}
	targets, err := s.liveTargets(ctx, o)
	if err != nil {
		return fmt.Errorf("purge %s: %w", index, err)
	}
	// Recorded first, like any delete (see tombstones.go).
	grave, err := graveOp(0, s.tombstoneIndex(), o.hashAlias, "", version, time.Now())
	if err != nil {
		return err
	}
	if err := s.bury(ctx, []op{grave}, []sink.Doc{{Index: index, Op: sink.Delete, Version: version}}); err != nil {
		return fmt.Errorf("purge %s: %w", index, err)
	}
	// Searches only find what a refresh made visible, and every document
	// older than the truncate was written before the writer applies it.
	if _, err := s.callOK(ctx, http.MethodPost, request{path: "/" + joinNames(targets) + "/_refresh"}); err != nil {
		return fmt.Errorf("purge %s: refresh: %w", index, err)
	}
	p := &purger{s: s, index: index, version: version, logged: time.Now()}
	for _, target := range targets {
		if err := p.target(ctx, target); err != nil {
			return fmt.Errorf("purge %s: %w", index, err)
		}
	}
	s.log.Info("purged index", "index", index, "targets", targets, "version", version, "ids", p.ids)
	return nil
}

// purger is one Purge call under way.
type purger struct {
	s       *Sink
	index   string // logical name
	version uint64
	ids     int // ids sent for deletion so far, newer documents kept included
	logged  time.Time
}

// target purges one live generation, a shard at a time.
func (p *purger) target(ctx context.Context, target string) error {
	all, err := p.s.search(ctx, target, "", map[string]any{"size": 0, "track_total_hits": false})
	if err != nil {
		return fmt.Errorf("count shards of %s: %w", target, err)
	}
	for shard := range all.Shards.Total {
		if err := p.shard(ctx, target, shard); err != nil {
			return fmt.Errorf("%s shard %d: %w", target, shard, err)
		}
	}
	return nil
}

// shard deletes the documents of one shard page by page.
func (p *purger) shard(ctx context.Context, target string, shard int) error {
	preference := "_shards:" + strconv.Itoa(shard)
	top, err := p.s.search(ctx, target, preference, map[string]any{
		"size": 1, "_source": false, "track_total_hits": false,
		"sort": []any{map[string]any{"_seq_no": "desc"}},
	})
	if err != nil {
		return fmt.Errorf("find the highest sequence number: %w", err)
	}
	if len(top.Hits.Hits) == 0 {
		return nil
	}
	// Higher sequence numbers went to writes after the refresh, newer than
	// the truncate: leaving them out lets the scan end under steady writes.
	ceiling, err := top.Hits.Hits[0].seqNo()
	if err != nil {
		return err
	}
	page := min(p.s.cfg.BatchSize, maxPage)
	for after := int64(-1); ; {
		got, err := p.s.search(ctx, target, preference, map[string]any{
			"size": page, "_source": false, "track_total_hits": false,
			"query": map[string]any{"range": map[string]any{"_seq_no": map[string]any{"gt": after, "lte": ceiling}}},
			"sort":  []any{map[string]any{"_seq_no": "asc"}},
		})
		if err != nil {
			return fmt.Errorf("list ids after sequence number %d: %w", after, err)
		}
		hits := got.Hits.Hits
		if len(hits) == 0 {
			return nil
		}
		ids := make([]string, len(hits))
		for i, h := range hits {
			ids[i] = h.ID
		}
		if err := p.delete(ctx, target, ids); err != nil {
			return err
		}
		if after, err = hits[len(hits)-1].seqNo(); err != nil {
			return err
		}
		p.progress(len(ids))
	}
}

// delete sends versioned deletes of ids to target. A 409 (the document is
// newer than the truncate) and a 404 count as done.
func (p *purger) delete(ctx context.Context, target string, ids []string) error {
	docs := make([]sink.Doc, len(ids))
	ops := make([]op, len(ids))
	for i, id := range ids {
		docs[i] = sink.Doc{Index: p.index, ID: id, Op: sink.Delete, Version: p.version}
		line, err := actionLine("delete", action{Index: target, ID: id, Version: p.version, VersionType: "external"})
		if err != nil {
			return err
		}
		ops[i] = op{doc: i, lines: line}
	}
	var res chunkResult
	for _, chunk := range chunks(ops, p.s.cfg.BatchSize, p.s.cfg.MaxBytes) {
		if err := p.s.bulk(ctx, chunk, docs, &res); err != nil {
			return fmt.Errorf("delete from %s: %w", target, err)
		}
	}
	if rejected := res.rejected; len(rejected) > 0 {
		first := slices.Min(slices.Collect(maps.Keys(rejected)))
		return fmt.Errorf("delete %s from %s refused (%d of %d ids): %s", ids[first], target, len(rejected), len(ids), rejected[first])
	}
	return nil
}

// progress counts n more ids and logs the total now and then.
func (p *purger) progress(n int) {
	p.ids += n
	if time.Since(p.logged) < progressEvery {
		return
	}
	p.logged = time.Now()
	p.s.log.Info("purging index", "index", p.index, "version", p.version, "ids", p.ids)
}

// searchResult is the part of a search response a purge reads.
type searchResult struct {
	TimedOut bool `json:"timed_out"`
	Shards   struct {
		Total    int             `json:"total"`
		Failed   int             `json:"failed"`
		Failures json.RawMessage `json:"failures"`
	} `json:"_shards"`
	Hits struct {
		Hits []hit `json:"hits"`
	} `json:"hits"`
}

type hit struct {
	ID   string  `json:"_id"`
	Sort []int64 `json:"sort"`
}

// seqNo is the hit's sequence number, its only sort value.
func (h hit) seqNo() (int64, error) {
	if len(h.Sort) != 1 {
		return 0, fmt.Errorf("hit %s has sort values %v, want its sequence number", h.ID, h.Sort)
	}
	return h.Sort[0], nil
}

// search runs a search of target (on the shards preference names, when
// set), retrying transient failures and incomplete results: a shard that
// did not answer would hide documents. Pages are idempotent, so a retry
// cannot skip one.
func (s *Sink) search(ctx context.Context, target, preference string, body map[string]any) (searchResult, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return searchResult{}, err
	}
	q := url.Values{"filter_path": {"timed_out,_shards,hits.hits._id,hits.hits.sort"}}
	if preference != "" {
		q.Set("preference", preference)
	}
	r := request{path: "/" + url.PathEscape(target) + "/_search", query: q, body: raw}
	return searchAs[searchResult](ctx, s, r, preference != "")
}

// shards is an answer to a search, for its shards' part.
type shards interface{ shards() searchResult }

func (r searchResult) shards() searchResult { return r }

// searchAs sends search request r and decodes its answer as T, retrying
// transient failures and incomplete answers (see incomplete).
func searchAs[T shards](ctx context.Context, s *Sink, r request, oneShard bool) (T, error) {
	var got T
	err := s.retry(ctx, func() error {
		resp, err := s.attempt(ctx, http.MethodPost, r)
		if err != nil {
			return err
		}
		if !resp.ok() {
			return resp.errorOf()
		}
		var fresh T
		if err := json.Unmarshal(resp.body, &fresh); err != nil {
			return fmt.Errorf("decode search response: %w", err)
		}
		got = fresh
		return incomplete(got.shards(), oneShard)
	})
	return got, err
}

// incomplete reports an answer missing shards (retryable: shards recover)
// and a shard preference that matched no shard (not retryable).
func incomplete(got searchResult, oneShard bool) error {
	sh := got.Shards
	switch {
	case oneShard && sh.Total != 1:
		return fmt.Errorf("search of one shard covered %d", sh.Total)
	case sh.Failed > 0:
		return &retryable{err: fmt.Errorf("%d of %d shards failed: %s", sh.Failed, sh.Total, truncate(string(sh.Failures), 500))}
	case got.TimedOut:
		return &retryable{err: errors.New("search timed out")}
	}
	return nil
}
