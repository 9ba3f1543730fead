package run

import (
	"strings"
	"testing"
)

func TestNATSOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		want    int
		wantErr string
	}{
		{name: "none", opts: Options{}, want: 0},
		{name: "creds and CA", opts: Options{NATSCreds: "x.creds", NATSCA: "ca.pem"}, want: 2},
		{name: "mutual TLS", opts: Options{NATSCert: "c.pem", NATSKey: "k.pem"}, want: 1},
		{name: "cert without key", opts: Options{NATSCert: "c.pem"}, wantErr: "needs both --nats-tls-cert and --nats-tls-key"},
		{name: "missing nkey seed", opts: Options{NATSNKey: "/nonexistent/seed"}, wantErr: "reading the NATS nkey seed /nonexistent/seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.natsOptions()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(got) != tt.want {
				t.Fatalf("got %d options, %v; want %d", len(got), err, tt.want)
			}
		})
	}
}
