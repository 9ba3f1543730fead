package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/internal/run"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
)

// Defaults of the control surface credentials.
const (
	defaultAdminUser     = "admin"
	defaultAdminPassword = "flusso"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the pipeline: capture, assemblers and writers",
		Description: "With --config (or FLUSSO_CONFIG) run builds that config, runs it and refreshes the\n" +
			"lock like flusso build, logging it; without one it runs the lock and never reads a\n" +
			"flusso.toml. --locked runs the lock and refuses to start when it is missing or stale:\n" +
			"when a config is given and building it would not write the same lock byte for byte.\n\n" +
			"With no --nats-url an embedded NATS server keeps its data in --data-dir and every role\n" +
			"runs in this process; with one, --role picks the stages this process runs. The embedded\n" +
			"NATS takes no connection from outside the process unless --nats-listen opens it to the\n" +
			"nats CLI; then it admits only --nats-listen-user, or the user and password generated\n" +
			"into <data-dir>/" + run.ListenCredentialsFile + " (readable by its owner only):\n\n" +
			"  nats stream info FLUSSO_CHANGES --server nats://127.0.0.1:4222 --user flusso --password …",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "lock", Usage: "the lock `FILE` to run without --config, refreshed when --config is built", EnvVars: []string{"FLUSSO_LOCK"}, Value: defaultLock},
			&cli.BoolFlag{Name: "locked", Usage: "run the lock as is; fail if it is missing or stale", EnvVars: []string{"FLUSSO_LOCKED"}},
			&cli.StringFlag{Name: "slot", Usage: "logical replication slot `NAME`", EnvVars: []string{"FLUSSO_SLOT"}, Value: "flusso"},
			publicationFlag(),
			managePublicationFlag(),
			&cli.BoolFlag{Name: "skip-backfill", Usage: "follow live changes only, without seeding indexes", EnvVars: []string{"FLUSSO_SKIP_BACKFILL"}},
			&cli.BoolFlag{Name: "pretty", Usage: "stdout sinks print indented JSON", EnvVars: []string{"FLUSSO_PRETTY"}},
			&cli.IntFlag{Name: "queue-capacity", Usage: "documents in flight per writer (two bulk requests of the default batch_size)", EnvVars: []string{"FLUSSO_QUEUE_CAPACITY"}, Value: 2000},
			&cli.StringFlag{Name: "public-address", Usage: "`HOST:PORT` of the read-only HTTP surface (default: [server].public_address, then " + config.DefaultPublicAddress + ")", EnvVars: []string{"FLUSSO_PUBLIC_ADDRESS"}},
			&cli.StringFlag{Name: "private-address", Usage: "`HOST:PORT` of the control HTTP surface (default: [server].private_address, then " + config.DefaultPrivateAddress + ")", EnvVars: []string{"FLUSSO_PRIVATE_ADDRESS"}},
			adminUserFlag(),
			adminPasswordFlag(),
			&cli.IntFlag{Name: "lag-poll-secs", Usage: "seconds between replication lag samples", EnvVars: []string{"FLUSSO_LAG_POLL_SECS"}, Value: 15},
			&cli.IntFlag{Name: "ready-grace-secs", Usage: "seconds a stage may stay degraded before /readyz answers 503", EnvVars: []string{"FLUSSO_READY_GRACE_SECS"}, DefaultText: fmt.Sprint(int(run.DefaultReadyGrace / time.Second))},
			&cli.StringFlag{Name: "index-prefix", Usage: "`PREFIX` of every index name flusso owns (default: the config's prefix)", EnvVars: []string{"FLUSSO_INDEX_PREFIX"}},
			&cli.StringFlag{Name: "nats-url", Usage: "external NATS `URL`, or the comma-separated URLs of a cluster's servers; empty runs an embedded server", EnvVars: []string{"FLUSSO_NATS_URL"}},
			&cli.IntFlag{Name: "nats-replicas", Usage: "`N` copies of every stream and bucket on the NATS cluster (3 recommended: any one server may be lost); changing it updates the existing streams", EnvVars: []string{"FLUSSO_NATS_REPLICAS"}, Value: broker.DefaultReplicas},
			&cli.StringSliceFlag{Name: "nats-placement-tags", Usage: "`TAG` every replica's NATS server must carry (server_tags); repeatable or comma-separated", EnvVars: []string{"FLUSSO_NATS_PLACEMENT_TAGS"}},
			&cli.StringFlag{Name: "data-dir", Usage: "`DIR` of the embedded NATS server's data", EnvVars: []string{"FLUSSO_DATA_DIR"}, Value: ".flusso"},
			&cli.StringFlag{Name: "nats-listen", Usage: "open the embedded NATS to TCP clients such as the nats CLI on `HOST:PORT`, behind a user and password (default: reachable from this process only)", EnvVars: []string{"FLUSSO_NATS_LISTEN"}},
			&cli.StringFlag{Name: "nats-listen-user", Usage: "`USER` admitted by --nats-listen (default: the one in <data-dir>/" + run.ListenCredentialsFile + ", made at first use)", EnvVars: []string{"FLUSSO_NATS_LISTEN_USER"}},
			&cli.StringFlag{Name: "nats-listen-password", Usage: "`PASSWORD` of --nats-listen-user", EnvVars: []string{"FLUSSO_NATS_LISTEN_PASSWORD"}},
			&cli.StringFlag{Name: "nats-creds", Usage: "NATS credentials `FILE` (JWT and nkey) for --nats-url", EnvVars: []string{"FLUSSO_NATS_CREDS"}},
			&cli.StringFlag{Name: "nats-nkey", Usage: "NATS nkey seed `FILE` for --nats-url", EnvVars: []string{"FLUSSO_NATS_NKEY"}},
			&cli.StringFlag{Name: "nats-tls-ca", Usage: "CA certificate `FILE` that signs the NATS server's certificate", EnvVars: []string{"FLUSSO_NATS_TLS_CA"}},
			&cli.StringFlag{Name: "nats-tls-cert", Usage: "client certificate `FILE` for NATS mutual TLS", EnvVars: []string{"FLUSSO_NATS_TLS_CERT"}},
			&cli.StringFlag{Name: "nats-tls-key", Usage: "client key `FILE` for NATS mutual TLS", EnvVars: []string{"FLUSSO_NATS_TLS_KEY"}},
			&cli.StringSliceFlag{Name: "role", Usage: "`ROLE` to run: capture, assembler or writer; repeatable (default: all)", EnvVars: []string{"FLUSSO_ROLE"}},
			&cli.StringSliceFlag{Name: "sink", Usage: "`NAME` of a sink this process writes; repeatable (default: all)", EnvVars: []string{"FLUSSO_SINK"}},
			&cli.Int64Flag{Name: "quarantine-max-bytes", Usage: "`BYTES` the quarantine stream keeps; past that its oldest entries go", EnvVars: []string{"FLUSSO_QUARANTINE_MAX_BYTES"}, Value: broker.DefaultQuarantineMaxBytes},
			&cli.DurationFlag{Name: "audit-every", Usage: "audit a sample of each index this often (e.g. 1h; default: never): flusso_audit_drift_documents and /status show the drift", EnvVars: []string{"FLUSSO_AUDIT_EVERY"}},
			&cli.IntFlag{Name: "audit-sample", Usage: "documents of each index one continuous audit compares", EnvVars: []string{"FLUSSO_AUDIT_SAMPLE"}, Value: 1000},
			&cli.DurationFlag{Name: "quarantine-max-age", Usage: "how long the quarantine stream keeps an entry (e.g. 720h)", EnvVars: []string{"FLUSSO_QUARANTINE_MAX_AGE"}, Value: broker.DefaultQuarantineMaxAge},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cfg, err := runConfig(c)
			if err != nil {
				return err
			}
			opts, err := runOptions(c, cfg)
			if err != nil {
				return err
			}
			return fail(startPipeline(c.Context, opts))
		},
	}
}

