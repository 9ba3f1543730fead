package schema

import (
	"strconv"
	"strings"
)

// Error is one problem found while loading a schema file: where it is and
// what is wrong.
type Error struct {
	File string
	// Line is 1-based; 0 when the problem concerns the whole file.
	Line int
	// Path locates the offending item, e.g. "fields[3].orders.fields[1]" or
	// "soft_delete.when[0].value"; empty for the whole file.
	Path string
	Msg  string
	// Err is the underlying cause (I/O, YAML syntax), if any.
	Err error
}

// Error renders "file:line: path: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorList is every problem found in one schema file, in file order. Parse
// and Load return it (never empty) when a schema does not load, so a user
// fixes all of them in one pass. errors.As finds each *Error in it.
type ErrorList []*Error

// Error renders one problem per line.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}
