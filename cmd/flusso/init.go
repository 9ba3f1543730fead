package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/redact"
	"github.com/flusso/flusso/pkg/scaffold"
	"github.com/flusso/flusso/pkg/schema"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write a starting index schema for a table, following its foreign keys",
		Description: "Reads the source database's catalog in a read-only transaction and writes a schema with every column " +
			"of --table as a field of the kind `flusso check` accepts for its type, and, --depth levels deep, a join " +
			"for every foreign key from or to it (many_to_many through junction tables). `flusso design` starts from the same schema.",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{
				Name:     "table",
				Usage:    "the root `TABLE` of the index",
				EnvVars:  []string{"FLUSSO_INIT_TABLE"},
				Required: true,
			},
			&cli.StringFlag{
				Name:    "schema",
				Usage:   "the Postgres `SCHEMA` of the table",
				EnvVars: []string{"FLUSSO_INIT_SCHEMA"},
				Value:   "public",
			},
			&cli.IntFlag{
				Name:    "depth",
				Usage:   "how many `LEVELS` of foreign keys to follow (0: the table's columns only)",
				EnvVars: []string{"FLUSSO_INIT_DEPTH"},
				Value:   1,
			},
			&cli.StringFlag{
				Name:    "out",
				Aliases: []string{"o"},
				Usage:   "the schema `FILE` to write, - for stdout (default: schemas/<table>.schema.yml beside the config)",
				EnvVars: []string{"FLUSSO_INIT_OUT"},
			},
			&cli.BoolFlag{
				Name:    "force",
				Usage:   "overwrite an existing schema file",
				EnvVars: []string{"FLUSSO_INIT_FORCE"},
			},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if c.Int("depth") < 0 || c.Int("depth") > 8 {
				return fmt.Errorf("--depth (FLUSSO_INIT_DEPTH) must be between 0 and 8, not %d", c.Int("depth"))
			}
			table, err := schema.NormalizeIdent(c.String("table"))
			if err != nil {
				return fmt.Errorf("--table (FLUSSO_INIT_TABLE): %w", err)
			}
			pgSchema, err := schema.NormalizeIdent(c.String("schema"))
			if err != nil {
				return fmt.Errorf("--schema (FLUSSO_INIT_SCHEMA): %w", err)
			}
			cfg, err := config.Load(c.String("config"))
			if err != nil {
				return err
			}
			out := c.String("out")
			if out == "" {
				out = filepath.Join(filepath.Dir(cfg.Path), "schemas", table+".schema.yml")
			}
			if out != "-" && !c.Bool("force") {
				if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("%s exists: pass --force to overwrite it, or --out another file", out)
				}
			}
			pool, err := connectSource(c.Context, cfg)
			if err != nil {
				return err
			}
			defer pool.Close()
			cat, err := scaffold.Read(c.Context, pool)
			if err != nil {
				return fail(err)
			}
			t, err := cat.Find(pgSchema, table)
			if err != nil {
				return fmt.Errorf("--table (FLUSSO_INIT_TABLE): %w", err)
			}
			doc, err := cat.Index(t, c.Int("depth"))
			if err != nil {
				return err
			}
			text, err := scaffold.Marshal(doc)
			if err != nil {
				return fail(err)
			}
			if out == "-" {
				_, err = c.App.Writer.Write(text)
				return fail(err)
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return fail(fmt.Errorf("writing the schema: %w", err))
			}
			if err := os.WriteFile(out, text, 0o644); err != nil {
				return fail(fmt.Errorf("writing the schema: %w", err))
			}
			rel, err := filepath.Rel(filepath.Dir(cfg.Path), out)
			if err != nil {
				rel = out
			}
			fmt.Fprintf(c.App.Writer, "wrote %s\nadd it to %s:\n\n[[index]]\nname = %q\nschema = %q\nenabled = true\n",
				out, cfg.Path, table, filepath.ToSlash(rel))
			return nil
		},
	}
}

// connectSource opens a pool on the config's source database, with the
// environment's overrides; the pool connects lazily, so it is pinged here
// to report an unreachable database at once.
func connectSource(ctx context.Context, cfg *config.Config) (*pgxpool.Pool, error) {
	url, overrides, err := cfg.Source.ConnString(os.LookupEnv)
	if err != nil {
		return nil, err
	}
	for _, o := range overrides {
		slog.Info(o.String())
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", redact.String(url), err)
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fail(fmt.Errorf("connecting to %s: %w", redact.String(url), err))
	}
	return pool, nil
}
