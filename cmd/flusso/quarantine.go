package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/pkg/broker"
)

// natsTimeout bounds reaching the deployment's NATS.
const natsTimeout = 10 * time.Second

func quarantineCommand() *cli.Command {
	where := append(brokerFlags(),
		&cli.StringFlag{Name: "index", Usage: "only documents of index `NAME`"},
		&cli.StringFlag{Name: "sink", Usage: "only documents refused by sink `NAME` (\"" + broker.AssemblerSink + "\": could not be built)"},
	)
	return &cli.Command{
		Name:  "quarantine",
		Usage: "list or replay documents set aside under on_error = \"skip\"",
		Description: "Quarantined documents are kept on the FLUSSO_QUARANTINE stream of the deployment's NATS.\n" +
			"With --nats-url the commands work while the pipeline runs. The embedded NATS of a\n" +
			"single-process pipeline is reachable only from inside it: stop the pipeline and point\n" +
			"--data-dir at its data directory instead, or run it with --nats-listen and pass\n" +
			"--nats-url nats://USER:PASSWORD@ADDR (the credentials are in <data-dir>/nats-listen.env).",
		OnUsageError: usageError,
		Subcommands: []*cli.Command{{
			Name:         "list",
			Usage:        "list quarantined documents: sink, index, id, version and the reason they were refused",
			OnUsageError: usageError,
			Flags:        append(where, formatFlag()),
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				return withQuarantine(c, func(ctx context.Context, conn *broker.Conn, f broker.QuarantineFilter) error {
					entries, err := conn.ListQuarantine(ctx, f)
					if err != nil {
						return fail(err)
					}
					return writeList(c, entries, "SEQ\tTIME\tSINK\tINDEX\tID\tVERSION\tREASON", func(e broker.QuarantineEntry) string {
						return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%d\t%s", e.Seq, e.Time.Format(time.RFC3339), e.Sink, e.Index, e.ID, e.Version, e.Reason)
					})
				})
			},
		}, {
			Name:  "replay",
			Usage: "rebuild quarantined documents from the current data and remove them from quarantine",
			Description: "Each document is built again from Postgres by the assemblers and written to the sink\n" +
				"that refused it; one refused again is quarantined again. Fix the data first. With\n" +
				"--data-dir the rebuilds happen when the pipeline next runs.",
			OnUsageError: usageError,
			Flags:        where,
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				return withQuarantine(c, func(ctx context.Context, conn *broker.Conn, f broker.QuarantineFilter) error {
					entries, err := conn.ListQuarantine(ctx, f)
					if err != nil {
						return fail(err)
					}
					res, err := conn.Replay(ctx, entries)
					if err != nil {
						return fail(err)
					}
					for _, e := range res.Skipped {
						fmt.Fprintf(c.App.ErrWriter, "flusso: warning: entry %d (%s/%s) records no version and stays in quarantine; change its row to rebuild it\n", e.Seq, e.Index, e.ID)
					}
					fmt.Fprintf(c.App.Writer, "replayed %d entries: %d documents will be rebuilt from the current data\n", res.Entries, res.Documents)
					return nil
				})
			},
		}},
	}
}

// withQuarantine connects to the deployment's NATS (withBroker) and runs fn
// with the filter the flags give.
func withQuarantine(c *cli.Context, fn func(context.Context, *broker.Conn, broker.QuarantineFilter) error) error {
	f := broker.QuarantineFilter{Index: c.String("index"), Sink: c.String("sink")}
	return withBroker(c, "flusso quarantine", func(ctx context.Context, conn *broker.Conn) error {
		return fn(ctx, conn, f)
	})
}
