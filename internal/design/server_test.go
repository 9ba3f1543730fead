package design

import "testing"

func TestHostCheck(t *testing.T) {
	for _, tc := range []struct {
		addr, host string
		ok         bool
	}{
		{"127.0.0.1:7700", "127.0.0.1:7700", true},
		{"127.0.0.1:7700", "localhost:7700", true},
		{"127.0.0.1:7700", "[::1]:7700", true},
		{"127.0.0.1:7700", "localhost:7701", false},
		{"127.0.0.1:7700", "evil.example:7700", false},
		{"127.0.0.1:7700", "192.168.1.5:7700", false},
		{"0.0.0.0:7700", "192.168.1.5:7700", true},
		{"0.0.0.0:7700", "192.168.1.5:7701", false},
		{"0.0.0.0:7700", "designer.example:7700", false},
		{"10.0.0.2:7700", "10.0.0.2:7700", true},
		{"10.0.0.2:7700", "10.0.0.3:7700", false},
	} {
		if got := hostCheck(tc.addr)(tc.host); got != tc.ok {
			t.Errorf("listening on %s, Host %s: %v, want %v", tc.addr, tc.host, got, tc.ok)
		}
	}
}
