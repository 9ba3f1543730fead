package logging

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// LevelTrace is below debug, for RUST_LOG's trace.
const LevelTrace = slog.LevelDebug - 4

// levelOff is above every level a record can have.
const levelOff = slog.Level(math.MaxInt32)

// Root is the target of records without a component; every other target is
// Root::<component>.
const Root = "flusso"

// Filter decides which records are logged, from RUST_LOG-style directives:
// a comma-separated list of `level` (the default) and `target=level`
// entries, where the most specific target matching a record wins. Targets
// are `flusso` and `flusso::<component>` (the `component` attribute of a
// logger: capture, assembler, writer, server, …); a target not starting
// with `flusso` names a component, so `capture=debug` is
// `flusso::capture=debug`. A target alone means every level.
type Filter struct {
	def        slog.Level  // for records no directive matches
	directives []directive // most specific first
}

type directive struct {
	target []string
	level  slog.Level
}

// DefaultFilter is what an empty RUST_LOG means: info and above.
func DefaultFilter() *Filter { return &Filter{def: slog.LevelInfo} }

var targetRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*((::|\.|/)[A-Za-z_][A-Za-z0-9_-]*)*$`)

// ParseFilter parses RUST_LOG directives. Bad directives are left out and
// reported in the error; the filter of the good ones is returned anyway, as
// tracing's lossy parsing does, so a typo never silences the logs. With no
// good directive at all the filter is DefaultFilter.
func ParseFilter(spec string) (*Filter, error) {
	f := &Filter{def: levelOff}
	var (
		errs  []error
		found bool
	)
	for _, d := range strings.Split(spec, ",") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		if strings.ContainsAny(d, "[]{}") {
			errs = append(errs, fmt.Errorf("ignoring directive %q: span and field filters are not supported", d))
			continue
		}
		target, levelName, hasLevel := strings.Cut(d, "=")
		if !hasLevel {
			if l, ok := parseLevel(d); ok {
				f.def, found = l, true
				continue
			}
			levelName = "trace" // a target alone enables everything for it
		}
		target = strings.TrimSpace(target)
		if !targetRE.MatchString(target) {
			errs = append(errs, fmt.Errorf("ignoring directive %q: %q is not a target (like flusso or flusso::capture)", d, target))
			continue
		}
		l, ok := parseLevel(strings.TrimSpace(levelName))
		if !ok {
			errs = append(errs, fmt.Errorf("ignoring directive %q: unknown level %q (trace, debug, info, warn, error or off)", d, levelName))
			continue
		}
		f.directives = append(f.directives, directive{target: splitTarget(target), level: l})
		found = true
	}
	if !found {
		f = DefaultFilter()
	}
	// Most specific first; among equals, the later directive wins.
	slices.Reverse(f.directives)
	sort.SliceStable(f.directives, func(i, j int) bool {
		return len(f.directives[i].target) > len(f.directives[j].target)
	})
	return f, errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "trace":
		return LevelTrace, true
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	case "off":
		return levelOff, true
	}
	return 0, false
}

// splitTarget normalizes a target into path segments under Root.
func splitTarget(t string) []string {
	t = strings.ToLower(t)
	t = strings.NewReplacer("::", "/", ".", "/").Replace(t)
	segs := strings.Split(t, "/")
	if segs[0] != Root {
		segs = append([]string{Root}, segs...)
	}
	return segs
}

// Level is the lowest level enabled for target.
func (f *Filter) Level(target string) slog.Level {
	segs := splitTarget(target)
	for _, d := range f.directives {
		if hasPrefix(segs, d.target) {
			return d.level
		}
	}
	return f.def
}

// Enabled reports whether a record of level l for target is logged.
func (f *Filter) Enabled(target string, l slog.Level) bool {
	lowest := f.Level(target)
	return lowest != levelOff && l >= lowest
}

func hasPrefix(segs, prefix []string) bool {
	if len(prefix) > len(segs) {
		return false
	}
	for i := range prefix {
		if segs[i] != prefix[i] {
			return false
		}
	}
	return true
}
