package opensearch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/faultproxy"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/mapping"
	"github.com/flusso/flusso/pkg/sink"
)

func TestEnsureCreatesIndex(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)

	st := ensure(t, s, ix)
	if st != (sink.State{Generation: 1}) {
		t.Fatalf("first Ensure = %+v, want generation 1 unseeded", st)
	}
	ha := s.hashAlias("users", ix.Hash)
	gen := generationName(ha, 1)
	if !strings.HasPrefix(ha, s.cfg.Prefix+"users_") || len(ha) != len(s.cfg.Prefix+"users_")+8 {
		t.Errorf("hash alias %q is not {prefix}users_{hash}", ha)
	}

	// The mapping as created equals the derived one.
	got := c.ok(http.MethodGet, "/"+gen+"/_mapping", nil)[gen].(map[string]any)["mappings"]
	want := roundTrip(t, mapping.For(ix.Schema, mapping.Options{AutoSubfields: true}))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mapping as created:\n%v\nwant\n%v", got, want)
	}
	settings := c.ok(http.MethodGet, "/"+gen+"/_settings", nil)[gen].(map[string]any)["settings"].(map[string]any)["index"].(map[string]any)
	for k, v := range map[string]string{"refresh_interval": "-1", "gc_deletes": "1h", "number_of_shards": "1", "number_of_replicas": "0"} {
		if settings[k] != v {
			t.Errorf("setting %s = %v, want %s", k, settings[k], v)
		}
	}
	analysis := settings["analysis"].(map[string]any)
	for _, name := range []string{"flusso_code", "flusso_text"} {
		if analysis["analyzer"].(map[string]any)[name] == nil {
			t.Errorf("analyzer %s missing", name)
		}
	}
	if analysis["normalizer"].(map[string]any)["flusso_lowercase"] == nil {
		t.Error("normalizer flusso_lowercase missing")
	}

	if got := c.aliasTargets(ha); !slices.Equal(got, []string{gen}) {
		t.Errorf("hash alias on %v, want %s", got, gen)
	}
	if got := c.aliasTargets(s.cfg.Prefix + "users"); !slices.Equal(got, []string{gen}) {
		t.Errorf("convenience alias on %v, want %s", got, gen)
	}
	meta := c.ok(http.MethodGet, "/"+s.metaIndex()+"/_doc/users", nil)["_source"].(map[string]any)
	if meta["hash"] != ix.Hash || meta["generation"] != 1.0 || meta["seeded"] != false || meta["next_generation"] != 0.0 {
		t.Errorf("meta document = %v", meta)
	}
	metaSettings := c.ok(http.MethodGet, "/"+s.metaIndex()+"/_settings", nil)[s.metaIndex()].(map[string]any)["settings"].(map[string]any)["index"].(map[string]any)
	if metaSettings["hidden"] != "true" {
		t.Errorf("%s is not hidden: %v", s.metaIndex(), metaSettings)
	}

	// A second Ensure changes nothing.
	if st := ensure(t, s, ix); st != (sink.State{Generation: 1}) {
		t.Errorf("second Ensure = %+v", st)
	}
	if err := s.MarkSeeded(ctxT(t), "users", 1); err != nil {
		t.Fatal(err)
	}
	settings = c.ok(http.MethodGet, "/"+gen+"/_settings", nil)[gen].(map[string]any)["settings"].(map[string]any)["index"].(map[string]any)
	if settings["refresh_interval"] != "1s" {
		t.Errorf("refresh_interval after seeding = %v, want the configured 1s", settings["refresh_interval"])
	}
	write(t, s, upsert("1", 1, `{"id":1}`))
	c.refresh(ha)
	if st := ensure(t, s, ix); st != (sink.State{Seeded: true, Generation: 1, Docs: 1}) {
		t.Errorf("Ensure after seeding = %+v", st)
	}
}

// roundTrip gives a value the shape OpenSearch echoes back: JSON numbers
// as float64, and booleans of a mapping as the strings it stores them as.
func roundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAnalyzers(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ensure(t, s, ix)
	gen := generationName(s.hashAlias("users", ix.Hash), 1)

	tests := []struct {
		with, text string
		want       []string
	}{
		{`"analyzer":"flusso_code"`, "C-01234", []string{"c-01234", "c", "c01234", "01234"}},
		{`"analyzer":"flusso_code"`, "Crème-Brûlée", []string{"creme-brulee", "creme", "cremebrulee", "brulee"}},
		{`"analyzer":"flusso_text"`, "Crème Brûlée C-01234", []string{"creme", "brulee", "c", "01234"}},
		{`"normalizer":"flusso_lowercase"`, "Crème Brûlée C-01234", []string{"creme brulee c-01234"}},
	}
	for _, tt := range tests {
		t.Run(tt.with+" "+tt.text, func(t *testing.T) {
			var body map[string]any
			if err := json.Unmarshal([]byte(`{`+tt.with+`,"text":"`+tt.text+`"}`), &body); err != nil {
				t.Fatal(err)
			}
			out := c.ok(http.MethodPost, "/"+gen+"/_analyze", body)
			var got []string
			for _, tok := range out["tokens"].([]any) {
				got = append(got, tok.(map[string]any)["token"].(string))
			}
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("tokens %v, want %v", got, want)
			}
		})
	}
}

