package opensearch

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flusso/flusso/pkg/retry"
)

func TestChunks(t *testing.T) {
	mk := func(sizes ...int) []op {
		ops := make([]op, len(sizes))
		for i, n := range sizes {
			ops[i] = op{doc: i, lines: make([]byte, n)}
		}
		return ops
	}
	lens := func(cs [][]op) []int {
		var out []int
		for _, c := range cs {
			out = append(out, len(c))
		}
		return out
	}
	tests := []struct {
		name     string
		sizes    []int
		n, bytes int
		want     []int
	}{
		{"empty", nil, 10, 100, nil},
		{"one chunk", []int{10, 10, 10}, 10, 100, []int{3}},
		{"by count", []int{1, 1, 1, 1, 1}, 2, 100, []int{2, 2, 1}},
		{"by bytes", []int{40, 40, 40, 40}, 10, 100, []int{2, 2}},
		{"exactly max bytes", []int{50, 50, 50}, 10, 100, []int{2, 1}},
		{"oversized alone", []int{10, 500, 10}, 10, 100, []int{1, 1, 1}},
		{"oversized first", []int{500, 10, 10}, 10, 100, []int{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lens(chunks(mk(tt.sizes...), tt.n, tt.bytes)); !slices.Equal(got, tt.want) {
				t.Errorf("chunks = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseGeneration(t *testing.T) {
	tests := []struct {
		index string
		gen   uint32
		ok    bool
	}{
		{"p_users_ab12cd34_1", 1, true},
		{"p_users_ab12cd34_17", 17, true},
		{"p_users_ab12cd34", 0, false},
		{"p_users_ab12cd34_", 0, false},
		{"p_users_ab12cd34_0", 0, false},
		{"p_users_ab12cd34_x1", 0, false},
		{"p_users_ab12cd34_1_2", 0, false},
		{"p_users_ab12cd34_+1", 0, false},
		{"p_users_ab12cd34_99999999999", 0, false},
	}
	for _, tt := range tests {
		gen, ok := parseGeneration("p_users_ab12cd34", tt.index)
		if gen != tt.gen || ok != tt.ok {
			t.Errorf("parseGeneration(%q) = %d, %v; want %d, %v", tt.index, gen, ok, tt.gen, tt.ok)
		}
	}
}

func TestAliasActions(t *testing.T) {
	tests := []struct {
		name    string
		holders []string
		want    string
	}{
		{"already there", []string{"i_2"}, `null`},
		{"free", nil, `[{"add":{"alias":"a","index":"i_2"}}]`},
		{"moves", []string{"i_1"}, `[{"remove":{"alias":"a","index":"i_1"}},{"add":{"alias":"a","index":"i_2"}}]`},
		{"narrows", []string{"i_1", "i_2"}, `[{"remove":{"alias":"a","index":"i_1"}},{"add":{"alias":"a","index":"i_2"}}]`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(aliasActions("a", "i_2", tt.holders))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		verb string
		item string
		want outcome
	}{
		{"created", "index", `{"status":201,"result":"created"}`, applied},
		{"version conflict", "index", `{"status":409,"error":{"type":"version_conflict_engine_exception"}}`, applied},
		{"delete not found", "delete", `{"status":404,"result":"not_found"}`, applied},
		{"delete without index", "delete", `{"status":404,"error":{"type":"index_not_found_exception"}}`, busyItem},
		{"alias missing", "index", `{"status":404,"error":{"type":"index_not_found_exception"}}`, busyItem},
		{"too many requests", "index", `{"status":429,"error":{"type":"es_rejected_execution_exception"}}`, busyItem},
		{"unavailable shards", "index", `{"status":503,"error":{"type":"unavailable_shards_exception"}}`, busyItem},
		{"internal error", "index", `{"status":500,"error":{"type":"null_pointer_exception"}}`, retryItem},
		{"mapping", "index", `{"status":400,"error":{"type":"mapper_parsing_exception"}}`, rejectItem},
		{"strict", "index", `{"status":400,"error":{"type":"strict_dynamic_mapping_exception"}}`, rejectItem},
	}
	for _, tt := range tests {
		var it item
		if err := json.Unmarshal([]byte(tt.item), &it); err != nil {
			t.Fatal(err)
		}
		if got := classify(tt.verb, it); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestTargets(t *testing.T) {
	s := &Sink{}
	o := owned{hashAlias: "p_users_h"}
	o.ix.Hash = "h"
	cur := target{name: "p_users_h", requireAlias: true}
	next := target{name: "p_users_h_3"}
	tests := []struct {
		name string
		meta metaDoc
		gen  uint32
		want []target
		live bool
	}{
		{"steady", metaDoc{Hash: "h", Generation: 2}, 0, []target{cur}, true},
		{"reindexing", metaDoc{Hash: "h", Generation: 2, Next: 3}, 0, []target{cur, next}, true},
		{"current only", metaDoc{Hash: "h", Generation: 2, Next: 3}, 2, []target{cur}, true},
		{"next only", metaDoc{Hash: "h", Generation: 2, Next: 3}, 3, []target{next}, true},
		{"retired", metaDoc{Hash: "h", Generation: 2}, 1, nil, false},
		{"no meta", metaDoc{}, 0, []target{cur}, true},
		{"another deployment's hash", metaDoc{Hash: "other", Generation: 5, Next: 6}, 0, []target{cur}, true},
	}
	for _, tt := range tests {
		got, why := s.targets(o, tt.meta, tt.gen)
		if !reflect.DeepEqual(got, tt.want) || (why == "") != tt.live {
			t.Errorf("%s: %v %q, want %v", tt.name, got, why, tt.want)
		}
	}
}

// TestRetryPolicy checks pause, the sink's retry policy: busy failures
// (429, 502-504, no answer) are retried without end after what Retry-After
// asks or a backoff, other retryable failures MaxRetries times, and the
// rest not at all.
func TestRetryPolicy(t *testing.T) {
	busy := func(after time.Duration) error {
		return fmt.Errorf("bulk request: %w", &retryable{err: errors.New("status 429"), busy: true, after: after})
	}
	limited := &retryable{err: errors.New("status 500")}
	permanent := errors.New("status 400")
	tests := []struct {
		name     string
		failures []error // the attempts of one operation, in order
		// the delay after the last one is within [min, max]
		min, max time.Duration
		stop     string // the last one ends the retries with an error saying this
		nodes    int    // of the cluster; 0 is one
	}{
		{"retry-after is honoured", []error{busy(2 * time.Second)}, 2 * time.Second, 2 * time.Second, "", 0},
		{"retry-after up to the cap", []error{busy(5 * time.Minute)}, retry.Cap, retry.Cap, "", 0},
		{"first backoff", []error{busy(0)}, 0, retry.Base, "", 0},
		{"backoff doubles", []error{busy(0), busy(0), busy(0), busy(0)}, 0, 8 * retry.Base, "", 0},
		{"busy past max_retries", slices.Repeat([]error{busy(0)}, 50), 0, retry.Cap, "", 0},
		{"limited within max_retries", []error{limited, limited}, 0, 2 * retry.Base, "", 0},
		{"limited past max_retries", []error{limited, limited, limited}, 0, 0, "gave up after 3 attempts: status 500", 0},
		{"busy does not use up max_retries", []error{limited, busy(0), busy(0), limited}, 0, 8 * retry.Base, "", 0},
		{"permanent", []error{permanent}, 0, 0, "status 400", 0},
		// With several nodes the first failures go at once to the others, one
		// each, counting against nothing.
		{"the other nodes at once", []error{limited, busy(0)}, 0, 0, "", 3},
		{"then backoff", []error{limited, busy(0), busy(0)}, 0, 4 * retry.Base, "", 3},
		{"then max_retries", []error{limited, limited, limited, limited, limited}, 0, 0, "gave up after 5 attempts: status 500", 3},
		{"retry-after still honoured", []error{busy(2 * time.Second)}, 2 * time.Second, 2 * time.Second, "", 3},
		{"permanent on any node", []error{permanent}, 0, 0, "status 400", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Sink{cfg: Config{MaxRetries: 2}, nodes: &pool{nodes: make([]*node, max(1, tt.nodes))}}
			pause := s.pause()
			var d time.Duration
			var err error
			for attempt, f := range tt.failures {
				if err != nil {
					t.Fatalf("attempt %d ended the retries: %v", attempt, err)
				}
				d, err = pause(attempt, f)
			}
			if tt.stop != "" {
				if err == nil || err.Error() != tt.stop {
					t.Fatalf("pause = %v, %v; want the error %q", d, err, tt.stop)
				}
				return
			}
			if err != nil || d < tt.min || d > tt.max {
				t.Errorf("pause = %v, %v; want a delay within [%v, %v]", d, err, tt.min, tt.max)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	tests := map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		" 7 ":                           7 * time.Second,
		"0":                             0,
		"-5":                            0,
		"1.5":                           0,
		"Wed, 21 Oct 2015 07:28:00 GMT": 0, // dates are not read
	}
	for h, want := range tests {
		if got := retryAfter(h); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no url", Config{Name: "p"}, "no url"},
		{"bad analysis", Config{Name: "p", URL: "http://x", TextAnalysis: "fancy"}, "text_analysis"},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error about %s", tt.name, err, tt.want)
		}
	}
	s, err := New(Config{Name: "p", URL: "http://x"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.cfg.BatchSize != 1000 || s.cfg.MaxBytes != 10<<20 || s.cfg.Timeout != 30*time.Second ||
		s.cfg.Shards != 1 || s.cfg.RefreshInterval != "10s" || s.cfg.TextAnalysis != "builtin" {
		t.Errorf("defaults not applied: %+v", s.cfg)
	}
}

func TestActionLine(t *testing.T) {
	a := action{Index: "p_users_1f5140c0", ID: "a\"<b>&\u2028\\", Version: 42, VersionType: "external", RequireAlias: true}
	for _, verb := range []string{"index", "delete"} {
		got, err := actionLine(verb, a)
		if err != nil {
			t.Fatal(err)
		}
		// The line is what encoding the one-key object gives.
		want, _ := json.Marshal(map[string]action{verb: a})
		if string(got) != string(want)+"\n" {
			t.Errorf("%s: got %s, want %s", verb, got, want)
		}
	}
	if _, err := actionLine("update", a); err == nil {
		t.Error("an unknown verb was encoded")
	}
}
