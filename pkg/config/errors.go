package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Error is one problem found in a config file: where it is and what is wrong.
type Error struct {
	File   string
	Line   int    // 1-based; 0 when the problem has no single place (a missing table)
	Column int    // 1-based; 0 when unknown
	Path   string // key path, e.g. sinks.primary.batch_size or index[0].schema
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// joinErrors orders the config's problems by position so a report reads top
// to bottom, appends those found in schema files (which name their own file
// and line) and joins them; nil when there are none.
func joinErrors(errs []*Error, more []error) error {
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Line != errs[j].Line {
			return errs[i].Line < errs[j].Line
		}
		return errs[i].Column < errs[j].Column
	})
	out := make([]error, 0, len(errs)+len(more))
	for _, e := range errs {
		out = append(out, e)
	}
	return errors.Join(append(out, more...)...)
}
