package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/internal/run"
	"github.com/flusso/flusso/pkg/audit"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/flow"
)

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "prove that each index equals what Postgres builds, and repair what drifted",
		Description: "Builds the selected documents with the pipeline's builder inside one Postgres snapshot,\n" +
			"reads the same ids from each sink that can be read back (OpenSearch; stdout sinks are\n" +
			"skipped) and compares their content. Documents that differ are checked again once the\n" +
			"pipeline confirmed its slot (--slot) past a fresh snapshot, so changes on their way are\n" +
			"not reported; a running pipeline that does not get there within --settle-secs fails the\n" +
			"audit. Exit 0: no drift; 1: drift; 2: the audit could not be done.\n\n" +
			"--repair asks the pipeline to rebuild every drifted document from the current data, as\n" +
			"BACKFILL changes on its changes stream (extras become deletes): it never writes to a\n" +
			"sink itself. With --nats-url it reaches a distributed deployment while it runs. The\n" +
			"embedded NATS of a single-process pipeline is reachable only from inside it: run that\n" +
			"pipeline with --nats-listen and pass --nats-url nats://USER:PASSWORD@ADDR (credentials in\n" +
			"<data-dir>/" + run.ListenCredentialsFile + "), or stop it and point --data-dir at its data\n" +
			"directory; the rebuilds then happen when it next runs. Audit again to see 0.",
		OnUsageError: usageError,
		Flags: append([]cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "lock", Usage: "the lock `FILE` to audit without --config", EnvVars: []string{"FLUSSO_LOCK"}, Value: defaultLock},
			&cli.StringSliceFlag{Name: "index", Usage: "`NAME` of an index to audit; repeatable (default: every enabled index)", EnvVars: []string{"FLUSSO_AUDIT_INDEX"}},
			&cli.BoolFlag{Name: "all", Usage: "compare every document (the default)", EnvVars: []string{"FLUSSO_AUDIT_ALL"}},
			&cli.IntFlag{Name: "sample", Usage: "compare `N` root keys picked at random, and N ids picked at random from each sink", EnvVars: []string{"FLUSSO_AUDIT_SAMPLE_SIZE"}},
			&cli.StringFlag{Name: "keys", Usage: "compare the ids in `FILE`, one per line (# comments and blank lines skipped)", EnvVars: []string{"FLUSSO_AUDIT_KEYS"}},
			&cli.StringFlag{Name: "format", Usage: "output `FORMAT`: text or json", EnvVars: []string{"FLUSSO_FORMAT"}, Value: "text"},
			&cli.IntFlag{Name: "max-report", Usage: "show the first `K` drifted documents of each index, with their differing fields", EnvVars: []string{"FLUSSO_AUDIT_MAX_REPORT"}, Value: 10},
			&cli.BoolFlag{Name: "repair", Usage: "ask the pipeline to rebuild every drifted document", EnvVars: []string{"FLUSSO_AUDIT_REPAIR"}},
			&cli.StringFlag{Name: "slot", Usage: "the pipeline's replication slot `NAME`", EnvVars: []string{"FLUSSO_SLOT"}, Value: "flusso"},
			&cli.StringFlag{Name: "index-prefix", Usage: "`PREFIX` of every index name flusso owns (default: the config's prefix)", EnvVars: []string{"FLUSSO_INDEX_PREFIX"}},
			&cli.IntFlag{Name: "settle-secs", Usage: "`SECS` to wait for a running pipeline to confirm past the audit's snapshot", EnvVars: []string{"FLUSSO_AUDIT_SETTLE_SECS"}, Value: 120},
		}, brokerFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			acfg, err := auditConfig(c)
			if err != nil {
				return err
			}
			defer closeTargets(acfg.Targets)
			rep, err := audit.Run(c.Context, acfg)
			if err != nil {
				return err
			}
			if err := printAudit(c, rep); err != nil {
				return err
			}
			if c.Bool("repair") && rep.Drifted() {
				if err := repair(c, acfg.DatabaseURL, rep); err != nil {
					return err
				}
			}
			if rep.Drifted() {
				return fail(errors.New("the indexes drifted from Postgres (see the report)"))
			}
			for _, ir := range rep.Indexes {
				if ir.Seeding {
					return fmt.Errorf("index %s in sink %s is not seeded yet (a backfill is filling it): nothing to prove until it is done", ir.Index, ir.Sink)
				}
			}
			return nil
		},
	}
}

