package opensearch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/flusso/flusso/pkg/sink"
)

// OpenSearch remembers a delete's version only in memory (index.gc_deletes):
// a node restart, an index close/open or a primary moving to another node
// forgets it, and an older upsert still in flight at that moment (a writer
// retrying through the outage, a redelivery after a crash) would bring the
// deleted document back. So the sink keeps its own durable record of
// deletes, the tombstones index: one document per deleted id (and one per
// purge of a whole index) carrying the delete's version as its external
// version, written before the delete itself. An upsert that OpenSearch
// reports as creating its document under a primary term above 1 (the shard
// was recovered since the index was created, so its memory of deletes may
// be gone) is checked against that record, and deleted again at the
// tombstone's version when the tombstone is newer.

// tombstoneRetention is how long a tombstone is kept: far longer than any
// upsert stays in flight, yet bounded so the index does not grow forever.
const tombstoneRetention = 24 * time.Hour

// sweepEvery spaces the removals of expired tombstones.
const sweepEvery = time.Hour

// maxIDBytes is OpenSearch's limit on a document id.
const maxIDBytes = 512

func (s *Sink) tombstoneIndex() string { return s.cfg.Prefix + "flusso_tombstones" }

// tombstone is the source of a tombstones document.
type tombstone struct {
	Alias string `json:"alias"`        // the hash alias of the index
	ID    string `json:"id,omitempty"` // empty: the whole index was purged
	At    int64  `json:"at"`           // when it was written, epoch milliseconds
}

var tombstoneMapping = map[string]any{
	"dynamic": false,
	"properties": map[string]any{
		"alias": map[string]any{"type": "keyword"},
		"id":    map[string]any{"type": "keyword"},
		"at":    map[string]any{"type": "date", "format": "epoch_millis"},
	},
}

// tombstoneID is the tombstones document of id in the index behind
// hashAlias; an empty id names the purge record. A hash alias holds no
// '/', so the two cannot collide.
func tombstoneID(hashAlias, id string) string {
	if id == "" {
		return hashAlias
	}
	key := hashAlias + "/" + id
	if len(key) > maxIDBytes {
		sum := sha256.Sum256([]byte(id))
		key = hashAlias + "/sha256:" + hex.EncodeToString(sum[:])
	}
	return key
}

// graveOp is the bulk item recording that id of hashAlias was deleted at
// version; doc is the position of the delete in the Write.
func graveOp(doc int, index, hashAlias, id string, version uint64, now time.Time) (op, error) {
	line, err := actionLine("index", action{Index: index, ID: tombstoneID(hashAlias, id), Version: version, VersionType: "external"})
	if err != nil {
		return op{}, err
	}
	source, err := json.Marshal(tombstone{Alias: hashAlias, ID: id, At: now.UnixMilli()})
	if err != nil {
		return op{}, err
	}
	return op{doc: doc, lines: line, source: source}, nil
}

// bury writes tombstones and returns once OpenSearch holds all of them (a
// newer one already there counts). It fails rather than let a delete go out
// without its tombstone.
func (s *Sink) bury(ctx context.Context, graves []op, docs []sink.Doc) error {
	if len(graves) == 0 {
		return nil
	}
	s.sweep(ctx)
	var res chunkResult
	for _, chunk := range chunks(graves, s.cfg.BatchSize, s.cfg.MaxBytes) {
		if err := s.bulk(ctx, chunk, docs, &res); err != nil {
			return fmt.Errorf("record deletes in %s: %w", s.tombstoneIndex(), err)
		}
	}
	for i, reason := range res.rejected {
		return fmt.Errorf("record the delete of %s/%s in %s: %s", docs[i].Index, docs[i].ID, s.tombstoneIndex(), reason)
	}
	return nil
}

// revival is an upsert that created its document in index (concrete) on a
// shard whose memory of deletes may be gone.
type revival struct {
	doc   int
	index string
}