func TestSubfieldQueries(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ensure(t, s, ix)
	write(t, s,
		upsert("1", 1, `{"id":1,"name":"Crème Brûlée","code":"AB-12","sku":"C-01234"}`),
		upsert("2", 1, `{"id":2,"name":"crème brûlée deluxe","code":"ab-13","sku":"D-9"}`),
	)
	ha := s.hashAlias("users", ix.Hash)
	c.refresh(ha)

	tests := []struct {
		name  string
		query string
		want  []string
	}{
		{"text: full text, folded", `{"match":{"name":"creme"}}`, []string{"1", "2"}},
		{"text: all terms, case/punctuation-insensitive", `{"match":{"name":{"query":"CRÈME deluxe","operator":"and"}}}`, []string{"2"}},
		{"text .keyword: exact", `{"term":{"name.keyword":"Crème Brûlée"}}`, []string{"1"}},
		{"text .keyword: exact is case-sensitive", `{"term":{"name.keyword":"crème brûlée"}}`, nil},
		{"text .keyword_lowercase: case/accent-insensitive exact", `{"term":{"name.keyword_lowercase":"creme brulee"}}`, []string{"1"}},
		{"keyword: exact", `{"term":{"code":"AB-12"}}`, []string{"1"}},
		{"keyword: exact is case-sensitive", `{"term":{"code":"ab-12"}}`, nil},
		{"keyword .text: full text joined", `{"match":{"code.text":"ab12"}}`, []string{"1"}},
		{"keyword .text: full text part", `{"match":{"code.text":"13"}}`, []string{"2"}},
		{"keyword .keyword_lowercase", `{"term":{"code.keyword_lowercase":"ab-12"}}`, []string{"1"}},
		{"identifier: joined", `{"match":{"sku":"c01234"}}`, []string{"1"}},
		{"identifier: with punctuation", `{"match":{"sku":"c-01234"}}`, []string{"1"}},
		{"identifier: digits", `{"match":{"sku":"01234"}}`, []string{"1"}},
		{"identifier: no fuzzy match", `{"match":{"sku":"c1234"}}`, nil},
		{"identifier .keyword", `{"term":{"sku.keyword":"C-01234"}}`, []string{"1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q map[string]any
			if err := json.Unmarshal([]byte(tt.query), &q); err != nil {
				t.Fatal(err)
			}
			got := c.ids(ha, map[string]any{"query": q, "sort": []any{"_doc"}})
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s matched %v, want %v", tt.query, got, tt.want)
			}
		})
	}

	// Sorting on the lowercase subfield ignores case.
	got := c.ids(ha, map[string]any{"sort": []any{map[string]any{"code.keyword_lowercase": "desc"}}})
	if !slices.Equal(got, []string{"2", "1"}) {
		t.Errorf("sort by code.keyword_lowercase desc = %v", got)
	}
}

func TestEnumSortOrder(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ensure(t, s, ix)
	write(t, s,
		upsert("a", 1, `{"priority":"high"}`),
		upsert("b", 1, `{"priority":"unknown"}`),
		upsert("c", 1, `{"priority":"low"}`),
		upsert("d", 1, `{"priority":"medium"}`),
		upsert("e", 1, `{"priority":"extra"}`),
	)
	ha := s.hashAlias("users", ix.Hash)
	c.refresh(ha)

	asc := c.ids(ha, map[string]any{"sort": []any{map[string]any{"priority.sort": "asc"}}})
	if want := []string{"c", "d", "a", "e", "b"}; !slices.Equal(asc, want) {
		t.Errorf("sort by priority.sort = %v, want %v (variants in order, then the rest alphabetically)", asc, want)
	}
	// Filtering still targets the value.
	if got := c.ids(ha, map[string]any{"query": map[string]any{"term": map[string]any{"priority": "medium"}}}); !slices.Equal(got, []string{"d"}) {
		t.Errorf("term priority=medium matched %v", got)
	}
}

func TestChunking(t *testing.T) {
	t.Parallel()
	doc := func(i int) sink.Doc {
		return upsert(fmt.Sprint(i), 1, fmt.Sprintf(`{"id":%d,"name":"%s"}`, i, strings.Repeat("x", 100)))
	}
	tests := []struct {
		name      string
		batch     int
		maxBytes  int
		docs      []sink.Doc
		wantItems []int // items per bulk request
	}{
		{"by count", 3, 1 << 20, []sink.Doc{doc(1), doc(2), doc(3), doc(4), doc(5), doc(6), doc(7)}, []int{3, 3, 1}},
		// Each item is ~230 bytes: two fit in 500.
		{"by bytes", 100, 500, []sink.Doc{doc(1), doc(2), doc(3), doc(4), doc(5)}, []int{2, 2, 1}},
		{"a document over max_bytes goes alone", 100, 500, []sink.Doc{doc(1),
			upsert("big", 1, fmt.Sprintf(`{"name":"%s"}`, strings.Repeat("y", 2000))), doc(2)}, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProxy(t)
			s := newSink(t, Config{URL: p.URL, BatchSize: tt.batch, MaxBytes: tt.maxBytes})
			ix := parseSchema(t, usersYAML)
			ensure(t, s, ix)
			write(t, s, tt.docs...)

			var items []int
			for _, body := range p.bulkBodies() {
				lines := strings.Count(string(body), "\n")
				items = append(items, lines/2)
				if len(body) > tt.maxBytes && lines != 2 {
					t.Errorf("a bulk request of %d bytes holds %d items, over max_bytes %d", len(body), lines/2, tt.maxBytes)
				}
			}
			if !slices.Equal(items, tt.wantItems) {
				t.Errorf("items per bulk request %v, want %v", items, tt.wantItems)
			}
			c := rawCluster(t)
			c.refresh(s.hashAlias("users", ix.Hash))
			if n, err := s.Count(ctxT(t), "users"); err != nil || n != int64(len(tt.docs)) {
				t.Errorf("count = %d, %v; want %d", n, err, len(tt.docs))
			}
		})
	}
}