// auditConfig reads the flags, the config and the sinks into an audit.
func auditConfig(c *cli.Context) (audit.Config, error) {
	var acfg audit.Config
	cfg, err := auditedConfig(c)
	if err != nil {
		return acfg, err
	}
	if f := c.String("format"); f != "text" && f != "json" {
		return acfg, fmt.Errorf("--format must be text or json, not %q", f)
	}
	modes := 0
	for _, f := range []string{"all", "sample", "keys"} {
		if c.IsSet(f) {
			modes++
		}
	}
	switch {
	case modes > 1:
		return acfg, errors.New("--all, --sample and --keys choose what to compare: give one of them")
	case c.IsSet("sample") && c.Int("sample") < 1:
		return acfg, fmt.Errorf("--sample must be at least 1, not %d", c.Int("sample"))
	case c.Int("max-report") < 0:
		return acfg, fmt.Errorf("--max-report must not be negative, not %d", c.Int("max-report"))
	case c.Int("settle-secs") < 1:
		return acfg, fmt.Errorf("--settle-secs must be at least 1, not %d", c.Int("settle-secs"))
	}
	prefix := cfg.Prefix
	if c.IsSet("index-prefix") {
		prefix = c.String("index-prefix")
	}
	if err := cfg.CheckPrefix(prefix); err != nil {
		return acfg, fmt.Errorf("--index-prefix: %w", err)
	}
	indexes, err := auditedIndexes(cfg, c.StringSlice("index"))
	if err != nil {
		return acfg, err
	}
	if path := c.String("keys"); path != "" {
		if acfg.Select.Keys, err = readKeys(path); err != nil {
			return acfg, err
		}
	}
	acfg.Select.Sample = c.Int("sample")
	acfg.DatabaseURL, _, err = cfg.Source.ConnString(os.LookupEnv)
	if err != nil {
		return acfg, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	acfg.Slot = c.String("slot")
	acfg.MaxReport = c.Int("max-report")
	acfg.Settle = time.Duration(c.Int("settle-secs")) * time.Second
	acfg.Progress = progressBar(c.App.ErrWriter)
	for _, sc := range cfg.Sinks {
		var reader audit.Reader
		if sc.Type == config.OpenSearch {
			s, err := run.OpenSearch(sc, cfg.Path, prefix, os.LookupEnv, nil)
			if err != nil {
				closeTargets(acfg.Targets)
				return acfg, err
			}
			reader = s
		}
		for _, ix := range indexes {
			acfg.Targets = append(acfg.Targets, audit.Target{Index: ix, Sink: reader, SinkName: sc.Name})
		}
	}
	return acfg, nil
}

// auditedConfig reads --config when given, else the lock; it writes nothing.
func auditedConfig(c *cli.Context) (*config.Config, error) {
	if c.IsSet("config") {
		return config.Load(c.String("config"))
	}
	lock := c.String("lock")
	cfg, err := config.ReadLock(lock)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no lock at %s: build one with flusso build, or audit a config with --config %s", lock, defaultConfig)
	}
	return cfg, err
}

// auditedIndexes are the enabled indexes named (all without names).
func auditedIndexes(cfg *config.Config, names []string) ([]flow.Index, error) {
	var enabled []string
	var out []flow.Index
	for _, ix := range cfg.Indexes {
		if !ix.Enabled {
			continue
		}
		enabled = append(enabled, ix.Name)
		if len(names) == 0 || slices.Contains(names, ix.Name) {
			out = append(out, flow.New(ix.Name, ix.Schema, ix.OnError))
		}
	}
	for _, n := range names {
		if !slices.Contains(enabled, n) {
			return nil, fmt.Errorf("--index %q: no enabled index of that name in %s (enabled: %s)", n, cfg.Path, strings.Join(enabled, ", "))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no enabled [[index]] to audit", cfg.Path)
	}
	return out, nil
}

// readKeys reads a keys file: one id per line, blank lines and # comments
// skipped.
func readKeys(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--keys: %w", err)
	}
	defer f.Close()
	var keys []string
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		k := strings.TrimSpace(sc.Text())
		if k == "" || strings.HasPrefix(k, "#") {
			continue
		}
		if strings.ContainsAny(k, "\x00") {
			return nil, fmt.Errorf("--keys %s:%d: a key cannot hold a NUL byte", path, line)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--keys %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("--keys %s: no keys in the file (one per line)", path)
	}
	return keys, nil
}

func closeTargets(targets []audit.Target) {
	seen := map[audit.Reader]bool{}
	for _, t := range targets {
		if t.Sink == nil || seen[t.Sink] {
			continue
		}
		seen[t.Sink] = true
		if cl, ok := t.Sink.(io.Closer); ok {
			cl.Close()
		}
	}
}

// printAudit writes the report in the chosen format.
func printAudit(c *cli.Context, rep *audit.Report) error {
	if c.String("format") == "json" {
		b, err := rep.Marshal()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.App.Writer, "%s\n", b)
		return err
	}
	return rep.WriteText(c.App.Writer)
}

// repair sends the drifted documents through the pipeline (audit.Repair)
// over the deployment's NATS.
func repair(c *cli.Context, dsn string, rep *audit.Report) error {
	err := withBroker(c, "flusso audit", func(ctx context.Context, conn *broker.Conn) error {
		res, err := audit.Repair(ctx, dsn, conn, rep)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "repair: asked the pipeline to rebuild %d documents (version %s); audit again once it caught up\n", res.Documents, res.Version)
		return nil
	})
	// A broker that cannot be reached is an error of the audit (exit 2),
	// not a finding.
	if f := (*failure)(nil); errors.As(err, &f) {
		return f.err
	}
	return err
}

// progressBar draws the audit's progress in place on w when it is a
// terminal (the audit logs it too, every 10 s).
func progressBar(w io.Writer) func(audit.Progress) {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	var drawn time.Time
	return func(p audit.Progress) {
		if p.Final {
			fmt.Fprint(w, "\r\x1b[K")
			return
		}
		if time.Since(drawn) < 200*time.Millisecond {
			return
		}
		drawn = time.Now()
		total := "?"
		if p.Total > 0 {
			total = fmt.Sprint(p.Total)
		}
		fmt.Fprintf(w, "\r\x1b[Kaudit %s/%s: %d of %s, %.0f/s, eta %s\r", p.Index, p.Sink, p.Done, total, p.Rate(), p.ETA().Round(time.Second))
	}
}
