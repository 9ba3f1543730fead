package run

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flusso/flusso/pkg/broker"
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

// TestEmbeddedBroker connects a one-process pipeline to its embedded NATS:
// in process only by default; with NATSListen, TCP clients need the
// credentials, generated into the data directory or given, and the log
// says where they are, never what.
func TestEmbeddedBroker(t *testing.T) {
	for _, tc := range []struct {
		name           string
		opts           Options
		user, password string // given; empty: generated
		wantErr        string
	}{
		{name: "in process only"},
		{name: "generated credentials", opts: Options{NATSListen: "127.0.0.1:0"}},
		{name: "given credentials", opts: Options{NATSListen: "127.0.0.1:0", NATSListenUser: "ops", NATSListenPassword: "given-pw-123"}},
		{name: "user without password", opts: Options{NATSListen: "127.0.0.1:0", NATSListenUser: "ops"}, wantErr: "go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.DataDir = t.TempDir()
			var logs bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			bc, closeBroker, err := tc.opts.connectBroker(ctx, slog.New(slog.NewTextHandler(&logs, nil)))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer closeBroker()
			if err := bc.Setup(ctx, []string{"primary"}); err != nil {
				t.Fatal(err)
			}
			credentials := filepath.Join(tc.opts.DataDir, ListenCredentialsFile)
			if tc.opts.NATSListen == "" {
				if ln, _, err := tc.opts.listener(); ln != nil || err != nil || strings.Contains(logs.String(), "listening") {
					t.Errorf("a listener without NATSListen: %+v %v\n%s", ln, err, &logs)
				}
				return
			}
			user, password := tc.opts.NATSListenUser, tc.opts.NATSListenPassword
			if user == "" {
				fi, err := os.Stat(credentials)
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("credentials file: %v %v", fi, err)
				}
				if !strings.Contains(logs.String(), credentials) {
					t.Errorf("the log does not say where the credentials are:\n%s", &logs)
				}
				if user, password, err = broker.ListenerCredentials(credentials); err != nil {
					t.Fatal(err)
				}
			}
			if strings.Contains(logs.String(), password) {
				t.Errorf("the log holds the password:\n%s", &logs)
			}
			addr := regexp.MustCompile(`address=(\S+)`).FindStringSubmatch(logs.String())
			if addr == nil {
				t.Fatalf("no address logged:\n%s", &logs)
			}
			if nc, err := nats.Connect("nats://" + addr[1]); err == nil {
				nc.Close()
				t.Error("connected without credentials")
			}
			nc, err := nats.Connect("nats://"+addr[1], nats.UserInfo(user, password))
			if err != nil {
				t.Fatalf("with the credentials: %v", err)
			}
			nc.Close()
		})
	}
}