// startPipeline is run.Run; tests replace it to see the options a command
// line gives without starting anything.
var startPipeline = run.Run

func adminUserFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "admin-user", Usage: "Basic auth `USER` of the control surface", EnvVars: []string{"FLUSSO_ADMIN_USER"}, Value: defaultAdminUser}
}

func adminPasswordFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "admin-password", Usage: "Basic auth `PASSWORD` of the control surface; change it before exposing the surface", EnvVars: []string{"FLUSSO_ADMIN_PASSWORD"}, Value: defaultAdminPassword}
}

// runConfig decides what run runs. A config given explicitly (--config or
// FLUSSO_CONFIG) is built and run; without one the lock is run, whatever
// files the working directory holds. With --locked the lock must exist and,
// when a config is given, be exactly what building it would write.
// Otherwise a config that differs from the lock refreshes it, in a log line
// (a lock that cannot be written is a warning, not fatal: the run does not
// need it).
func runConfig(c *cli.Context) (*config.Config, error) {
	lock := c.String("lock")
	if !c.IsSet("config") {
		cfg, err := config.ReadLock(lock)
		switch {
		case c.Bool("locked") && err != nil:
			return nil, fmt.Errorf("--locked: %w", err)
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("no lock at %s: build one with flusso build, or run a config with --config %s", lock, defaultConfig)
		}
		return cfg, err
	}

	path := c.String("config")
	fresh, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if c.Bool("locked") {
		locked, err := config.ReadLock(lock)
		if err != nil {
			return nil, fmt.Errorf("--locked: %w", err)
		}
		if err := config.CheckLock(lock, fresh); err != nil {
			return nil, fmt.Errorf("--locked: %w; rebuild it with flusso build -c %s -o %s", err, path, lock)
		}
		return locked, nil
	}
	refreshLock(lock, path, fresh)
	return fresh, nil
}

