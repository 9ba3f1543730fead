// Package run starts the pipeline stages of one flusso process: all of them
// around an embedded NATS server (the default), or the chosen roles against
// an external NATS.
package run

import (
	"fmt"

	"github.com/nats-io/nats.go"

	"time"

	"github.com/flusso/flusso/pkg/broker"
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
	// Quarantine bounds the quarantine stream.
	Quarantine broker.QuarantineLimits

	// Version is the build's version, stamped on stdout envelopes.
	Version string
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
