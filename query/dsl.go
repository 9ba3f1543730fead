package query

import (
	"encoding/json"
)

// Query is a query clause. Build it with the functions of this package;
// Raw takes any clause OpenSearch accepts.
type Query interface{ clause() any }

type clause map[string]any

func (c clause) clause() any { return map[string]any(c) }

// Raw is a query clause written as JSON, for what the builders lack.
func Raw(body json.RawMessage) Query { return raw(body) }

type raw json.RawMessage

func (r raw) clause() any { return json.RawMessage(r) }

// MatchAll matches every document.
func MatchAll() Query { return clause{"match_all": map[string]any{}} }

// Match finds text in an analyzed (text) field: the words of text, in any
// order, each one folded as the field's analyzer folds it.
func Match(f Field, text string) Query {
	return clause{"match": map[string]any{string(f): map[string]any{"query": text}}}
}

// MatchPhrase finds the words of text next to each other, in order.
func MatchPhrase(f Field, text string) Query {
	return clause{"match_phrase": map[string]any{string(f): map[string]any{"query": text}}}
}

// Term matches a keyword, number, date or boolean field holding exactly v.
func Term(f Field, v any) Query {
	return clause{"term": map[string]any{string(f): map[string]any{"value": v}}}
}

// Terms matches a field holding any of vs. Pass a slice of any type with
// Values: Terms(f, Values(ids)...).
func Terms(f Field, vs ...any) Query { return clause{"terms": map[string]any{string(f): vs}} }

// Values makes a slice of any type the arguments of Terms.
func Values[V any](vs []V) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
}

// Bound is one end of a Range.
type Bound struct {
	op string
	v  any
}

// Gt, Gte, Lt and Lte bound a Range.
func Gt(v any) Bound  { return Bound{"gt", v} }
func Gte(v any) Bound { return Bound{"gte", v} }
func Lt(v any) Bound  { return Bound{"lt", v} }
func Lte(v any) Bound { return Bound{"lte", v} }

// Range matches a number, date or keyword field within bounds.
func Range(f Field, bounds ...Bound) Query {
	r := map[string]any{}
	for _, b := range bounds {
		r[b.op] = b.v
	}
	return clause{"range": map[string]any{string(f): r}}
}

// Exists matches documents with a value in f (not null, not an empty
// list).
func Exists(f Field) Query { return clause{"exists": map[string]any{"field": string(f)}} }

// Nested matches documents with at least one element of the nested (to-many)
// field path for which q holds: conditions on two fields of q hold for the
// same element.
func Nested(path Field, q Query) Query {
	return clause{"nested": map[string]any{"path": string(path), "query": q.clause()}}
}

// Bool composes queries: all of Must (scored) and Filter (not scored), none
// of MustNot, and of Should at least MinimumShouldMatch (when set, or when
// there is no Must or Filter, at least one).
type Bool struct {
	Must, Filter, Should, MustNot []Query
	MinimumShouldMatch            int
}

func (b Bool) clause() any {
	body := map[string]any{}
	for _, part := range []struct {
		key string
		qs  []Query
	}{{"must", b.Must}, {"filter", b.Filter}, {"should", b.Should}, {"must_not", b.MustNot}} {
		if len(part.qs) > 0 {
			body[part.key] = clauses(part.qs)
		}
	}
	if b.MinimumShouldMatch > 0 {
		body["minimum_should_match"] = b.MinimumShouldMatch
	}
	return map[string]any{"bool": body}
}

// And matches documents every q matches, without scoring them.
func And(qs ...Query) Query { return Bool{Filter: qs} }

// Or matches documents any q matches.
func Or(qs ...Query) Query { return Bool{Should: qs, MinimumShouldMatch: 1} }

// Not matches documents q does not match.
func Not(q Query) Query { return Bool{MustNot: []Query{q}} }

func clauses(qs []Query) []any {
	out := make([]any, len(qs))
	for i, q := range qs {
		out[i] = q.clause()
	}
	return out
}

// Sort orders hits by a field. Sort text on its .keyword subfield and an
// enum on its .sort subfield (variants in their declared order); a field
// inside a to-many join needs Nested set to the join's path (the hit then
// sorts by the smallest value of its elements, or the largest when Desc).
type Sort struct {
	Field  Field
	Desc   bool
	Nested Field
}

// Asc sorts by f, smallest first.
func Asc(f Field) Sort { return Sort{Field: f} }

// Desc sorts by f, largest first.
func Desc(f Field) Sort { return Sort{Field: f, Desc: true} }

func (s Sort) body() any {
	o := map[string]any{"order": "asc"}
	if s.Desc {
		o["order"] = "desc"
	}
	if s.Nested != "" {
		o["nested"] = map[string]any{"path": string(s.Nested)}
	}
	return map[string]any{string(s.Field): o}
}

// Agg is an aggregation; read its result with the Result method of the
// same name (Terms, Stats, …).
type Agg interface{ agg() any }

type agg map[string]any

func (a agg) agg() any { return map[string]any(a) }

// TermsAgg counts the documents per value of a keyword, number or boolean
// field, the size most frequent values first.
func TermsAgg(f Field, size int) Agg {
	return agg{"terms": map[string]any{"field": string(f), "size": size}}
}

// StatsAgg is the count, min, max, avg and sum of a numeric field.
func StatsAgg(f Field) Agg { return agg{"stats": map[string]any{"field": string(f)}} }

// CardinalityAgg approximates the number of distinct values of f.
func CardinalityAgg(f Field) Agg { return agg{"cardinality": map[string]any{"field": string(f)}} }

// NestedAgg runs the aggregations aggs over the elements of the to-many
// field path; read them with Result.Nested.
func NestedAgg(path Field, aggs map[string]Agg) Agg {
	return agg{"nested": map[string]any{"path": string(path)}, "aggs": aggBodies(aggs)}
}

func aggBodies(aggs map[string]Agg) map[string]any {
	out := make(map[string]any, len(aggs))
	for name, a := range aggs {
		out[name] = a.agg()
	}
	return out
}