// refreshLock writes the lock of cfg unless the lock already holds it, and
// logs what it did.
func refreshLock(lock, path string, cfg *config.Config) {
	stale := config.CheckLock(lock, cfg)
	if stale == nil {
		return
	}
	if err := config.WriteLock(lock, cfg); err != nil {
		slog.Warn("running without refreshing the lock", "config", path, "error", err)
		return
	}
	was := "stale"
	if errors.Is(stale, fs.ErrNotExist) {
		was = "missing"
	}
	slog.Info("wrote the lock from the config", "lock", lock, "config", path, "lock_was", was)
}

// runOptions fills the run options from the flags (a flag wins over its
// FLUSSO_* variable, which urfave/cli applies), then the config, then the
// defaults.
func runOptions(c *cli.Context, cfg *config.Config) (run.Options, error) {
	opts := run.Options{
		Config:             cfg,
		Slot:               c.String("slot"),
		Publication:        c.String("publication"),
		ManagePublication:  cfg.Source.ManagePublication,
		SkipBackfill:       c.Bool("skip-backfill"),
		Pretty:             c.Bool("pretty"),
		QueueCapacity:      c.Int("queue-capacity"),
		PublicAddress:      cfg.Server.PublicAddress,
		PrivateAddress:     cfg.Server.PrivateAddress,
		AdminUser:          c.String("admin-user"),
		AdminPassword:      c.String("admin-password"),
		LagPoll:            time.Duration(c.Int("lag-poll-secs")) * time.Second,
		ReadyGrace:         time.Duration(c.Int("ready-grace-secs")) * time.Second,
		IndexPrefix:        cfg.Prefix,
		NATSURL:            c.String("nats-url"),
		DataDir:            c.String("data-dir"),
		NATSListen:         c.String("nats-listen"),
		NATSListenUser:     c.String("nats-listen-user"),
		NATSListenPassword: c.String("nats-listen-password"),
		NATSCreds:          c.String("nats-creds"),
		NATSNKey:           c.String("nats-nkey"),
		NATSCA:             c.String("nats-tls-ca"),
		NATSCert:           c.String("nats-tls-cert"),
		NATSKey:            c.String("nats-tls-key"),
		Sinks:              c.StringSlice("sink"),
		Quarantine:         broker.QuarantineLimits{MaxBytes: c.Int64("quarantine-max-bytes"), MaxAge: c.Duration("quarantine-max-age")},
		Placement:          broker.Placement{Replicas: c.Int("nats-replicas"), Tags: c.StringSlice("nats-placement-tags")},
		Version:            c.App.Version,
		AuditEvery:         c.Duration("audit-every"),
		AuditSample:        c.Int("audit-sample"),
	}
	if c.IsSet("manage-publication") {
		opts.ManagePublication = c.Generic("manage-publication").(*boolValue).v
	}
	if c.IsSet("public-address") {
		opts.PublicAddress = c.String("public-address")
	}
	if c.IsSet("private-address") {
		opts.PrivateAddress = c.String("private-address")
	}
	if c.IsSet("index-prefix") {
		opts.IndexPrefix = c.String("index-prefix")
	}

	for _, a := range []struct{ flag, addr string }{{"public-address", opts.PublicAddress}, {"private-address", opts.PrivateAddress}} {
		if err := config.ValidateAddress(a.addr); err != nil {
			return opts, fmt.Errorf("--%s: %w", a.flag, err)
		}
	}
	if opts.NATSListen != "" {
		if opts.NATSURL != "" {
			return opts, errors.New("--nats-listen opens the embedded NATS, which --nats-url replaces: give one of them")
		}
		if err := config.ValidateAddress(opts.NATSListen); err != nil {
			return opts, fmt.Errorf("--nats-listen: %w", err)
		}
	}
	if r := opts.Placement.Replicas; r < 1 || r > broker.MaxReplicas {
		return opts, fmt.Errorf("--nats-replicas (FLUSSO_NATS_REPLICAS) must be 1 to %d, not %d", broker.MaxReplicas, r)
	}
	if slices.ContainsFunc(opts.Placement.Tags, func(t string) bool { return strings.TrimSpace(t) == "" }) {
		return opts, fmt.Errorf("--nats-placement-tags (FLUSSO_NATS_PLACEMENT_TAGS) %q: a tag must not be empty", strings.Join(opts.Placement.Tags, ","))
	}
	if opts.NATSURL == "" && (opts.Placement.Replicas > 1 || len(opts.Placement.Tags) > 0) {
		return opts, errors.New("--nats-replicas above 1 and --nats-placement-tags need a NATS cluster (--nats-url): the embedded NATS is one server")
	}
	if err := cfg.CheckPrefix(opts.IndexPrefix); err != nil {
		return opts, fmt.Errorf("--index-prefix: %w", err)
	}
	if err := opts.Validate(); err != nil {
		return opts, err
	}
	switch {
	case opts.QueueCapacity < 1:
		return opts, fmt.Errorf("--queue-capacity must be at least 1, not %d", opts.QueueCapacity)
	case opts.LagPoll < time.Second:
		return opts, fmt.Errorf("--lag-poll-secs must be at least 1, not %d", c.Int("lag-poll-secs"))
	case opts.Quarantine.MaxBytes < 1 || opts.Quarantine.MaxAge <= 0:
		return opts, errors.New("--quarantine-max-bytes and --quarantine-max-age must be positive")
	}
	for _, r := range c.StringSlice("role") {
		role := run.Role(r)
		if role != run.Capture && role != run.Assembler && role != run.Writer {
			return opts, fmt.Errorf("--role %q: must be capture, assembler or writer", r)
		}
		if !slices.Contains(opts.Roles, role) {
			opts.Roles = append(opts.Roles, role)
		}
	}
	for _, s := range opts.Sinks {
		if !slices.ContainsFunc(cfg.Sinks, func(k config.Sink) bool { return k.Name == s }) {
			return opts, fmt.Errorf("--sink %q: no such sink in %s", s, cfg.Path)
		}
	}
	return opts, nil
}