func TestExternalVersions(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ensure(t, s, ix)
	ha := s.hashAlias("users", ix.Hash)

	steps := []struct {
		doc  sink.Doc
		want map[string]any // source after the step, nil: absent
	}{
		{upsert("1", 5, `{"name":"v5"}`), map[string]any{"name": "v5"}},
		{upsert("1", 3, `{"name":"v3"}`), map[string]any{"name": "v5"}},    // older: ignored
		{upsert("1", 5, `{"name":"again"}`), map[string]any{"name": "v5"}}, // equal: already applied
		{del("1", 4), map[string]any{"name": "v5"}},                        // older delete: ignored
		{upsert("1", 7, `{"name":"v7"}`), map[string]any{"name": "v7"}},    // newer: applied
		{del("1", 8), nil},                                                  // newer delete: applied
		{upsert("1", 6, `{"name":"late"}`), nil},                            // late older upsert: no resurrection
		{del("2", 1), nil},                                                  // delete of a missing document: fine
		{upsert("2", 1, `{"name":"resurrected?"}`), nil},                    // not newer than the tombstone
		{upsert("1", 9, `{"name":"v9"}`), map[string]any{"name": "v9"}},     // newer than the delete
		{upsert("3", 0, `{"name":"zero"}`), map[string]any{"name": "zero"}}, // version 0 is valid
	}
	for i, st := range steps {
		write(t, s, st.doc)
		if got := c.source(ha, st.doc.ID); !reflect.DeepEqual(got, st.want) {
			t.Fatalf("step %d (%s v%d): source %v, want %v", i, st.doc.ID, st.doc.Version, got, st.want)
		}
	}
}

