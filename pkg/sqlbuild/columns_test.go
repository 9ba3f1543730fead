package sqlbuild_test

import (
	"context"
	"slices"
	"testing"

	"github.com/flusso/flusso/pkg/sqlbuild"
)

func TestChangeColumns(t *testing.T) {
	pool := database(t, shopDDL)
	ix := index(t, pool, shopSchema)
	for _, tt := range []struct {
		schema, table string
		want          []string
	}{
		{"public", "users", []string{"id", "manager_id"}}, // the root, and reports by manager
		{"public", "companies", []string{"id"}},
		{"public", "profiles", []string{"id", "user_id"}},
		{"public", "orders", []string{"id", "user_id"}}, // joins and aggregates alike
		{"public", "items", []string{"id", "order_id"}},
		{"public", "products", []string{"id"}},
		{"public", "tags", []string{"id"}},
		{"public", "user_tags", []string{"user_id"}},
		{"public", "audit", nil},
		{"other", "users", nil},
	} {
		if got := ix.ChangeColumns(tt.schema, tt.table); !slices.Equal(got, tt.want) {
			t.Errorf("ChangeColumns(%s, %s) = %v, want %v", tt.schema, tt.table, got, tt.want)
		}
	}
}

// TestChangeColumnsAreEnoughForAffected resolves each change twice, whole
// and cut down to ChangeColumns: the documents found must be the same.
func TestChangeColumnsAreEnoughForAffected(t *testing.T) {
	pool := database(t, shopDDL)
	ix := index(t, pool, shopSchema)
	full := "id=3 email=grace@x company_id=2 deleted=f deleted_at=null status=active manager_id=1"
	changes := []sqlbuild.Change{
		ins("users", "id=4 email=a company_id=null manager_id=1"),
		upd("users", full, "id=5 email=grace@x company_id=2 deleted=f deleted_at=null status=active manager_id=2"),
		upd("users", "", "id=2 email=b company_id=null manager_id=1"),
		upd("users", "", "id=2 company_id=null"),
		del("users", full),
		del("users", "id=3"),
		upd("profiles", "id=10 user_id=1 headline=old updated=1", "id=10 user_id=3 headline=old updated=1"),
		del("profiles", "id=10 user_id=1 headline=old updated=1"),
		upd("orders", "id=101 user_id=1 total=5 status=pending placed=null", "id=101 user_id=3 total=5 status=pending placed=null"),
		upd("orders", "id=101 user_id=1 total=5", "id=101 total=6"),
		upd("orders", "", "id=101 total=6"),
		upd("orders", "", "id=101 user_id=3 total=6"),
		del("orders", "id=100 user_id=1 total=19.99 status=paid placed=2024-01-10"),
		upd("orders", "id=101 user_id=1 total=5 status=pending", "id=101 user_id=1 total=5 status=paid"),
		upd("items", "id=1002 order_id=102 product_id=500 qty=5", "id=1002 order_id=200 product_id=500 qty=5"),
		upd("companies", "id=2 name=Globex", "id=2 name=Initech"),
		del("products", "id=501 name=ink price=3"),
		ins("user_tags", "user_id=2 tag_id=1"),
		del("user_tags", "user_id=1 tag_id=3"),
		upd("tags", "id=2 label=green", "id=2 label=lime"),
	}
	ctx := context.Background()
	dropped := 0
	for _, c := range changes {
		keep := ix.ChangeColumns(c.Schema, c.Table)
		cut := c
		cut.New, cut.Old = only(c.New, keep, &dropped), only(c.Old, keep, &dropped)
		wantKeys, wantAll, err := ix.Affected(ctx, pool, []sqlbuild.Change{c})
		if err != nil {
			t.Fatal(err)
		}
		keys, all, err := ix.Affected(ctx, pool, []sqlbuild.Change{cut})
		if err != nil {
			t.Fatal(err)
		}
		if all != wantAll || !slices.Equal(keys, wantKeys) {
			t.Errorf("%v of %s cut to %v: Affected = %v, %v; the whole change gives %v, %v", c.Op, c.Table, keep, keys, all, wantKeys, wantAll)
		}
	}
	if dropped == 0 {
		t.Fatal("no change lost a column: the test proves nothing")
	}
}

// only keeps the columns of img named in keep, counting the others.
func only(img map[string]*string, keep []string, dropped *int) map[string]*string {
	if img == nil {
		return nil
	}
	out := map[string]*string{}
	for k, v := range img {
		if slices.Contains(keep, k) {
			out[k] = v
		} else {
			*dropped++
		}
	}
	return out
}