// rebury deletes again, at the tombstone's version, each revived document
// whose tombstone (or whose index's purge) is newer than the upsert that
// brought it back.
func (s *Sink) rebury(ctx context.Context, revived []revival, docs []sink.Doc) error {
	if len(revived) == 0 {
		return nil
	}
	aliases := map[string]string{} // logical → hash alias
	var keys []string
	seen := map[string]bool{}
	for _, r := range revived {
		d := docs[r.doc]
		o, err := s.lookup(d.Index)
		if err != nil {
			return err
		}
		aliases[d.Index] = o.hashAlias
		for _, k := range []string{tombstoneID(o.hashAlias, d.ID), tombstoneID(o.hashAlias, "")} {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	versions, err := s.tombstones(ctx, keys)
	if err != nil {
		return err
	}
	var ops []op
	for _, r := range revived {
		d := docs[r.doc]
		alias := aliases[d.Index]
		dead := max(versions[tombstoneID(alias, d.ID)], versions[tombstoneID(alias, "")])
		if dead <= d.Version {
			continue // created legitimately, after its delete
		}
		line, err := actionLine("delete", action{Index: r.index, ID: d.ID, Version: dead, VersionType: "external"})
		if err != nil {
			return err
		}
		ops = append(ops, op{doc: r.doc, lines: line})
	}
	if len(ops) == 0 {
		return nil
	}
	s.log.Warn("deleting again documents that an older write brought back after OpenSearch forgot their deletes (a restart or recovery)",
		"documents", len(ops), "index", docs[ops[0].doc].Index, "id", docs[ops[0].doc].ID)
	var res chunkResult
	if err := s.bulk(ctx, ops, docs, &res); err != nil {
		return fmt.Errorf("delete revived documents: %w", err)
	}
	for i, reason := range res.rejected {
		return fmt.Errorf("delete revived document %s/%s: %s", docs[i].Index, docs[i].ID, reason)
	}
	return nil
}

// tombstones reads the versions of the tombstones named by keys (one
// realtime _mget); absent ones are missing from the map.
func (s *Sink) tombstones(ctx context.Context, keys []string) (map[string]uint64, error) {
	body, err := json.Marshal(map[string]any{"ids": keys})
	if err != nil {
		return nil, err
	}
	resp, err := s.callOK(ctx, http.MethodPost, request{
		path:  "/" + url.PathEscape(s.tombstoneIndex()) + "/_mget",
		query: url.Values{"_source": {"false"}},
		body:  body,
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.tombstoneIndex(), err)
	}
	var got struct {
		Docs []struct {
			ID      string `json:"_id"`
			Found   bool   `json:"found"`
			Version uint64 `json:"_version"`
		} `json:"docs"`
	}
	if err := json.Unmarshal(resp.body, &got); err != nil {
		return nil, fmt.Errorf("decode %s: %w", s.tombstoneIndex(), err)
	}
	out := make(map[string]uint64, len(got.Docs))
	for _, d := range got.Docs {
		if d.Found {
			out[d.ID] = d.Version
		}
	}
	return out, nil
}

// sweep removes expired tombstones, at most once per sweepEvery per
// process; OpenSearch does it in the background, and a failure only
// leaves them for the next sweep.
func (s *Sink) sweep(ctx context.Context) {
	s.mu.Lock()
	due := time.Since(s.swept) >= sweepEvery
	if due {
		s.swept = time.Now()
	}
	s.mu.Unlock()
	if !due {
		return
	}
	body, err := json.Marshal(map[string]any{"query": map[string]any{"range": map[string]any{
		"at": map[string]any{"lt": time.Now().Add(-tombstoneRetention).UnixMilli()}}}})
	if err != nil {
		return
	}
	_, err = s.send(ctx, http.MethodPost, request{
		path:  "/" + url.PathEscape(s.tombstoneIndex()) + "/_delete_by_query",
		query: url.Values{"conflicts": {"proceed"}, "wait_for_completion": {"false"}},
		body:  body,
	})
	if err != nil {
		s.log.Warn("removing expired tombstones; the next sweep tries again", "err", err)
	}
}