func TestRejectionKeepsTheRestOfTheBatch(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ensure(t, s, ix)
	docs := []sink.Doc{
		upsert("1", 1, `{"name":"ok"}`),
		upsert("2", 1, `{"age":"not a number"}`),
		upsert("3", 1, `{"unmapped":true}`),
		upsert("4", 1, `{"name":"ok too"}`),
		upsert("5", 1, `{"name":`),
	}
	rej, err := s.Write(ctxT(t), docs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rej {
		got = append(got, r.Doc.ID)
	}
	if !slices.Equal(got, []string{"2", "3", "5"}) {
		t.Fatalf("rejected %v, want 2, 3 and 5: %+v", got, rej)
	}
	for _, r := range rej[:2] {
		if !strings.Contains(r.Reason, "exception") {
			t.Errorf("reason of %s does not say what OpenSearch refused: %q", r.Doc.ID, r.Reason)
		}
	}
	ha := s.hashAlias("users", ix.Hash)
	for _, id := range []string{"1", "4"} {
		if c.source(ha, id) == nil {
			t.Errorf("document %s of the same batch did not land", id)
		}
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	unavailable := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"type":"unavailable","reason":"injected"},"status":503}`))
	}
	t.Run("transient bulk failures are retried", func(t *testing.T) {
		p := newProxy(t)
		s := newSink(t, Config{URL: p.URL, MaxRetries: 3})
		ix := parseSchema(t, usersYAML)
		ensure(t, s, ix)
		var failed atomic.Int32
		p.set(func(p *proxy) {
			p.intercept = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
				if strings.HasSuffix(r.URL.Path, "/_bulk") && failed.Add(1) <= 2 {
					unavailable(w)
					return true
				}
				return false
			}
		})
		write(t, s, upsert("1", 1, `{"name":"x"}`))
		if failed.Load() != 3 {
			t.Errorf("%d bulk attempts, want 3", failed.Load())
		}
	})
	t.Run("an error after max_retries", func(t *testing.T) {
		p := faultproxy.New(t, testenv.OpenSearch(t))
		s := newSink(t, Config{URL: p.URL, MaxRetries: 2})
		ensure(t, s, parseSchema(t, usersYAML))
		p.Set(faultproxy.Fault{Status: http.StatusInternalServerError, Count: 10})
		_, err := s.Write(ctxT(t), []sink.Doc{upsert("1", 1, `{"name":"x"}`)})
		if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") {
			t.Errorf("Write = %v, want an error after 3 attempts", err)
		}
		if served := p.Counts().Faulted; served != 3 {
			t.Errorf("%d attempts, want 1 + max_retries = 3", served)
		}
	})
	t.Run("items refused with 429 are retried alone", func(t *testing.T) {
		p := newProxy(t)
		s := newSink(t, Config{URL: p.URL, MaxRetries: 3})
		ix := parseSchema(t, usersYAML)
		ensure(t, s, ix)
		var once sync.Once
		p.set(func(p *proxy) {
			p.rewrite = func(body []byte) []byte {
				once.Do(func() {
					var resp map[string]any
					if err := json.Unmarshal(body, &resp); err != nil {
						t.Error(err)
						return
					}
					it := resp["items"].([]any)[0].(map[string]any)["index"].(map[string]any)
					it["status"] = 429
					it["error"] = map[string]any{"type": "es_rejected_execution_exception", "reason": "injected"}
					body, _ = json.Marshal(resp)
				})
				return body
			}
		})
		write(t, s, upsert("1", 1, `{"name":"x"}`), upsert("2", 1, `{"name":"y"}`))
		bulks := p.bulkBodies()
		if len(bulks) != 2 || strings.Count(string(bulks[1]), "\n") != 2 || !strings.Contains(string(bulks[1]), `"_id":"1"`) {
			t.Errorf("bulk requests %q, want the second to resend item 1 alone", bulks)
		}
	})
	t.Run("state answers within the timeout while the cluster is down", func(t *testing.T) {
		p := newProxy(t)
		s := newSink(t, Config{URL: p.URL, Timeout: time.Second})
		ensure(t, s, parseSchema(t, usersYAML))
		p.Close()
		done := make(chan error, 1)
		go func() {
			_, err := s.State(ctxT(t), "users")
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("State = %v, want the timeout's end", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("State waits out the outage like a write")
		}
	})
	t.Run("an unreachable cluster is waited for until the context ends", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		stage := health.NewRegistry().Stage("sink.down")
		s, err := New(Config{Name: "down", URL: "http://" + addr, MaxRetries: 0, Prefix: "x_", Health: stage})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx, cancel := context.WithTimeout(ctxT(t), 2*time.Second)
		defer cancel()
		_, err = s.Ensure(ctx, parseSchema(t, usersYAML))
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("Ensure = %v, want the context's end with the last error", err)
		}
		if r := stage.Report(); r.State != health.Degraded || r.Failures < 2 || !strings.Contains(r.LastError, "connection refused") {
			t.Errorf("the sink showed %+v, want degraded after retries, last error connection refused", r)
		}
	})
}

func TestReindex(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ctx := ctxT(t)
	ensure(t, s, ix)
	ha := s.hashAlias("users", ix.Hash)
	gen1, gen2 := generationName(ha, 1), generationName(ha, 2)
	convenience := s.cfg.Prefix + "users"

	write(t, s, upsert("1", 1, `{"name":"one"}`), upsert("2", 1, `{"name":"two"}`))
	if err := s.MarkSeeded(ctx, "users", 1); err != nil {
		t.Fatal(err)
	}

	// Another writer process, already running when the reindex begins.
	other := newSink(t, Config{Prefix: s.cfg.Prefix, Name: "other"})
	ensure(t, other, ix)

	if _, err := other.BeginReindex(ctx, "nope"); err == nil {
		t.Error("BeginReindex of an index not ensured should fail")
	}
	next, err := s.BeginReindex(ctx, "users")
	if err != nil || next != 2 {
		t.Fatalf("BeginReindex = %d, %v; want 2", next, err)
	}
	if again, err := s.BeginReindex(ctx, "users"); err != nil || again != 2 {
		t.Errorf("BeginReindex while one is under way = %d, %v; want the same 2", again, err)
	}
	if st := ensure(t, other, ix); st.Generation != 1 || st.Next != 2 || !st.Seeded {
		t.Errorf("Ensure during the reindex = %+v", st)
	}

	// Live writes reach both generations, from either process; backfill
	// writes to generation 2 only reach it.
	write(t, other, upsert("3", 1, `{"name":"three"}`))
	write(t, s, upsert("1", 2, `{"name":"one v2"}`), del("2", 2))
	backfill := upsert("4", 1, `{"name":"four"}`)
	backfill.Generation = 2
	write(t, s, backfill)
	c.refresh(gen1)
	c.refresh(gen2)
	for _, tc := range []struct {
		index string
		ids   []string
	}{{gen1, []string{"1", "3"}}, {gen2, []string{"1", "3", "4"}}} {
		got := c.ids(tc.index, map[string]any{"sort": []any{"_doc"}})
		slices.Sort(got)
		if !slices.Equal(got, tc.ids) {
			t.Errorf("%s holds %v, want %v", tc.index, got, tc.ids)
		}
	}
	if got := c.source(gen2, "1")["name"]; got != "one v2" {
		t.Errorf("generation 2 has %v for 1", got)
	}

	// Readers keep finding the index through both aliases while it swaps.
	stop := make(chan struct{})
	var misses atomic.Int32
	var searches atomic.Int32
	var wg sync.WaitGroup
	for _, alias := range []string{ha, convenience} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				status, _ := c.do(http.MethodPost, "/"+alias+"/_search", map[string]any{"size": 0})
				searches.Add(1)
				if status != http.StatusOK {
					misses.Add(1)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := other.MarkSeeded(ctx, "users", 2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if misses.Load() > 0 {
		t.Errorf("%d of %d searches during the swap failed", misses.Load(), searches.Load())
	}

	for _, alias := range []string{ha, convenience} {
		if got := c.aliasTargets(alias); !slices.Equal(got, []string{gen2}) {
			t.Errorf("%s on %v after MarkSeeded, want %s", alias, got, gen2)
		}
	}
	if c.exists(gen1) {
		t.Errorf("%s still exists after generation 2 was seeded", gen1)
	}
	if st := ensure(t, s, ix); !st.Seeded || st.Generation != 2 || st.Next != 0 || st.Docs != 3 {
		t.Errorf("Ensure after the reindex = %+v", st)
	}
	// The first process learns the swap from the meta document too.
	write(t, s, upsert("5", 1, `{"name":"five"}`))
	c.refresh(ha)
	if c.source(gen2, "5") == nil || c.exists(gen1) {
		t.Error("a write after the swap did not land in generation 2 alone")
	}
	stale := upsert("6", 1, `{"name":"stale"}`)
	stale.Generation = 1
	write(t, s, stale)
	if c.exists(gen1) || c.source(ha, "6") != nil {
		t.Error("a write to the retired generation was not dropped")
	}
}

func TestReindexRefusedBeforeSeeding(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	ensure(t, s, parseSchema(t, usersYAML))
	if _, err := s.BeginReindex(ctxT(t), "users"); err == nil || !strings.Contains(err.Error(), "not seeded") {
		t.Errorf("BeginReindex before seeding = %v", err)
	}
}

func TestSchemaChange(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ctx := ctxT(t)
	v1 := parseSchema(t, usersYAML)
	v2 := parseSchema(t, usersYAML+"  - keyword: country\n")
	if v1.Hash == v2.Hash {
		t.Fatal("the schemas have the same hash")
	}
	old := generationName(s.hashAlias("users", v1.Hash), 1)
	convenience := s.cfg.Prefix + "users"

	ensure(t, s, v1)
	write(t, s, upsert("1", 1, `{"name":"one"}`))
	if err := s.MarkSeeded(ctx, "users", 1); err != nil {
		t.Fatal(err)
	}

	// A new deployment with the changed schema.
	s2 := newSink(t, Config{Prefix: s.cfg.Prefix})
	if st := ensure(t, s2, v2); st != (sink.State{Generation: 1}) {
		t.Fatalf("Ensure of the new schema = %+v, want a fresh generation 1", st)
	}
	fresh := generationName(s2.hashAlias("users", v2.Hash), 1)
	if got := c.aliasTargets(convenience); !slices.Equal(got, []string{old}) {
		t.Errorf("convenience alias on %v while the new schema seeds, want the old %s", got, old)
	}
	write(t, s2, upsert("1", 2, `{"name":"one","country":"it"}`))
	if err := s2.MarkSeeded(ctx, "users", 1); err != nil {
		t.Fatal(err)
	}
	if got := c.aliasTargets(convenience); !slices.Equal(got, []string{fresh}) {
		t.Errorf("convenience alias on %v after seeding, want %s", got, fresh)
	}
	if !c.exists(old) {
		t.Errorf("the previous schema's index %s was deleted; it is left to the operator", old)
	}
	// The old process can no longer change the index's lifecycle.
	if _, err := s.BeginReindex(ctx, "users"); err == nil {
		t.Error("BeginReindex by the old deployment should fail")
	}

	// Going back to the first schema starts over: its index missed changes.
	s3 := newSink(t, Config{Prefix: s.cfg.Prefix})
	if st := ensure(t, s3, v1); st != (sink.State{Generation: 2}) {
		t.Errorf("Ensure back on the first schema = %+v, want a fresh generation 2", st)
	}
}

func TestEnsureRecreatesADeletedGeneration(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ensure(t, s, ix)
	if err := s.MarkSeeded(ctxT(t), "users", 1); err != nil {
		t.Fatal(err)
	}
	gen := generationName(s.hashAlias("users", ix.Hash), 1)
	c.ok(http.MethodDelete, "/"+gen, nil)
	if st := ensure(t, s, ix); st != (sink.State{Generation: 1}) {
		t.Errorf("Ensure after the generation was deleted = %+v, want it unseeded", st)
	}
	if !c.exists(gen) {
		t.Errorf("%s was not recreated", gen)
	}
}

func TestPurge(t *testing.T) {
	t.Parallel()
	const v = 100 // the truncate's version
	// many is n upserts with ids prefix0… at version.
	many := func(prefix string, n int, version uint64) []sink.Doc {
		docs := make([]sink.Doc, n)
		for i := range docs {
			docs[i] = upsert(fmt.Sprint(prefix, i), version, `{}`)
		}
		return docs
	}
	ids := func(docs ...[]sink.Doc) []string {
		var out []string
		for _, d := range slices.Concat(docs...) {
			out = append(out, d.ID)
		}
		return out
	}
	backfill := func(d sink.Doc) sink.Doc { d.Generation = 2; return d }

	tests := []struct {
		name    string
		cfg     Config
		reindex bool                // purge while generation 2 is built
		before  []sink.Doc          // written before the purge
		during  []sink.Doc          // written by another process while it runs
		want    map[uint32][]string // ids left in each live generation
	}{{
		name:   "older documents go, equal and newer ones stay",
		before: []sink.Doc{upsert("older", v-1, `{}`), upsert("equal", v, `{}`), upsert("newer", v+1, `{}`)},
		want:   map[uint32][]string{1: {"equal", "newer"}},
	}, {
		name:    "both generations of a reindex",
		reindex: true,
		before: []sink.Doc{upsert("older", 5, `{}`), upsert("newer", v+1, `{}`),
			backfill(upsert("backfilled", 5, `{}`)), backfill(upsert("backfilled newer", v, `{}`))},
		want: map[uint32][]string{1: {"newer"}, 2: {"backfilled newer", "newer"}},
	}, {
		name:   "more documents than a page, on several shards",
		cfg:    Config{BatchSize: 3, Shards: 3},
		before: slices.Concat(many("older", 20, 5), many("newer", 5, v+1)),
		want:   map[uint32][]string{1: ids(many("newer", 5, v+1))},
	}, {
		name:   "documents another process writes meanwhile stay",
		cfg:    Config{BatchSize: 2},
		before: many("older", 30, 5),
		during: slices.Concat(many("older", 10, v+1), many("new", 10, v+1)),
		want:   map[uint32][]string{1: ids(many("older", 10, v+1), many("new", 10, v+1))},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, tt.cfg)
			c := rawCluster(t)
			ctx := ctxT(t)
			ix := parseSchema(t, usersYAML)
			ensure(t, s, ix)
			if tt.reindex {
				if err := s.MarkSeeded(ctx, "users", 1); err != nil {
					t.Fatal(err)
				}
				if _, err := s.BeginReindex(ctx, "users"); err != nil {
					t.Fatal(err)
				}
			}
			write(t, s, tt.before...)

			other := newSink(t, Config{Prefix: s.cfg.Prefix, Name: "other"})
			ensure(t, other, ix)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for _, d := range tt.during {
					if rej, err := other.Write(ctx, []sink.Doc{d}); err != nil || len(rej) > 0 {
						t.Errorf("write %s during the purge: %v %v", d.ID, rej, err)
					}
				}
			}()
			if err := s.Purge(ctx, "users", v); err != nil {
				t.Fatal(err)
			}
			<-done
			ha := s.hashAlias("users", ix.Hash)
			check := func(when string) {
				t.Helper()
				for gen, want := range tt.want {
					index := generationName(ha, gen)
					c.refresh(index)
					got := c.ids(index, map[string]any{"size": 1000})
					slices.Sort(got)
					slices.Sort(want)
					if !slices.Equal(got, want) {
						t.Errorf("%s %s holds %v, want %v", when, index, got, want)
					}
				}
			}
			check("after the purge")

			// Late upserts older than the truncate find its tombstones.
			var late []sink.Doc
			for _, d := range tt.before {
				if d.Version < v {
					d.Version = v - 1
					late = append(late, d)
				}
			}
			write(t, s, late...)
			check("after late older upserts")
		})
	}
}

// A shard that fails to answer must not pass for an empty one, or its
// documents would survive the purge.
func TestPurgeRetriesAMissingShard(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	s := newSink(t, Config{URL: p.URL})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ensure(t, s, ix)
	write(t, s, upsert("1", 1, `{}`), upsert("2", 1, `{}`))
	var failed atomic.Int32
	p.set(func(p *proxy) {
		p.intercept = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			if !strings.HasSuffix(r.URL.Path, "/_search") || r.URL.Query().Get("preference") == "" || failed.Add(1) > 1 {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"timed_out":false,"_shards":{"total":1,"successful":0,"skipped":0,"failed":1,`+
				`"failures":[{"shard":0,"reason":{"type":"no_shard_available_action_exception","reason":"injected"}}]},"hits":{"hits":[]}}`)
			return true
		}
	})
	if err := s.Purge(ctxT(t), "users", 2); err != nil {
		t.Fatal(err)
	}
	if failed.Load() < 2 {
		t.Fatalf("the failed search was not retried")
	}
	ha := s.hashAlias("users", ix.Hash)
	c.refresh(ha)
	if got := c.ids(ha, map[string]any{}); len(got) != 0 {
		t.Errorf("%s still holds %v after the purge", ha, got)
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ensure(t, s, ix)
	write(t, s, upsert("1", 1, `{"name":"x"}`))
	ha := s.hashAlias("users", ix.Hash)
	// Auto-refresh is off until seeding.
	if got := c.ids(ha, map[string]any{}); len(got) != 0 {
		t.Fatalf("searchable before Refresh: %v", got)
	}
	if err := s.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := c.ids(ha, map[string]any{}); !slices.Equal(got, []string{"1"}) {
		t.Errorf("after Refresh: %v", got)
	}
}

