// Package run starts the pipeline stages of one flusso process: all of them
// around an embedded NATS server (the default), or the chosen roles against
// an external NATS.
package run

import (
	"fmt"
	"regexp"

	"github.com/nats-io/nats.go"

	"time"

	"github.com/flusso/flusso/pkg/config"
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

	// NATSURL selects an external NATS; empty starts the embedded server
	// with its data in DataDir.
	NATSURL string
	DataDir string
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

	// Version is the build's version, stamped on stdout envelopes.
	Version string

	// ReadyGrace is how long a stage may stay degraded before /readyz
	// answers 503; zero is DefaultReadyGrace.
	ReadyGrace time.Duration
}

// DefaultReadyGrace is how long a stage may stay degraded before /readyz
// answers 503: long enough to ride out a restart of a service it uses.
const DefaultReadyGrace = 60 * time.Second

var (
	// slotRE is what Postgres accepts as a replication slot name.
	slotRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	// publicationRE is an unquoted identifier in lower case: the replication
	// protocol reads publication_names folding case, so "Pub" would name
	// another publication than the one created.
	publicationRE = regexp.MustCompile(`^[a-z_][a-z0-9_$]{0,62}$`)
)

// Validate refuses what Postgres would, before anything connects: a bad
// slot name otherwise fails every attempt to follow the slot, forever. The
// CLI calls it on its flags; Start calls it again for every other caller.
func (o Options) Validate() error {
	if !slotRE.MatchString(o.Slot) {
		return fmt.Errorf("--slot (FLUSSO_SLOT) %q: a replication slot name is 1 to 63 lowercase letters, digits and underscores", o.Slot)
	}
	if !publicationRE.MatchString(o.Publication) {
		return fmt.Errorf("--publication (FLUSSO_PUBLICATION) %q: a publication name is an unquoted Postgres identifier: a lowercase letter or underscore, "+
			"then up to 62 lowercase letters, digits, underscores or $", o.Publication)
	}
	if o.ReadyGrace < 0 {
		return fmt.Errorf("--ready-grace-secs (FLUSSO_READY_GRACE_SECS) must not be negative, not %v", o.ReadyGrace)
	}
	return nil
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
