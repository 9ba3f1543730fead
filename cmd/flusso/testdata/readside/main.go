// Command readside is the application of the read-side test
// (cmd/flusso/gen_test.go): built in a module of its own against code that
// `flusso gen go` wrote into ./gen, it reads the test deployment through
// the query module and prints what it found as one JSON object, which the
// test compares with Postgres.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"

	"example.com/app/gen"
	"github.com/flusso/flusso/query"
)

func main() {
	out, err := run(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// roundTrip reads every document of ix, decodes it strictly into T and
// checks that encoding it again gives the document back. It returns the
// ids in the order of the tiebreak.
func roundTrip[T any](ctx context.Context, c *query.Client, ix query.Index[T]) ([]string, error) {
	var ids []string
	for h, err := range query.All(ctx, c, ix, query.Request{Sort: []query.Sort{query.Asc(ix.Tiebreak)}, Size: 7}) {
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(h.Source))
		dec.DisallowUnknownFields()
		var doc T
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("%s document %s: decode: %w\n%s", ix.Logical, h.ID, err, h.Source)
		}
		again, err := json.Marshal(doc)
		if err != nil {
			return nil, fmt.Errorf("%s document %s: encode: %w", ix.Logical, h.ID, err)
		}
		var want, got any
		if err := json.Unmarshal(h.Source, &want); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(again, &got); err != nil {
			return nil, err
		}
		if !reflect.DeepEqual(want, got) {
			return nil, fmt.Errorf("%s document %s does not round-trip:\nstored  %s\nencoded %s", ix.Logical, h.ID, h.Source, again)
		}
		ids = append(ids, h.ID)
	}
	return ids, nil
}

func ids[T any](ctx context.Context, c *query.Client, ix query.Index[T], req query.Request) ([]string, error) {
	if req.Size == 0 {
		req.Size = 1000
	}
	res, err := query.Search(ctx, c, ix, req)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, h := range res.Hits {
		out = append(out, h.ID)
	}
	return out, nil
}

