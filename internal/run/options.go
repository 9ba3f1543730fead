// Package run starts the pipeline stages of one flusso process: all of them
// around an embedded NATS server (the default), or the chosen roles against
// an external NATS.
package run

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/publication"
)

// Role is one stage a process can run.
type Role string

// Roles.
const (
	Capture   Role = "capture"
	Assembler Role = "assembler"
	Writer    Role = "writer"
)

// Options are the resolved flags of `flusso run` (flag > FLUSSO_* env >
// config > default, already applied by the CLI).
type Options struct {
	Config *config.Config

	Slot              string
	Publication       string
	ManagePublication bool // already merged with [source].manage_publication
	SkipBackfill      bool
	Pretty            bool // stdout sinks print pretty JSON
	QueueCapacity     int  // documents in flight per writer
	PublicAddress     string
	PrivateAddress    string
	AdminUser         string
	AdminPassword     string
	LagPoll           time.Duration
	IndexPrefix       string // already merged with the config's prefix

	// NATSURL selects an external NATS (the comma-separated URLs of a
	// cluster's servers); empty starts the embedded server with its data in
	// DataDir.
	NATSURL string
	DataDir string
	// NATSListen opens the embedded server to TCP clients such as the nats
	// CLI on this host:port; empty keeps it reachable from this process
	// only. NATSListenUser and NATSListenPassword admit them; with neither,
	// the credentials in DataDir/nats-listen.env are used, made at first use.
	NATSListen         string
	NATSListenUser     string
	NATSListenPassword string
	// NATS credentials and TLS for an external server (all optional).
	NATSCreds string // a .creds file (JWT + nkey)
	NATSNKey  string // an nkey seed file
	NATSCA    string // CA certificate file to verify the server
	NATSCert  string // client certificate file (mutual TLS)
	NATSKey   string // client key file
	// Roles to run; empty runs every role. Sinks restricts writers to these
	// sink names (empty: every sink).
	Roles []Role
	Sinks []string
	// Quarantine bounds the quarantine stream.
	Quarantine broker.QuarantineLimits
	// Placement is how many copies of each stream and bucket the NATS
	// cluster keeps, and where; zero keeps one.
	Placement broker.Placement

	// Version is the build's version, stamped on stdout envelopes.
	Version string

	// ReadyGrace is how long a stage may stay degraded before /readyz
	// answers 503; zero is DefaultReadyGrace.
	ReadyGrace time.Duration

	// AuditEvery, when positive, audits AuditSample documents of each
	// index this often in the capture's process (pkg/audit).
	AuditEvery  time.Duration
	AuditSample int
}

// DefaultReadyGrace is how long a stage may stay degraded before /readyz
// answers 503: long enough to ride out a restart of a service it uses.
const DefaultReadyGrace = 60 * time.Second

// Validate refuses what Postgres would, before anything connects: a bad
// slot name otherwise fails every attempt to follow the slot, forever. The
// CLI calls it on its flags; Start calls it again for every other caller.
func (o Options) Validate() error {
	if err := publication.CheckSlot(o.Slot); err != nil {
		return fmt.Errorf("--slot (FLUSSO_SLOT) %w", err)
	}
	if err := publication.CheckName(o.Publication); err != nil {
		return fmt.Errorf("--publication (FLUSSO_PUBLICATION) %w", err)
	}
	if o.AuditEvery < 0 || (o.AuditEvery > 0 && o.AuditSample < 1) {
		return fmt.Errorf("--audit-every (FLUSSO_AUDIT_EVERY) must not be negative and --audit-sample (FLUSSO_AUDIT_SAMPLE) must be at least 1, not %v and %d", o.AuditEvery, o.AuditSample)
	}
	if o.ReadyGrace < 0 {
		return fmt.Errorf("--ready-grace-secs (FLUSSO_READY_GRACE_SECS) must not be negative, not %v", o.ReadyGrace)
	}
	return nil
}

