package audit

import (
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	tests := []struct {
		p    Progress
		rate float64
		eta  time.Duration
	}{
		{Progress{Done: 50, Total: 150, Elapsed: 10 * time.Second}, 5, 20 * time.Second},
		{Progress{Done: 50, Total: 0, Elapsed: 10 * time.Second}, 5, 0},     // total unknown
		{Progress{Done: 200, Total: 150, Elapsed: 10 * time.Second}, 20, 0}, // past the estimate
		{Progress{Done: 0, Total: 150}, 0, 0},
	}
	for _, tt := range tests {
		if r, e := tt.p.Rate(), tt.p.ETA(); r != tt.rate || e != tt.eta {
			t.Errorf("%+v: rate %v, eta %v; want %v, %v", tt.p, r, e, tt.rate, tt.eta)
		}
	}
}
