package opensearch

import (
	"maps"
	"slices"
	"testing"
)

// TestPointInTime reads an index as it was when the view was opened: a
// document written, rewritten or deleted since reads as before, and the
// count is of the documents then, with their bytes as written.
func TestPointInTime(t *testing.T) {
	t.Parallel()
	s := newSink(t, Config{})
	ix := parseSchema(t, usersYAML)
	ensure(t, s, ix)
	write(t, s, upsert("1", 10, `{"name":"one"}`), upsert("2", 11, `{"name":"two"}`), upsert("3", 12, `{"name": "three"}`))

	ctx := ctxT(t)
	view, err := s.PointInTime(ctx, ix)
	if err != nil {
		t.Fatal(err)
	}
	write(t, s, upsert("4", 20, `{"name":"four"}`), upsert("1", 21, `{"name":"one, again"}`), del("2", 22))
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	got, err := view.Get(ctx, []string{"1", "2", "3", "4", "5"})
	if err != nil {
		t.Fatal(err)
	}
	if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, []string{"1", "2", "3"}) {
		t.Fatalf("the view holds %v, want 1, 2, 3 as they were", ids)
	}
	for id, want := range map[string]struct {
		version uint64
		body    string
	}{"1": {10, `{"name":"one"}`}, "2": {11, `{"name":"two"}`}, "3": {12, `{"name": "three"}`}} {
		if d := got[id]; d.Version != want.version || string(d.Body) != want.body {
			t.Errorf("document %s reads v%d %s, want v%d %s (bytes as written)", id, d.Version, d.Body, want.version, want.body)
		}
	}
	if n, err := view.Count(ctx); err != nil || n != 3 {
		t.Errorf("the view counts %d documents (%v), want 3", n, err)
	}
	// Real time reads see the writes since.
	now, err := s.Get(ctx, ix, []string{"1", "2", "4"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := now["2"]; ok || now["1"].Version != 21 || now["4"].Version != 20 {
		t.Errorf("real time reads: %+v, want 1 at v21, 4 at v20 and no 2", now)
	}
	if err := view.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := view.Count(ctx); err == nil {
		t.Error("a closed view still answers")
	}
}
