// Package logging sets up flusso's logs: log/slog with RUST_LOG-style
// filtering per component, a human or JSON format, colors only on a
// terminal, and a guard that keeps secrets out of every record.
//
// The environment it reads:
//
//	RUST_LOG           directives, e.g. "flusso=debug,info" or "warn,capture=trace" (default info)
//	FLUSSO_LOG_FORMAT  "json" for one JSON object per line, otherwise human text
//	NO_COLOR           set: no colors (they are also off when not writing to a terminal)
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Environment variables.
const (
	EnvFilter  = "RUST_LOG"
	EnvFormat  = "FLUSSO_LOG_FORMAT"
	EnvNoColor = "NO_COLOR"
)

// Formats.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Options shape a logger.
type Options struct {
	Filter *Filter // nil: DefaultFilter
	Format string  // FormatText or FormatJSON
	Color  bool    // color the text format
}

// New returns a logger writing to w.
func New(w io.Writer, opts Options) *slog.Logger {
	f := opts.Filter
	if f == nil {
		f = DefaultFilter()
	}
	var h slog.Handler
	if opts.Format == FormatJSON {
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{
			Level: LevelTrace, // the filter decides
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if a.Key == slog.LevelKey && len(groups) == 0 {
					name, _ := levelName(a.Value.Any().(slog.Level))
					a.Value = slog.StringValue(name)
				}
				return a
			},
		})
	} else {
		h = newTextHandler(w, opts.Color)
	}
	return slog.New(newFilterHandler(h, f))
}

// Setup builds the logger the environment asks for, writing to w (stderr:
// stdout may carry data), and installs it as slog's default, which also
// routes the standard log package through it. Problems with the
// environment are logged as warnings on the new logger, never fatal.
func Setup(w io.Writer, lookup func(string) (string, bool)) *slog.Logger {
	spec, _ := lookup(EnvFilter)
	f, filterErr := ParseFilter(spec)

	asked, _ := lookup(EnvFormat)
	asked = strings.ToLower(strings.TrimSpace(asked))
	format := FormatText
	if asked == FormatJSON {
		format = FormatJSON
	}
	_, noColor := lookup(EnvNoColor)

	log := New(w, Options{Filter: f, Format: format, Color: !noColor && isTerminal(w)})
	slog.SetDefault(log)
	if filterErr != nil {
		for _, line := range strings.Split(filterErr.Error(), "\n") {
			log.Warn(fmt.Sprintf("%s: %s", EnvFilter, line))
		}
	}
	if asked != "" && asked != FormatText && asked != FormatJSON {
		log.Warn(fmt.Sprintf("%s: unknown format, using text (json or text expected)", EnvFormat), "value", asked)
	}
	return log
}

// isTerminal reports whether w is a character device, as a terminal is.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
