// Package ceiling measures what flusso is compared with: how fast Postgres
// builds the benchmark documents with flusso's own SQL builder, and how fast
// OpenSearch takes those same documents when a minimal program bulk-indexes
// them straight in. The second is the machine's physical ceiling for a
// backfill: flusso cannot seed faster than OpenSearch indexes.
package ceiling

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/pkg/mapping"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// BuildResult is the Postgres build rate.
type BuildResult struct {
	Docs       int64         `json:"docs"`
	Bytes      int64         `json:"bytes"`
	Workers    int           `json:"workers"`
	Chunk      int           `json:"chunk"`
	Took       time.Duration `json:"took_ns"`
	DocsPerSec float64       `json:"docs_per_sec"`
}

// Build builds every document of ix with workers goroutines, chunk keys per
// statement (the assembler's defaults are 2 and 250), and writes them to
// path as lines of "id TAB body". Only the building is timed: listing the
// keys happens first, and writing the file is off the workers' path.
func Build(ctx context.Context, pool *pgxpool.Pool, ix *sqlbuild.Index, workers, chunk int, path string) (BuildResult, error) {
	res := BuildResult{Workers: workers, Chunk: chunk}
	if err := ix.Prepare(ctx, pool); err != nil {
		return res, fmt.Errorf("preparing the index: %w", err)
	}
	var keys []string
	err := ix.KeyPages(ctx, pool, 10_000, func(page []string) error {
		keys = append(keys, page...)
		return nil
	})
	if err != nil {
		return res, err
	}

	f, err := os.Create(path)
	if err != nil {
		return res, fmt.Errorf("creating the document file: %w", err)
	}
	defer f.Close()
	out := bufio.NewWriterSize(f, 1<<20)

	chunks := make(chan []string)
	built := make(chan []sqlbuild.Doc, workers)
	errs := make(chan error, workers)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range chunks {
				docs, err := ix.Build(ctx, pool, c)
				if err != nil {
					errs <- err
					return
				}
				built <- docs
			}
		}()
	}
	go func() {
		defer close(chunks)
		for i := 0; i < len(keys); i += chunk {
			select {
			case chunks <- keys[i:min(i+chunk, len(keys))]:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(built) }()
	for docs := range built {
		for _, d := range docs {
			if d.Err != nil {
				return res, d.Err
			}
			if d.Body == nil {
				continue
			}
			res.Docs++
			res.Bytes += int64(len(d.Body))
			out.WriteString(d.ID)
			out.WriteByte('\t')
			out.Write(d.Body)
			out.WriteByte('\n')
		}
	}
	res.Took = time.Since(start)
	select {
	case err := <-errs:
		return res, fmt.Errorf("building documents: %w", err)
	default:
	}
	if err := out.Flush(); err != nil {
		return res, fmt.Errorf("writing the document file: %w", err)
	}
	res.DocsPerSec = float64(res.Docs) / res.Took.Seconds()
	return res, nil
}

// BulkResult is the raw bulk-indexing rate.
type BulkResult struct {
	// Overwrite: the documents replaced existing ones (the live case)
	// instead of filling an empty index (the backfill case).
	Overwrite bool `json:"overwrite"`
	// After: measured after the tool's backfill rather than before it.
	After       bool          `json:"after,omitempty"`
	Docs        int64         `json:"docs"`
	Concurrency int           `json:"concurrency"`
	BatchDocs   int           `json:"batch_docs"`
	Took        time.Duration `json:"took_ns"`
	DocsPerSec  float64       `json:"docs_per_sec"`
}

// Bulk creates index in OpenSearch with the mapping and settings flusso
// gives the schema (auto-refresh off, replicas as given), indexes every
// document of the file with concurrency bulk requests of batch documents in
// flight, and refreshes; the time covers the indexing and the refresh.
// With overwrite the index is kept and the documents replace the ones a
// previous call indexed: what a live update costs OpenSearch.
func Bulk(ctx context.Context, osURL, index string, ix *schema.Index, replicas, batch, concurrency int, path string, overwrite bool) (BulkResult, error) {
	res := BulkResult{Concurrency: concurrency, BatchDocs: batch, Overwrite: overwrite}
	opts := mapping.Options{TextAnalysis: mapping.Builtin, AutoSubfields: true}
	body, err := json.Marshal(map[string]any{
		"settings": mapping.Settings(ix, opts, 1, replicas),
		"mappings": mapping.For(ix, opts),
	})
	if err != nil {
		return res, err
	}
	// Uncompressed answers, as the sink asks for: gzip would cost
	// OpenSearch CPU that the ceiling must not pay.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency + 1, DisableCompression: true}, Timeout: 120 * time.Second}
	if !overwrite {
		_, _ = do(ctx, client, http.MethodDelete, osURL+"/"+url.PathEscape(index), nil)
		if _, err := do(ctx, client, http.MethodPut, osURL+"/"+url.PathEscape(index), body); err != nil {
			return res, fmt.Errorf("creating %s: %w", index, err)
		}
	}

	f, err := os.Open(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	bodies := make(chan []byte, concurrency)
	errs := make(chan error, concurrency+1)
	start := time.Now()
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range bodies {
				if err := bulk(ctx, client, osURL, b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// The action line is what flusso sends minus the external version.
	action := func(id string) string {
		a, _ := json.Marshal(map[string]any{"index": map[string]any{"_index": index, "_id": id}})
		return string(a)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var buf bytes.Buffer
	n := 0
	for sc.Scan() {
		id, doc, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		buf.WriteString(action(id))
		buf.WriteByte('\n')
		buf.WriteString(doc)
		buf.WriteByte('\n')
		n++
		res.Docs++
		if n == batch {
			select {
			case bodies <- bytes.Clone(buf.Bytes()):
			case err := <-errs:
				close(bodies)
				return res, err
			}
			buf.Reset()
			n = 0
		}
	}
	if n > 0 {
		bodies <- bytes.Clone(buf.Bytes())
	}
	close(bodies)
	wg.Wait()
	select {
	case err := <-errs:
		return res, err
	default:
	}
	if err := sc.Err(); err != nil {
		return res, err
	}
	if _, err := do(ctx, client, http.MethodPost, osURL+"/"+url.PathEscape(index)+"/_refresh", nil); err != nil {
		return res, err
	}
	res.Took = time.Since(start)
	res.DocsPerSec = float64(res.Docs) / res.Took.Seconds()
	return res, nil
}

func bulk(ctx context.Context, client *http.Client, osURL string, body []byte) error {
	resp, err := do(ctx, client, http.MethodPost, osURL+"/_bulk", body)
	if err != nil {
		return err
	}
	var out struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int             `json:"status"`
			Error  json.RawMessage `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(resp, &out); err != nil {
		return fmt.Errorf("decoding a bulk response: %w", err)
	}
	if out.Errors {
		for _, it := range out.Items {
			for _, r := range it {
				if r.Error != nil {
					return fmt.Errorf("bulk item refused (%d): %s", r.Status, r.Error)
				}
			}
		}
		return errors.New("bulk reported errors")
	}
	return nil
}

func do(ctx context.Context, client *http.Client, method, u string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return b, fmt.Errorf("%s %s: %d %s", method, u, resp.StatusCode, truncate(string(b), 300))
	}
	return b, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Drop deletes the ceiling's index.
func Drop(ctx context.Context, osURL, index string) {
	_, _ = do(ctx, http.DefaultClient, http.MethodDelete, osURL+"/"+url.PathEscape(index), nil)
}
