package backfill

import (
	"reflect"
	"testing"
)

func TestGenerations(t *testing.T) {
	tests := []struct {
		name    string
		targets map[string]uint32
		want    []Target
	}{
		{"none", nil, []Target{}},
		{"one sink", map[string]uint32{"search": 3}, []Target{{3, []string{"search"}}}},
		{"same generation grouped", map[string]uint32{"b": 2, "a": 2}, []Target{{2, []string{"a", "b"}}}},
		{"stdout keeps no generations", map[string]uint32{"search": 4, "out": 0, "audit": 4},
			[]Target{{0, []string{"out"}}, {4, []string{"audit", "search"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := (&Job{Targets: tt.targets}).Generations()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Generations() = %v, want %v", got, tt.want)
			}
		})
	}
}