func run(ctx context.Context) (map[string]any, error) {
	c, err := query.FromEnv("primary")
	if err != nil {
		return nil, err
	}
	if err := c.Check(ctx, gen.Users, gen.Products, gen.Items); err != nil {
		return nil, err
	}
	out := map[string]any{}
	var errs []error
	add := func(key string, v any, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
		out[key] = v
	}

	v, err := roundTrip(ctx, c, gen.Users)
	add("all users", v, err)
	v, err = roundTrip(ctx, c, gen.Products)
	add("all products", v, err)
	v, err = roundTrip(ctx, c, gen.Items)
	add("all items", v, err)

	id := query.Asc(gen.ItemsFieldID)
	v, err = ids(ctx, c, gen.Items, query.Request{Query: query.Term(gen.ItemsFieldPriority, gen.ItemsPriorityHigh), Sort: []query.Sort{id}})
	add("term priority high", v, err)
	v, err = ids(ctx, c, gen.Items, query.Request{Query: query.Terms(gen.ItemsFieldID, query.Values([]int64{1, 2, 3, 99})...), Sort: []query.Sort{id}})
	add("terms id 1 2 3 99", v, err)
	v, err = ids(ctx, c, gen.Items, query.Request{Query: query.Range(gen.ItemsFieldStock, query.Gte(100), query.Lt(200)), Sort: []query.Sort{id}})
	add("range stock 100..200", v, err)
	v, err = ids(ctx, c, gen.Items, query.Request{Query: query.Range(gen.ItemsFieldReleased, query.Gt("2024-01-10"), query.Lte("2024-01-20")), Sort: []query.Sort{id}})
	add("range released", v, err)
	v, err = ids(ctx, c, gen.Items, query.Request{Query: query.Exists(gen.ItemsFieldSKU), Sort: []query.Sort{id}})
	add("exists sku", v, err)
	v, err = ids(ctx, c, gen.Items, query.Request{Query: query.Match(gen.ItemsFieldName, "HAMMER"), Sort: []query.Sort{id}})
	add("match name hammer", v, err)
	v, err = ids(ctx, c, gen.Items, query.Request{Query: query.Bool{
		Must:    []query.Query{query.Match(gen.ItemsFieldName, "garden")},
		MustNot: []query.Query{query.Range(gen.ItemsFieldStock, query.Lt(100))},
	}, Sort: []query.Sort{id}})
	add("bool garden not stock < 100", v, err)
	v, err = ids(ctx, c, gen.Items, query.Request{Query: query.Nested(gen.ItemsFieldVariants, query.And(
		query.Term(gen.ItemsFieldVariantsState, gen.ItemsVariantsStateLive),
		query.Range(gen.ItemsFieldVariantsPrice, query.Gte(20)),
	)), Sort: []query.Sort{id}})
	add("nested live variant price >= 20", v, err)
	v, err = ids(ctx, c, gen.Items, query.Request{Query: query.Nested(gen.ItemsFieldVariants,
		query.Nested(gen.ItemsFieldVariantsReviews, query.Term(gen.ItemsFieldVariantsReviewsStars, 5))), Sort: []query.Sort{id}})
	add("nested review stars 5", v, err)
	v, err = ids(ctx, c, gen.Items, query.Request{Sort: []query.Sort{query.Asc(gen.ItemsFieldPrioritySort), id}})
	add("sort priority", v, err)
	v, err = ids(ctx, c, gen.Items, query.Request{Sort: []query.Sort{query.Desc(gen.ItemsFieldNameKeyword), id}})
	add("sort name desc", v, err)
	v, err = ids(ctx, c, gen.Items, query.Request{Sort: []query.Sort{
		{Field: gen.ItemsFieldVariantsPrice, Desc: true, Nested: gen.ItemsFieldVariants}, id}})
	add("sort max variant price desc", v, err)
	v, err = ids(ctx, c, gen.Users, query.Request{Query: query.Nested(gen.UsersFieldOrders,
		query.Nested(gen.UsersFieldOrdersItems, query.Match(gen.UsersFieldOrdersItemsProductName, "espresso"))),
		Sort: []query.Sort{query.Asc(gen.UsersFieldID)}})
	add("users who ordered an espresso", v, err)

	n, err := query.Count(ctx, c, gen.Items, query.Range(gen.ItemsFieldStock, query.Gte(100)))
	add("count stock >= 100", n, err)

	doc, found, err := query.Get(ctx, c, gen.Items, "1")
	add("get 1", map[string]any{"found": found, "name": doc.Name, "brand": doc.Brand}, err)
	_, found, err = query.Get(ctx, c, gen.Items, "999")
	add("get 999", found, err)

	res, err := query.Search(ctx, c, gen.Items, query.Request{Size: 1, Aggs: map[string]query.Agg{
		"kinds":    query.TermsAgg(gen.ItemsFieldKind, 10),
		"stock":    query.StatsAgg(gen.ItemsFieldStock),
		"variants": query.NestedAgg(gen.ItemsFieldVariants, map[string]query.Agg{"states": query.TermsAgg(gen.ItemsFieldVariantsState, 10)}),
	}})
	if err != nil {
		add("aggregations", nil, err)
	} else {
		kinds, err := res.Terms("kinds")
		add("terms agg kind", kinds, err)
		stock, err := res.Stats("stock")
		add("stats agg stock", []any{stock.Count, *stock.Min, *stock.Max, stock.Sum}, err)
		count, nested, err := res.Nested("variants")
		if err == nil {
			var states []query.Bucket
			states, err = nested.Terms("states")
			add("nested agg variant states", map[string]any{"elements": count, "states": states}, err)
		} else {
			add("nested agg variant states", nil, err)
		}
	}

	// Code generated from another version of the schema, and a client
	// without the deployment's prefix.
	stale := query.Index[gen.ItemsDoc]{Logical: gen.Items.Logical, Hash: "0000beef"}
	_, err = query.Search(ctx, c, stale, query.Request{})
	var mm *query.MismatchError
	if !errors.As(err, &mm) || !errors.Is(err, query.ErrMismatch) {
		errs = append(errs, fmt.Errorf("search with another hash: got %v, want a *query.MismatchError", err))
	} else {
		out["mismatch"] = map[string]any{"message": err.Error(), "served": mm.Served}
	}
	bare, err := query.New(query.Config{Addresses: []string{os.Getenv("PRIMARY_OPENSEARCH_URL")}})
	if err != nil {
		return nil, err
	}
	err = bare.Check(ctx, gen.Items)
	if !errors.As(err, &mm) {
		errs = append(errs, fmt.Errorf("check without the prefix: got %v, want a *query.MismatchError", err))
	} else {
		out["no prefix"] = map[string]any{"message": err.Error(), "served": mm.Served}
	}
	return out, errors.Join(errs...)
}
