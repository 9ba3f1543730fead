package query

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

type doc struct{}

func TestName(t *testing.T) {
	ix := Index[doc]{Logical: "users", Hash: "d7730140"}
	for prefix, want := range map[string]string{"": "users_d7730140", "demo_": "demo_users_d7730140"} {
		if got := ix.Name(prefix); got != want {
			t.Errorf("Name(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func TestRequestBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"nested match with a sort", Request{
			Query: Nested("orders", Nested("orders.items", Match("orders.items.product.name", "espresso maker"))),
			Sort:  []Sort{Desc("total_spent"), {Field: "orders.total", Nested: "orders"}},
			Size:  5,
		}, `{"query":{"nested":{"path":"orders","query":{"nested":{"path":"orders.items","query":{"match":{"orders.items.product.name":{"query":"espresso maker"}}}}}}},"size":5,"sort":[{"total_spent":{"order":"desc"}},{"orders.total":{"nested":{"path":"orders"},"order":"asc"}}]}`},
		{"bool, term, terms, range, exists", Request{Query: Bool{
			Must:    []Query{Term("status", "paid")},
			Filter:  []Query{Terms("id", Values([]int{1, 2})...), Range("price", Gte(10), Lt(20))},
			MustNot: []Query{Exists("deleted")},
		}}, `{"query":{"bool":{"filter":[{"terms":{"id":[1,2]}},{"range":{"price":{"gte":10,"lt":20}}}],"must":[{"term":{"status":{"value":"paid"}}}],"must_not":[{"exists":{"field":"deleted"}}]}}}`},
		{"or, not, raw, search_after and aggregations", Request{
			Query: Or(Not(MatchAll()), Raw(json.RawMessage(`{"ids":{"values":["1"]}}`))),
			After: []json.RawMessage{json.RawMessage(`12`), json.RawMessage(`"a"`)},
			Aggs:  map[string]Agg{"s": StatsAgg("price"), "n": NestedAgg("tags", map[string]Agg{"t": TermsAgg("tags.name", 3)})},
		}, `{"aggs":{"n":{"aggs":{"t":{"terms":{"field":"tags.name","size":3}}},"nested":{"path":"tags"}},"s":{"stats":{"field":"price"}}},"query":{"bool":{"minimum_should_match":1,"should":[{"bool":{"must_not":[{"match_all":{}}]}},{"ids":{"values":["1"]}}]}},"search_after":[12,"a"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(tc.req.body())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestTimestamp(t *testing.T) {
	for in, want := range map[Timestamp]time.Time{
		"2024-01-02T03:04:05.123456Z": time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.UTC),
		"2024-01-02T03:04:05":         time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		"2024-01-02T03:04:05.5":       time.Date(2024, 1, 2, 3, 4, 5, 500000000, time.UTC),
	} {
		got, err := in.Time()
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: got %v, %v", in, got, err)
		}
	}
	if _, err := Timestamp("yesterday").Time(); err == nil {
		t.Error("a bad timestamp parsed")
	}
	if d, err := Date("2024-02-29").Time(); err != nil || d.YearDay() != 60 {
		t.Errorf("date: %v, %v", d, err)
	}
}

func TestMismatchError(t *testing.T) {
	err := error(&MismatchError{Index: "demo_users_0000beef", Prefix: "demo_", Hash: "0000beef", Served: []string{"d7730140"}})
	want := "query: no index demo_users_0000beef: this code was generated from schema hash 0000beef of index users, but the deployment serves schema hash d7730140: regenerate the code from the deployed schema (flusso gen go) or deploy the schema the code was made from"
	if err.Error() != want || !errors.Is(err, ErrMismatch) {
		t.Errorf("got %q", err)
	}
}
