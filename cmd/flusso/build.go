package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/pkg/config"
)

func buildCommand() *cli.Command {
	return &cli.Command{
		Name:  "build",
		Usage: "validate the config and its schemas and write them to one flusso.lock",
		Description: "The lock holds the whole validated config with every schema inlined. " +
			"Secrets stay { env = \"…\" } references, so building needs no database and no secret.",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{
				Name:    "out",
				Aliases: []string{"o"},
				Usage:   "where to write the lock `FILE`",
				EnvVars: []string{"FLUSSO_OUT"},
				Value:   defaultLock,
			},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cfg, err := config.Load(c.String("config"))
			if err != nil {
				return err
			}
			out := c.String("out")
			if err := config.WriteLock(out, cfg); err != nil {
				return fail(err)
			}
			fmt.Fprintf(c.App.Writer, "built %d index(es) into %s\n", len(cfg.Indexes), out)
			return nil
		},
	}
}
