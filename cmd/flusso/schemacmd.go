package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/schema"
)

func schemaCommand() *cli.Command {
	return &cli.Command{
		Name:      "schema",
		Usage:     "print the JSON Schema of flusso.toml (config) or of a *.schema.yml (index)",
		ArgsUsage: "config|index  [$FLUSSO_SCHEMA]",
		Description: "Point an editor at the output for completion and validation, e.g.\n" +
			"flusso schema config > config.schema.json",
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			kind := c.Args().First()
			if kind == "" {
				kind = os.Getenv("FLUSSO_SCHEMA")
			}
			if c.Args().Len() > 1 {
				return fmt.Errorf("schema takes one argument, config or index")
			}
			var doc []byte
			switch kind {
			case "config":
				doc = config.JSONSchema
			case "index":
				doc = schema.JSONSchema
			case "":
				return fmt.Errorf("schema needs an argument: config or index (or set FLUSSO_SCHEMA)")
			default:
				return fmt.Errorf("unknown schema %q: config or index", kind)
			}
			_, err := c.App.Writer.Write(doc)
			return fail(err)
		},
	}
}
