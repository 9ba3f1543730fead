package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/internal/design"
	"github.com/flusso/flusso/pkg/config"
)

const defaultDesignAddress = "127.0.0.1:7700"

func designCommand() *cli.Command {
	return &cli.Command{
		Name:  "design",
		Usage: "serve a web app to compose index schemas from the live database, with their documents",
		Description: "Browse the source database's tables and keys, compose an index by following foreign keys, " +
			"see the YAML, the mapping, the index name and real documents built as `flusso run` builds them, " +
			"and save the schema file and its [[index]] entry. It reads the database in read-only transactions and " +
			"never writes to it. It listens on loopback unless --address says otherwise, and refuses writes from other origins.",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{
				Name:    "address",
				Usage:   "the `HOST:PORT` to serve the designer on",
				EnvVars: []string{"FLUSSO_DESIGN_ADDRESS"},
				Value:   defaultDesignAddress,
			},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			addr := c.String("address")
			if err := config.ValidateAddress(addr); err != nil {
				return fmt.Errorf("--address (FLUSSO_DESIGN_ADDRESS): %w", err)
			}
			cfg, err := config.Load(c.String("config"))
			if err != nil {
				return err
			}
			pool, err := connectSource(c.Context, cfg)
			if err != nil {
				return err
			}
			defer pool.Close()

			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fail(fmt.Errorf("listening on %s: %w", addr, err))
			}
			srv := &http.Server{Handler: design.New(cfg.Path, pool).Handler(ln.Addr().String()), ReadHeaderTimeout: 10 * time.Second}
			if host, _, _ := net.SplitHostPort(addr); !net.ParseIP(host).IsLoopback() && host != "localhost" {
				slog.Warn("the designer listens beyond loopback: anyone who reaches it can read the database's tables and write the schema files", "address", addr)
			}
			fmt.Fprintf(c.App.Writer, "flusso design: open http://%s/ (Ctrl-C stops)\n", ln.Addr())
			go func() {
				<-c.Context.Done()
				_ = srv.Close()
			}()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fail(err)
			}
			return nil
		},
	}
}
