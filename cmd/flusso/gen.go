package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/gogen"
)

func genCommand() *cli.Command {
	return &cli.Command{
		Name:  "gen",
		Usage: "generate code to read the indexes",
		Subcommands: []*cli.Command{{
			Name:  "go",
			Usage: "write Go types, field paths and index names for the query module (github.com/flusso/flusso/query)",
			Description: "Writes <index>.gen.go into --out for every enabled index: the document type, its enums, " +
				"the field paths (with the subfields of the mapping of --sink) and the schema hash that names the index.\n" +
				"With --check DIR nothing is written: it exits 1, naming each file, when DIR is not what the schemas generate now.",
			OnUsageError: usageError,
			Flags: []cli.Flag{
				configFlag(),
				&cli.StringFlag{Name: "out", Usage: "the `DIR` to write into", EnvVars: []string{"FLUSSO_GEN_OUT"}},
				&cli.StringFlag{Name: "check", Usage: "compare `DIR` with what the schemas generate instead of writing; exit 1 when it is stale", EnvVars: []string{"FLUSSO_GEN_CHECK"}},
				&cli.StringFlag{Name: "package", Usage: "the Go package `NAME` (default: the package of the files already there, else the directory's name)", EnvVars: []string{"FLUSSO_GEN_PACKAGE"}},
				&cli.StringFlag{Name: "sink", Usage: "the OpenSearch sink `NAME` whose mapping options give the subfields (default: the first)", EnvVars: []string{"FLUSSO_GEN_SINK"}},
			},
			Action: genGo,
		}},
	}
}

func genGo(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	out, check := c.String("out"), c.String("check")
	dir := out
	switch {
	case out != "" && check != "":
		return fmt.Errorf("--out and --check exclude each other: write, or check")
	case check != "":
		dir = check
	case out == "":
		return fmt.Errorf("gen go needs --out DIR (FLUSSO_GEN_OUT), or --check DIR")
	}
	cfg, err := config.Load(c.String("config"))
	if err != nil {
		return err
	}
	opts := gogen.Options{Package: c.String("package")}
	if opts.Package == "" {
		if opts.Package, err = gogen.PackageOf(dir); err != nil {
			return fmt.Errorf("--package: %w", err)
		}
	}
	if opts.Mapping, err = gogen.MappingOptions(cfg, c.String("sink")); err != nil {
		return fmt.Errorf("--sink: %w", err)
	}
	files, err := gogen.Generate(cfg, opts)
	if err != nil {
		return err
	}
	if check == "" {
		if err := gogen.Write(dir, files); err != nil {
			return fail(err)
		}
		for _, f := range files {
			fmt.Fprintf(c.App.Writer, "wrote %s\n", filepath.Join(dir, f.Name))
		}
		return nil
	}
	problems, err := gogen.Drift(dir, files)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fail(fmt.Errorf("generated code is out of date (run flusso gen go --out %s):\n%s", dir, strings.Join(problems, "\n")))
	}
	fmt.Fprintf(c.App.Writer, "%s is up to date (%d files)\n", dir, len(files))
	return nil
}