// roles are the roles this process runs: those named, else every one.
func (o Options) roles() []Role {
	if len(o.Roles) == 0 {
		return []Role{Capture, Assembler, Writer}
	}
	return o.Roles
}

// writes reports whether this process's writers write to sink name.
func (o Options) writes(name string) bool {
	return len(o.Sinks) == 0 || slices.Contains(o.Sinks, name)
}

// readyGrace is ReadyGrace, or its default.
func (o Options) readyGrace() time.Duration {
	if o.ReadyGrace == 0 {
		return DefaultReadyGrace
	}
	return o.ReadyGrace
}

// natsOptions turns the credential and TLS settings into client options.
func (o Options) natsOptions() ([]nats.Option, error) {
	var out []nats.Option
	if o.NATSCreds != "" {
		out = append(out, nats.UserCredentials(o.NATSCreds))
	}
	if o.NATSNKey != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NATSNKey)
		if err != nil {
			return nil, fmt.Errorf("reading the NATS nkey seed %s: %w", o.NATSNKey, err)
		}
		out = append(out, opt)
	}
	if o.NATSCA != "" {
		out = append(out, nats.RootCAs(o.NATSCA))
	}
	if (o.NATSCert == "") != (o.NATSKey == "") {
		return nil, fmt.Errorf("a NATS client certificate needs both --nats-tls-cert and --nats-tls-key")
	}
	if o.NATSCert != "" {
		out = append(out, nats.ClientCert(o.NATSCert, o.NATSKey))
	}
	return out, nil
}

// ListenCredentialsFile is the file in the data directory that keeps the
// generated credentials of the embedded NATS listener.
const ListenCredentialsFile = "nats-listen.env"

// connectBroker connects to the external NATS, or starts the embedded one
// in DataDir and connects in process. The returned func closes both.
func (o Options) connectBroker(ctx context.Context, log *slog.Logger) (*broker.Conn, func(), error) {
	if o.NATSURL != "" {
		natsOpts, err := o.natsOptions()
		if err != nil {
			return nil, nil, err
		}
		bc, err := broker.Connect(ctx, o.NATSURL, "flusso", natsOpts...)
		if err != nil {
			return nil, nil, err
		}
		return bc, bc.Close, nil
	}
	ln, from, err := o.listener()
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(o.DataDir, "nats")
	emb, err := broker.StartEmbedded(dir, ln)
	if err != nil {
		return nil, nil, err
	}
	log.Info("embedded NATS JetStream started", "data", dir)
	if ln != nil {
		// Where the credentials are, never what they are.
		log.Info("embedded NATS listening for TCP clients such as the nats CLI",
			"address", emb.Addr().String(), "user", ln.User, "credentials", from)
	}
	bc, err := emb.Connect(ctx, "flusso")
	if err != nil {
		emb.Close()
		return nil, nil, err
	}
	return bc, func() { bc.Close(); emb.Close() }, nil
}

// listener is the embedded server's TCP listener, nil when none was asked
// for, and where its credentials come from.
func (o Options) listener() (*broker.Listener, string, error) {
	switch {
	case o.NATSListen == "":
		return nil, "", nil
	case o.NATSListenUser != "" && o.NATSListenPassword != "":
		return &broker.Listener{Addr: o.NATSListen, User: o.NATSListenUser, Password: o.NATSListenPassword},
			"--nats-listen-user and --nats-listen-password", nil
	case o.NATSListenUser != "" || o.NATSListenPassword != "":
		return nil, "", errors.New("--nats-listen-user and --nats-listen-password go together: give both, or neither to use generated credentials")
	}
	path := filepath.Join(o.DataDir, ListenCredentialsFile)
	user, password, err := broker.ListenerCredentials(path)
	if err != nil {
		return nil, "", err
	}
	return &broker.Listener{Addr: o.NATSListen, User: user, Password: password}, path, nil
}