func TestPrefixesAreIsolated(t *testing.T) {
	t.Parallel()
	a := newSink(t, Config{})
	b := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ensure(t, a, ix)
	ensure(t, b, ix)
	if err := a.MarkSeeded(ctxT(t), "users", 1); err != nil {
		t.Fatal(err)
	}
	write(t, a, upsert("1", 1, `{"name":"in a"}`))
	if err := a.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.Refresh(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := c.ids(b.cfg.Prefix+"users", map[string]any{}); len(got) != 0 {
		t.Errorf("prefix %s sees %v written under %s", b.cfg.Prefix, got, a.cfg.Prefix)
	}
	if st := ensure(t, b, ix); st.Seeded {
		t.Errorf("prefix %s is seeded because %s is", b.cfg.Prefix, a.cfg.Prefix)
	}
	if got := c.ids(a.cfg.Prefix+"users", map[string]any{}); !slices.Equal(got, []string{"1"}) {
		t.Errorf("prefix %s sees %v", a.cfg.Prefix, got)
	}
}

func TestConcurrentEnsure(t *testing.T) {
	t.Parallel()
	first := newSink(t, Config{})
	ix := parseSchema(t, usersYAML)
	sinks := []*Sink{first}
	for range 4 {
		sinks = append(sinks, newSink(t, Config{Prefix: first.cfg.Prefix}))
	}
	states := make([]sink.State, len(sinks))
	errs := make([]error, len(sinks))
	var wg sync.WaitGroup
	for i, s := range sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			states[i], errs[i] = s.Ensure(ctxT(t), ix)
		}()
	}
	wg.Wait()
	// Which racer wins decides the generation's number (a loser's index
	// is removed); all must agree on it and it must be the only one.
	want := sink.State{Generation: states[0].Generation}
	for i := range sinks {
		if errs[i] != nil || states[i] != want || want.Generation == 0 {
			t.Errorf("Ensure %d = %+v, %v; want %+v like the others", i, states[i], errs[i], want)
		}
	}
	if gens, err := first.generations(ctxT(t), first.hashAlias("users", ix.Hash)); err != nil || !slices.Equal(gens, []uint32{want.Generation}) {
		t.Errorf("generations %v, %v; want only %d", gens, err, want.Generation)
	}
}

