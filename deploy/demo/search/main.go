// Command search is the demo's application: it reads the demo indexes
// through the Go types `flusso gen go` wrote into ./shop, with the query
// module. make demo runs it after the backfill; it reads PRIMARY_OPENSEARCH_URL
// and FLUSSO_INDEX_PREFIX, as flusso does.
//
// After a schema change, regenerate the types (from the repository's root):
//
//	go run ./cmd/flusso gen go --config deploy/demo/flusso.toml --out deploy/demo/search/shop
//
//go:generate go run ../../../cmd/flusso gen go --config ../flusso.toml --out shop
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/flusso/flusso/deploy/demo/search/shop"
	"github.com/flusso/flusso/query"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "search:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	c, err := query.FromEnv("primary")
	if err != nil {
		return err
	}
	// Fails fast, naming the hash the deployment serves, when flusso runs
	// another version of a schema than the one this code was made from.
	if err := c.Check(ctx, shop.Users, shop.Products); err != nil {
		return err
	}

	fmt.Printf("customers who ordered an espresso maker, biggest spenders first (%s):\n", shop.Users.Name(c.Prefix()))
	res, err := query.Search(ctx, c, shop.Users, query.Request{
		Query: query.Nested(shop.UsersFieldOrders,
			query.Nested(shop.UsersFieldOrdersItems,
				query.Match(shop.UsersFieldOrdersItemsProductName, "espresso maker"))),
		Sort: []query.Sort{query.Desc(shop.UsersFieldTotalSpent), query.Asc(shop.UsersFieldID)},
		Size: 3,
	})
	if err != nil {
		return err
	}
	fmt.Printf("  %d hits\n", res.Total)
	for _, h := range res.Hits {
		u := h.Doc
		city := ""
		if u.Profile != nil && u.Profile.City != nil {
			city = *u.Profile.City
		}
		fmt.Printf("  #%d %s <%s> %s | orders %d, spent %.2f\n", u.ID, u.Name, u.Email, city, u.OrderCount, deref(u.TotalSpent))
	}

	fmt.Println("customers with an order still to ship, and how their orders stand:")
	res, err = query.Search(ctx, c, shop.Users, query.Request{
		Query: query.Nested(shop.UsersFieldOrders, query.Terms(shop.UsersFieldOrdersStatus,
			shop.UsersOrdersStatusPending, shop.UsersOrdersStatusPaid)),
		Size: 0,
		Aggs: map[string]query.Agg{"orders": query.NestedAgg(shop.UsersFieldOrders, map[string]query.Agg{
			"status": query.TermsAgg(shop.UsersFieldOrdersStatus, len(shop.UsersOrdersStatusVariants)),
		})},
	})
	if err != nil {
		return err
	}
	orders, nested, err := res.Nested("orders")
	if err != nil {
		return err
	}
	statuses, err := nested.Terms("status")
	if err != nil {
		return err
	}
	var parts []string
	for _, b := range statuses {
		parts = append(parts, fmt.Sprintf("%v %d", b.Key, b.DocCount))
	}
	fmt.Printf("  %d customers, %d orders: %s\n", res.Total, orders, strings.Join(parts, ", "))

	n, err := query.Count(ctx, c, shop.Products, query.Range(shop.ProductsFieldPrice, query.Lt(20)))
	if err != nil {
		return err
	}
	fmt.Printf("products under 20 EUR: %d\n", n)
	p, found, err := query.Get(ctx, c, shop.Products, "1")
	if err != nil {
		return err
	}
	if found {
		cat := "no category"
		if p.Category != nil && p.Category.Name != nil {
			cat = *p.Category.Name
		}
		fmt.Printf("product 1: %s %s, %.2f EUR [%s]\n", p.SKU, p.Name, p.Price, cat)
	}
	return nil
}

func deref(f *float64) float64 {
	if f == nil {
		return 0
	}
	return *f
}
