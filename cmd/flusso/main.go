// Command flusso keeps OpenSearch indexes in sync with PostgreSQL.
//
// It builds a deployment's flusso.toml and schemas into a portable
// flusso.lock, checks them, prints their JSON Schemas, runs the pipeline and
// drives a running pipeline's control surface.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/internal/logging"
	"github.com/flusso/flusso/pkg/redact"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command was valid but failed while running
	exitUsage   = 2 // bad flags, arguments or config
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise
// the module version from the build info is used.
var version string

// defaultMemoryLimit is the Go runtime's soft memory limit unless GOMEMLIMIT
// sets one. The pipeline's live heap is small and bounded (a few fetches
// of documents, the assemblers' backlog bound), but the runtime's default
// lets the heap grow to twice the live size and keeps freed pages for a
// while, which on a backfill doubled the RSS. Near the limit the collector
// runs more often instead; it never fails an allocation.
const defaultMemoryLimit = 192 << 20

func main() {
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	// Logs go to stderr: stdout may carry data (the stdout sink, reports).
	logging.Setup(os.Stderr, os.LookupEnv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// execute runs the command line args and returns the exit code. Errors are
// printed to stderr, one line each, without the secrets they may quote (a
// connection URL, a --server with user info).
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := newApp(stdout, stderr).RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(stderr, "flusso: "+redact.String(line))
	}
	var f *failure
	if errors.As(err, &f) {
		return exitFailure
	}
	return exitUsage
}

// failure marks an error that happened while doing valid work (a run that
// stopped, a server that could not be reached): exit code 1. Every other
// error is a usage or config error: exit code 2.
type failure struct{ err error }

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func fail(err error) error {
	if err == nil {
		return nil
	}
	return &failure{err}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "flusso",
		Usage:     "keep OpenSearch indexes in sync with PostgreSQL",
		Version:   buildVersion(),
		Writer:    stdout,
		ErrWriter: stderr,
		Commands: []*cli.Command{
			buildCommand(),
			checkCommand(),
			schemaCommand(),
			runCommand(),
			indexesCommand(),
			reindexCommand(),
			quarantineCommand(),
			consumersCommand(),
			genCommand(),
			initCommand(),
			designCommand(),
			auditCommand(),
		},
		// Errors are printed once, by execute, with the exit code it picks.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   usageError,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return fmt.Errorf("unknown command %q (see flusso --help)", c.Args().First())
			}
			_ = cli.ShowAppHelp(c)
			return errors.New("no command given")
		},
	}
}

// usageError keeps urfave/cli from printing the whole help on a bad flag:
// the one-line error is enough, and --help is one flag away.
func usageError(c *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%w (see %s --help)", err, c.Command.HelpName)
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// Flags shared by several commands.
const (
	defaultConfig = "flusso.toml"
	defaultLock   = "flusso.lock"
)

func configFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:    "config",
		Aliases: []string{"c"},
		Usage:   "the deployment's config `FILE`",
		EnvVars: []string{"FLUSSO_CONFIG"},
		Value:   defaultConfig,
	}
}

// noArgs rejects arguments given to a command that takes none, which is
// also where a flag written after an argument ends up.
func noArgs(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("%s takes no arguments, got %q (flags go before any argument)", c.Command.Name, c.Args().First())
	}
	return nil
}

func formatFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:    "format",
		Usage:   "output `FORMAT`: human or json",
		EnvVars: []string{"FLUSSO_FORMAT"},
		Value:   "human",
		Action: func(_ *cli.Context, f string) error {
			if f != "human" && f != "json" {
				return fmt.Errorf("--format must be human or json, not %q", f)
			}
			return nil
		},
	}
}