func TestWriteUnknownIndex(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	if _, err := s.Write(ctxT(t), []sink.Doc{upsert("1", 1, `{}`)}); err == nil {
		t.Error("Write to an index that was never ensured should fail")
	}
}

func TestOpenSearchRestart(t *testing.T) {
	patient := newSink(t, Config{MaxRetries: 40})
	// max_retries does not bound waiting out an outage.
	hasty := newSink(t, Config{Prefix: patient.cfg.Prefix, MaxRetries: 0})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ensure(t, patient, ix)
	ensure(t, hasty, ix)
	if err := patient.MarkSeeded(ctxT(t), "users", 1); err != nil {
		t.Fatal(err)
	}
	write(t, patient, upsert("before", 1, `{"name":"acknowledged before the crash"}`))

	// While the node is down: writes land once it is back, whatever
	// their max_retries.
	var hastyErr, patientErr error
	done, restarted := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		// The restart may first wait for other tests to let go of the
		// node: watch until it is down or the restart is over.
		for ; ; time.Sleep(20 * time.Millisecond) {
			if _, err := http.Get(c.base); err != nil {
				break
			}
			select {
			case <-restarted:
				hastyErr, patientErr = nil, fmt.Errorf("OpenSearch did not go down")
				return
			default:
			}
		}
		_, hastyErr = hasty.Write(ctxT(t), []sink.Doc{upsert("hasty", 1, `{}`)})
		_, patientErr = patient.Write(ctxT(t), []sink.Doc{upsert("during", 1, `{"name":"written while down"}`)})
	}()
	testenv.RestartService(t, "opensearch", true)
	close(restarted)
	<-done
	if hastyErr != nil {
		t.Errorf("a write with max_retries 0 across the restart failed: %v", hastyErr)
	}
	if patientErr != nil {
		t.Errorf("a write retried across the restart failed: %v", patientErr)
	}
	ha := patient.hashAlias("users", ix.Hash)
	c.refresh(ha)
	for _, id := range []string{"before", "during", "hasty"} {
		if c.source(ha, id) == nil {
			t.Errorf("document %q is missing after the restart", id)
		}
	}
}

