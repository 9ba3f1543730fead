package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/pkg/check"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/redact"
)

// connectTimeout bounds reaching the database for an online check.
const connectTimeout = 30 * time.Second

// checkDatabase is the online part of check: the schemas against the live
// database. A database that disagrees is a failure (exit 1); warnings alone
// pass.
func checkDatabase(c *cli.Context, cfg *config.Config, publication string, manage bool) error {
	url, overrides, err := cfg.Source.ConnString(os.LookupEnv)
	if err != nil {
		return err
	}
	for _, o := range overrides {
		slog.Info(o.String())
	}
	ctx, cancel := context.WithTimeout(c.Context, connectTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fail(fmt.Errorf("connecting to %s: %w", redact.String(url), err))
	}
	defer conn.Close(context.WithoutCancel(ctx))

	r, err := check.Run(c.Context, conn, cfg.Indexes, check.Options{Publication: publication, ManagePublication: manage})
	if err != nil {
		return fail(err)
	}
	if c.String("format") == "json" {
		err = writeJSON(c.App.Writer, r)
	} else {
		fmt.Fprintf(c.App.Writer, "%s: valid\ndatabase %s:\n", cfg.Path, redact.String(url))
		err = r.Print(c.App.Writer)
	}
	if err != nil {
		return fail(err)
	}
	if !r.OK() {
		return fail(fmt.Errorf("the database does not match the schemas: %d error(s)", r.Errors))
	}
	return nil
}
