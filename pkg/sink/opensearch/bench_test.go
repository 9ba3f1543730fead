package opensearch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/mapping"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sink"
)

// BenchmarkWriteVsRawBulk writes the same pre-built documents through the
// sink and through a minimal direct bulk loop (one request of 1,000
// documents at a time, same mapping, same external versions) into the same
// OpenSearch, and reports both rates and their ratio (target: the sink at
// 90% of the loop or better). Run it with -benchtime=1x; the figures are
// per run, not per op.
func BenchmarkWriteVsRawBulk(b *testing.B) {
	const n = 20000
	base := testenv.OpenSearch(b)
	prefix := testenv.IndexPrefix(b)
	ix, err := schema.Parse("users.schema.yml", []byte(usersYAML))
	if err != nil {
		b.Fatal(err)
	}
	target := flow.Index{Name: "users", Schema: ix, Hash: schema.Hash(ix)}
	docs := make([]sink.Doc, n)
	for i := range docs {
		body := fmt.Sprintf(`{"id":%d,"name":"Ada Lovelace number %d of the analytical engine society","code":"C-%05d","sku":"SKU-%d-X","priority":"medium","age":%d}`, i, i, i, i, i%90)
		docs[i] = sink.Doc{Index: "users", ID: fmt.Sprint(i), Op: sink.Upsert, Body: json.RawMessage(body), Version: 1}
	}
	ctx := context.Background()
	for range b.N {
		s, err := New(Config{Name: "primary", URL: base, Prefix: prefix, Replicas: 0, MaxRetries: 3, RefreshInterval: "1s", AutoSubfields: true})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Ensure(ctx, target); err != nil {
			b.Fatal(err)
		}
		if err := s.MarkSeeded(ctx, "users", 1); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := 0; i < n; i += 2000 {
			if rej, err := s.Write(ctx, docs[i:min(i+2000, n)]); err != nil || len(rej) > 0 {
				b.Fatalf("sink write: %v %v", err, rej)
			}
		}
		sinkRate := n / time.Since(start).Seconds()

		raw := prefix + "raw"
		opts := mapping.Options{TextAnalysis: mapping.Builtin, AutoSubfields: true}
		create, _ := json.Marshal(map[string]any{"settings": mapping.Settings(ix, opts, 1, 0), "mappings": mapping.For(ix, opts)})
		if err := call(ctx, http.MethodPut, base+"/"+raw, create); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		for i := 0; i < n; i += 1000 {
			var body bytes.Buffer
			for _, d := range docs[i:min(i+1000, n)] {
				fmt.Fprintf(&body, `{"index":{"_index":%q,"_id":%q,"version":%d,"version_type":"external"}}`+"\n%s\n", raw, d.ID, d.Version, d.Body)
			}
			if err := call(ctx, http.MethodPost, base+"/_bulk", body.Bytes()); err != nil {
				b.Fatal(err)
			}
		}
		rawRate := n / time.Since(start).Seconds()
		b.ReportMetric(sinkRate, "sink-docs/s")
		b.ReportMetric(rawRate, "raw-docs/s")
		b.ReportMetric(100*sinkRate/rawRate, "%-of-raw")
		_ = call(ctx, http.MethodDelete, base+"/"+raw, nil)
		s.Close()
	}
}

// rawClient asks for uncompressed answers, as the sink does.
var rawClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

func call(ctx context.Context, method, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := rawClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return nil
}