func TestICUAnalysis(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{TextAnalysis: mapping.ICU})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	if !slices.ContainsFunc(testenv.OpenSearchPlugins(t), func(p string) bool { return strings.Contains(strings.ToLower(p), "icu") }) {
		// Index creation fails, and says why.
		if _, err := s.Ensure(ctxT(t), ix); err == nil || !strings.Contains(err.Error(), "icu") {
			t.Errorf("Ensure with icu analysis on a node without the plugin = %v, want OpenSearch's refusal", err)
		}
		t.Skip("testenv: " + testenv.ICUUnavailableReason)
	}
	ensure(t, s, ix)
	gen := generationName(s.hashAlias("users", ix.Hash), 1)
	out := c.ok(http.MethodPost, "/"+gen+"/_analyze", map[string]any{"analyzer": "flusso_code", "text": "C-01234"})
	var got []string
	for _, tok := range out["tokens"].([]any) {
		got = append(got, tok.(map[string]any)["token"].(string))
	}
	slices.Sort(got)
	if want := []string{"01234", "c", "c-01234", "c01234"}; !slices.Equal(got, want) {
		t.Errorf("icu flusso_code tokens %v, want %v", got, want)
	}
}

func TestConvenienceAliasIsBestEffort(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	// A real index already has the convenience alias's name.
	c.ok(http.MethodPut, "/"+s.cfg.Prefix+"users", nil)
	ensure(t, s, ix)
	if err := s.MarkSeeded(ctxT(t), "users", 1); err != nil {
		t.Fatalf("MarkSeeded failed over the convenience alias: %v", err)
	}
	ha := s.hashAlias("users", ix.Hash)
	if got := c.aliasTargets(ha); !slices.Equal(got, []string{generationName(ha, 1)}) {
		t.Errorf("hash alias on %v", got)
	}
	write(t, s, upsert("1", 1, `{}`))
}

