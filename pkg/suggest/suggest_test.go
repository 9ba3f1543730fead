package suggest

import "testing"

func TestClosest(t *testing.T) {
	keys := []string{"foreign_key", "primary_key", "table", "fields"}
	tests := []struct{ word, want string }{
		{"foriegn_key", "foreign_key"},
		{"tabel", "table"},
		{"field", "fields"},
		{"nothing_like_it", ""},
		{string(make([]byte, 200)), ""},
	}
	for _, tt := range tests {
		if got := Closest(tt.word, keys); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
}
