package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/pkg/config"
)

// adminTimeout bounds one request to the control surface.
const adminTimeout = 30 * time.Second

func adminFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    "server",
			Usage:   "`URL` of a running flusso's control surface",
			EnvVars: []string{"FLUSSO_SERVER"},
			Value:   "http://" + config.DefaultPrivateAddress,
		},
		adminUserFlag(),
		adminPasswordFlag(),
		formatFlag(),
	}
}

func indexesCommand() *cli.Command {
	return &cli.Command{
		Name:         "indexes",
		Usage:        "list a running flusso's indexes: state, generation and document count",
		OnUsageError: usageError,
		Flags:        adminFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			body, _, err := adminRequest(c, http.MethodGet, "/indexes")
			if err != nil {
				return err
			}
			var list []struct {
				Name       string `json:"name"`
				State      string `json:"state"`
				Generation uint64 `json:"generation"`
				Docs       uint64 `json:"docs"`
			}
			if err := json.Unmarshal(body, &list); err != nil {
				return fail(fmt.Errorf("list indexes: unexpected answer from %s: %w", c.String("server"), err))
			}
			if c.String("format") == "json" {
				return fail(writeJSON(c.App.Writer, list))
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tGENERATION\tDOCS")
			for _, ix := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", ix.Name, ix.State, ix.Generation, ix.Docs)
			}
			return fail(tw.Flush())
		},
	}
}

func reindexCommand() *cli.Command {
	return &cli.Command{
		Name:         "reindex",
		Usage:        "rebuild one index of a running flusso into a new generation, then switch to it",
		ArgsUsage:    "NAME",
		OnUsageError: usageError,
		Flags:        adminFlags(),
		Action: func(c *cli.Context) error {
			switch {
			case c.Args().Len() > 1 && strings.HasPrefix(c.Args().Get(1), "-"):
				// urfave/cli stops reading flags at the first argument.
				return fmt.Errorf("flags go before the index name: flusso reindex %s %s", strings.Join(c.Args().Tail(), " "), c.Args().First())
			case c.Args().Len() != 1:
				return errors.New("reindex takes one argument: the index name")
			}
			name := c.Args().First()
			body, status, err := adminRequest(c, http.MethodPost, "/reindex?index="+url.QueryEscape(name))
			if err != nil {
				return err
			}
			if c.String("format") == "json" {
				var v any
				if json.Unmarshal(body, &v) != nil {
					v = map[string]any{"index": name, "status": status}
				}
				return fail(writeJSON(c.App.Writer, v))
			}
			fmt.Fprintf(c.App.Writer, "reindex of %s started\n", name)
			return nil
		},
	}
}

// adminRequest sends one request with Basic auth to the control surface and
// returns the body of a 2xx answer. A refused request is a usage error when
// the caller can fix it (bad credentials, unknown or invalid index), a
// failure otherwise (unreachable server, a reindex already running).
func adminRequest(c *cli.Context, method, path string) ([]byte, int, error) {
	base := strings.TrimRight(c.String("server"), "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, 0, fmt.Errorf("--server %q is not an http:// or https:// URL", base)
	}
	ctx, cancel := context.WithTimeout(c.Context, adminTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("build request: %w", err)
	}
	req.SetBasicAuth(c.String("admin-user"), c.String("admin-password"))
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, fail(fmt.Errorf("%s %s: %w", method, base+path, err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, 0, fail(fmt.Errorf("%s %s: read answer: %w", method, base+path, err))
	}
	if resp.StatusCode/100 == 2 {
		return data, resp.StatusCode, nil
	}
	err = fmt.Errorf("%s %s: %s%s", method, base+path, resp.Status, serverMessage(data))
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return nil, resp.StatusCode, err
	}
	return nil, resp.StatusCode, fail(err)
}

// serverMessage extracts the reason from an error answer: the error or
// message field of a JSON body, or the first line of a text one.
func serverMessage(body []byte) string {
	var v struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	msg := ""
	if json.Unmarshal(body, &v) == nil {
		msg = v.Error + v.Message
	} else {
		msg, _, _ = strings.Cut(string(bytes.TrimSpace(body)), "\n")
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		return ""
	}
	return ": " + msg
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
