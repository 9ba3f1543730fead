package check

import (
	"fmt"
	"io"
	"strings"
)

// Print writes the report for a person: the findings by index, then the
// publication coverage with the SQL that completes it, then the totals.
func (r *Report) Print(w io.Writer) error {
	var b strings.Builder
	for _, f := range r.Findings {
		if f.Scope == ScopeDatabase {
			fmt.Fprintf(&b, "%-7s %s\n", f.Severity, f.Message)
		}
	}
	for _, name := range r.Indexes {
		var lines []string
		file := ""
		for _, f := range r.Findings {
			if f.Scope != ScopeSchema || f.Index != name {
				continue
			}
			file = f.File
			lines = append(lines, "  "+f.Text())
		}
		if len(lines) == 0 {
			fmt.Fprintf(&b, "index %s: every column matches\n", name)
			continue
		}
		fmt.Fprintf(&b, "index %s (%s):\n%s\n", name, file, strings.Join(lines, "\n"))
	}

	p := r.Publication
	switch {
	case len(p.SQL) == 0 && p.AllTables:
		fmt.Fprintf(&b, "publication %s: FOR ALL TABLES; replica identities complete\n", p.Name)
	case len(p.SQL) == 0:
		fmt.Fprintf(&b, "publication %s: covers every table; replica identities complete\n", p.Name)
	default:
		for _, f := range r.Findings {
			if f.Scope == ScopePublication {
				fmt.Fprintf(&b, "%-7s %s\n", f.Severity, f.Message)
			}
		}
		if len(p.Missing) > 0 {
			fmt.Fprintf(&b, "  not published:            %s\n", strings.Join(p.Missing, ", "))
		}
		if len(p.Identity) > 0 {
			fmt.Fprintf(&b, "  REPLICA IDENTITY not FULL: %s\n", strings.Join(p.Identity, ", "))
		}
		b.WriteString("  SQL:\n")
		for _, s := range p.SQL {
			fmt.Fprintf(&b, "    %s;\n", s)
		}
	}
	fmt.Fprintf(&b, "%s, %s\n", plural(r.Errors, "error"), plural(r.Warnings, "warning"))
	_, err := io.WriteString(w, b.String())
	return err
}

// Text is a schema finding as Print shows it: severity, file and line,
// field, message. The designer shows findings with the same text.
func (f Finding) Text() string {
	where := ""
	if f.Line > 0 {
		where = fmt.Sprintf(":%d", f.Line)
	}
	field := ""
	if f.Field != "" {
		field = "field " + f.Field + ": "
	}
	return fmt.Sprintf("%-7s %s%s %s%s", f.Severity, shortFile(f.File), where, field, f.Message)
}

func shortFile(f string) string {
	if f == "" {
		return "schema"
	}
	if i := strings.LastIndexByte(f, '/'); i >= 0 {
		return f[i+1:]
	}
	return f
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
