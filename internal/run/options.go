// Package run starts the pipeline stages of one flusso process: all of them
// around an embedded NATS server (the default), or the chosen roles against
// an external NATS.
package run

import (
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
	// Roles to run; empty runs every role. Sinks restricts writers to these
	// sink names (empty: every sink).
	Roles []Role
	Sinks []string

	// Version is the build's version, stamped on stdout envelopes.
	Version string
}
