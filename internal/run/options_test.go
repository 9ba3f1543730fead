package run

import (
	"context"
	"strings"
	"testing"
	"time"
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

// TestValidateNames feeds the names Postgres refuses, and a few it takes.
func TestValidateNames(t *testing.T) {
	tests := []struct {
		name        string
		slot, pub   string
		grace       time.Duration
		wantErr     string
		wantErrRule string
	}{
		{name: "defaults", slot: "flusso", pub: "flusso"},
		{name: "digits and underscores", slot: "0_slot_9", pub: "_pub$1"},
		{name: "longest", slot: strings.Repeat("s", 63), pub: "p" + strings.Repeat("u", 62)},
		{name: "slot upper case", slot: "Bad-Slot", pub: "flusso", wantErr: `--slot (FLUSSO_SLOT) "Bad-Slot"`, wantErrRule: "lowercase letters, digits and underscores"},
		{name: "slot hyphen", slot: "bad-slot", pub: "flusso", wantErr: `--slot (FLUSSO_SLOT) "bad-slot"`},
		{name: "slot empty", slot: "", pub: "flusso", wantErr: `--slot (FLUSSO_SLOT) ""`},
		{name: "slot too long", slot: strings.Repeat("s", 64), pub: "flusso", wantErr: "--slot (FLUSSO_SLOT)", wantErrRule: "1 to 63"},
		{name: "slot dollar", slot: "s$", pub: "flusso", wantErr: "--slot (FLUSSO_SLOT)"},
		{name: "publication upper case", slot: "flusso", pub: "Pub", wantErr: `--publication (FLUSSO_PUBLICATION) "Pub"`, wantErrRule: "unquoted Postgres identifier"},
		{name: "publication leading digit", slot: "flusso", pub: "1pub", wantErr: `--publication (FLUSSO_PUBLICATION) "1pub"`},
		{name: "publication quote", slot: "flusso", pub: "p'ub", wantErr: "--publication (FLUSSO_PUBLICATION)"},
		{name: "publication space", slot: "flusso", pub: "my pub", wantErr: "--publication (FLUSSO_PUBLICATION)"},
		{name: "publication empty", slot: "flusso", pub: "", wantErr: "--publication (FLUSSO_PUBLICATION)"},
		{name: "publication too long", slot: "flusso", pub: strings.Repeat("p", 64), wantErr: "--publication (FLUSSO_PUBLICATION)"},
		{name: "negative grace", slot: "flusso", pub: "flusso", grace: -time.Second, wantErr: "--ready-grace-secs (FLUSSO_READY_GRACE_SECS) must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Options{Slot: tt.slot, Publication: tt.pub, ReadyGrace: tt.grace}.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate: %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.wantErrRule) {
				t.Fatalf("validate: %v, want an error containing %q and %q", err, tt.wantErr, tt.wantErrRule)
			}
		})
	}
}

// TestStartRefusesABadSlotBeforeConnecting: with nothing to connect to
// (no config, no NATS, no database), Start still answers at once with the
// name's error.
func TestStartRefusesABadSlotBeforeConnecting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := Start(ctx, Options{Slot: "Bad-Slot", Publication: "flusso"}, func(*Pipeline) { t.Error("the pipeline was assembled") })
	if err == nil || !strings.Contains(err.Error(), `--slot (FLUSSO_SLOT) "Bad-Slot"`) {
		t.Fatalf("Start: %v, want the slot name refused", err)
	}
}
