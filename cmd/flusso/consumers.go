package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/pkg/broker"
)

func consumersCommand() *cli.Command {
	return &cli.Command{
		Name:  "consumers",
		Usage: "list or delete the writer consumers that hold documents for each sink",
		Description: "Each sink has a durable consumer, writer_<sink>, on the FLUSSO_DOCS stream; documents stay\n" +
			"on the stream until every such consumer acked them. A process never deletes the consumer\n" +
			"of a sink it does not know (during a rolling upgrade that adds a sink, that would lose the\n" +
			"new sink's documents), so a sink removed from the config for good leaves its consumer\n" +
			"holding documents: delete it here. --nats-url reaches a deployment's external NATS while\n" +
			"it runs; the embedded NATS of a single-process pipeline is read from a stopped pipeline's\n" +
			"--data-dir.",
		OnUsageError: usageError,
		Subcommands: []*cli.Command{{
			Name:         "list",
			Usage:        "list writer consumers: sink, messages of documents pending and awaiting an ack (up to 128 documents each), last delivery",
			OnUsageError: usageError,
			Flags:        append(brokerFlags(), formatFlag()),
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				return withBroker(c, "flusso consumers", func(ctx context.Context, conn *broker.Conn) error {
					writers, err := conn.Writers(ctx)
					if err != nil {
						return fail(err)
					}
					return writeList(c, writers, "SINK\tCONSUMER\tPENDING\tACK PENDING\tLAST DELIVERY", func(w broker.WriterState) string {
						active := "never"
						if w.Active != nil {
							active = w.Active.Format(time.RFC3339)
						}
						return fmt.Sprintf("%s\t%s\t%d\t%d\t%s", w.Sink, w.Consumer, w.Pending, w.AckPending, active)
					})
				})
			},
		}, {
			Name:      "delete",
			Usage:     "delete the writer consumer of a sink removed from the config, releasing its documents",
			ArgsUsage: "SINK",
			Description: "Only for a sink no process writes any more: a writer still running for it gets no more\n" +
				"documents until its process restarts, and the documents it had not written are gone for\n" +
				"it. `flusso consumers list` names the sinks.",
			OnUsageError: usageError,
			Flags:        brokerFlags(),
			Action: func(c *cli.Context) error {
				if c.Args().Len() != 1 {
					return fmt.Errorf("consumers delete takes one SINK name, got %d arguments (flags go before it)", c.Args().Len())
				}
				name := c.Args().First()
				return withBroker(c, "flusso consumers", func(ctx context.Context, conn *broker.Conn) error {
					err := conn.DeleteWriter(ctx, name)
					if broker.IsNotFound(err) {
						return fmt.Errorf("no writer consumer for sink %q (see flusso consumers list)", name)
					}
					if err != nil {
						return fail(err)
					}
					fmt.Fprintf(c.App.Writer, "deleted consumer %s: documents are no longer kept for sink %s\n", broker.WriterConsumer(name), name)
					return nil
				})
			},
		}},
	}
}

// brokerFlags say where a command finds the deployment's NATS.
func brokerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "nats-url", Usage: "the deployment's external NATS `URL` (a cluster's servers comma-separated); works while the pipeline runs", EnvVars: []string{"FLUSSO_NATS_URL"}},
		&cli.StringFlag{Name: "data-dir", Usage: "`DIR` of a stopped pipeline's embedded NATS data, used without --nats-url", EnvVars: []string{"FLUSSO_DATA_DIR"}, Value: ".flusso"},
	}
}

// withBroker connects to the deployment's NATS, from --nats-url or by
// starting the embedded server on a stopped pipeline's --data-dir, and runs
// fn with the connection, named name.
func withBroker(c *cli.Context, name string, fn func(context.Context, *broker.Conn) error) error {
	ctx, cancel := context.WithTimeout(c.Context, natsTimeout)
	defer cancel()
	var conn *broker.Conn
	if url := c.String("nats-url"); url != "" {
		var err error
		if conn, err = broker.Connect(ctx, url, name); err != nil {
			return fail(err)
		}
	} else {
		store := filepath.Join(c.String("data-dir"), "nats")
		if _, err := os.Stat(store); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no embedded NATS data in %s: pass the pipeline's --data-dir, or --nats-url for a deployment on an external NATS", store)
		}
		emb, err := broker.StartEmbedded(store, nil)
		if err != nil {
			return fail(err)
		}
		defer emb.Close()
		if conn, err = emb.Connect(ctx, name); err != nil {
			return fail(err)
		}
	}
	defer conn.Close()
	return fn(c.Context, conn)
}

// writeList prints what a list command found: under --format json as a JSON
// array (empty, not null, when nothing was found), else as a table of
// header and one row per item.
func writeList[T any](c *cli.Context, items []T, header string, row func(T) string) error {
	if c.String("format") == "json" {
		if items == nil {
			items = []T{}
		}
		return fail(writeJSON(c.App.Writer, items))
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		fmt.Fprintln(tw, row(it))
	}
	return fail(tw.Flush())
}