func TestPipeline(t *testing.T) {
	t.Parallel()
	c := rawCluster(t)
	s := newSink(t, Config{})
	pipeline := s.cfg.Prefix + "stamp"
	c.ok(http.MethodPut, "/_ingest/pipeline/"+pipeline, map[string]any{
		"processors": []any{map[string]any{"set": map[string]any{"field": "code", "value": "stamped"}}},
	})
	s = newSink(t, Config{Prefix: s.cfg.Prefix, Pipeline: pipeline})
	ix := parseSchema(t, usersYAML)
	ensure(t, s, ix)
	write(t, s, upsert("1", 1, `{"name":"x"}`))
	if got := c.source(s.hashAlias("users", ix.Hash), "1")["code"]; got != "stamped" {
		t.Errorf("code = %v, want the pipeline's value", got)
	}
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	p := newProxy(t)
	var bad atomic.Int32
	p.set(func(p *proxy) {
		p.intercept = func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			if user, pass, ok := r.BasicAuth(); !ok || user != "flusso" || pass != "s3cret" {
				bad.Add(1)
				http.Error(w, `{"error":{"type":"security_exception","reason":"no credentials"}}`, http.StatusUnauthorized)
				return true
			}
			return false
		}
	})
	s := newSink(t, Config{URL: p.URL, Username: "flusso", Password: "s3cret"})
	ensure(t, s, parseSchema(t, usersYAML))
	write(t, s, upsert("1", 1, `{}`))
	if bad.Load() > 0 {
		t.Errorf("%d requests without the credentials", bad.Load())
	}

	anonymous := newSink(t, Config{URL: p.URL})
	if _, err := anonymous.Ensure(ctxT(t), parseSchema(t, usersYAML)); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Ensure without credentials = %v, want the 401", err)
	}
}

// TestDeletesOutliveARecovery: OpenSearch forgets deletes when a shard is
// recovered (a restart, here a close and open of the index); an older
// upsert still in flight then must not bring a deleted document back.
func TestDeletesOutliveARecovery(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	c := rawCluster(t)
	ix := parseSchema(t, usersYAML)
	ensure(t, s, ix)
	ha := s.hashAlias("users", ix.Hash)
	recover := func() {
		concrete := generationName(ha, 1)
		c.ok(http.MethodPost, "/"+concrete+"/_close", nil)
		c.ok(http.MethodPost, "/"+concrete+"/_open?wait_for_active_shards=1", nil)
	}
	purge := func(version uint64) {
		if err := s.Purge(ctxT(t), "users", version); err != nil {
			t.Fatal(err)
		}
	}

	write(t, s, upsert("deleted", 5, `{"name":"v5"}`), upsert("recreated", 5, `{"name":"v5"}`), upsert("truncated", 5, `{}`))
	write(t, s, del("deleted", 8), del("recreated", 8), del("never", 8))
	recover()
	steps := []struct {
		doc  sink.Doc
		want map[string]any
	}{
		{upsert("deleted", 6, `{"name":"late"}`), nil},                          // older than its delete: stays deleted
		{upsert("never", 7, `{"name":"late"}`), nil},                            // deleted before it existed
		{upsert("recreated", 9, `{"name":"v9"}`), map[string]any{"name": "v9"}}, // newer than its delete
		{upsert("new", 1, `{"name":"v1"}`), map[string]any{"name": "v1"}},       // never deleted
	}
	for i, st := range steps {
		write(t, s, st.doc)
		if got := c.source(ha, st.doc.ID); !reflect.DeepEqual(got, st.want) {
			t.Fatalf("step %d (%s v%d): source %v, want %v", i, st.doc.ID, st.doc.Version, got, st.want)
		}
	}

	purge(100)
	recover()
	write(t, s, upsert("truncated", 50, `{}`), upsert("after truncate", 101, `{}`))
	if got := c.source(ha, "truncated"); got != nil {
		t.Errorf("a document older than the truncate came back: %v", got)
	}
	if got := c.source(ha, "after truncate"); got == nil {
		t.Error("a document newer than the truncate is missing")
	}
}
