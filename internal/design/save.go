package design

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/schema"
)

// saved is what Save wrote.
type saved struct {
	SchemaFile string `json:"schema_file"`
	Config     string `json:"config"`
	// ConfigChanged: the [[index]] entry was added or its schema path
	// changed; otherwise flusso.toml was left as it was.
	ConfigChanged bool   `json:"config_changed"`
	Hash          string `json:"hash"`
}

// save writes the schema file and the [[index]] entry, then loads the
// config as every command will; if it does not load, both files are put
// back as they were. Only a schema that loads and checks clean is saved.
func (s *Server) save(ctx context.Context, req request) (any, error) {
	s.saving.Lock()
	defer s.saving.Unlock()
	ev, err := s.evaluate(ctx, req)
	if err != nil {
		return nil, err
	}
	e := ev.(*evaluation)
	if !e.Valid {
		var texts []string
		for _, m := range e.Messages {
			if m.Severity == "error" {
				texts = append(texts, m.Text)
			}
		}
		return nil, badRequest{fmt.Errorf("not saved: %s", strings.Join(texts, "; "))}
	}
	cfgText, err := os.ReadFile(s.configPath)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.configPath, err)
	}
	newCfg, changed, err := withIndex(cfgText, req.Name, req.SchemaPath)
	if err != nil {
		return nil, badRequest{fmt.Errorf("%s: %w", s.configPath, err)}
	}
	oldSchema, readErr := os.ReadFile(e.File)
	if readErr != nil && !errors.Is(readErr, os.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", e.File, readErr)
	}
	restore := func() error {
		var errs []error
		if readErr == nil {
			errs = append(errs, writeFile(e.File, oldSchema))
		} else {
			errs = append(errs, os.Remove(e.File))
		}
		if changed {
			errs = append(errs, writeFile(s.configPath, cfgText))
		}
		return errors.Join(errs...)
	}
	if err := os.MkdirAll(filepath.Dir(e.File), 0o755); err != nil {
		return nil, fmt.Errorf("writing the schema: %w", err)
	}
	if err := writeFile(e.File, []byte(e.YAML)); err != nil {
		return nil, err
	}
	if changed {
		if err := writeFile(s.configPath, newCfg); err != nil {
			return nil, errors.Join(err, restore())
		}
	}
	cfg, err := config.Load(s.configPath)
	if err != nil {
		if rerr := restore(); rerr != nil {
			return nil, fmt.Errorf("the config would not load (%w) and putting the files back failed: %w", err, rerr)
		}
		return nil, badRequest{fmt.Errorf("not saved: the config would not load: %w", err)}
	}
	var hash string
	for _, ix := range cfg.Indexes {
		if ix.Name == req.Name {
			hash = schema.Hash(ix.Schema)
		}
	}
	return saved{SchemaFile: e.File, Config: s.configPath, ConfigChanged: changed, Hash: hash}, nil
}

// writeFile replaces path's content in one rename, so a reader never sees
// half a file, keeping its mode.
func writeFile(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), mode)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

var (
	tableHeaderRE = regexp.MustCompile(`^\s*\[`)
	indexHeaderRE = regexp.MustCompile(`^\s*\[\[\s*index\s*\]\]\s*(#.*)?$`)
	keyRE         = regexp.MustCompile(`^(\s*)(name|schema)(\s*=\s*)(.*)$`)
)

// withIndex returns the config text with an [[index]] entry name whose
// schema is schemaPath: the existing entry's schema line changed, or a new
// entry appended. Everything else (comments, order, other tables) is kept
// byte for byte. changed is false when the entry is already so.
func withIndex(text []byte, name, schemaPath string) (out []byte, changed bool, err error) {
	lines := strings.SplitAfter(string(text), "\n")
	type entry struct {
		name      string
		schemaAt  int
		schemaVal string
	}
	var found *entry
	var cur *entry
	finish := func() {
		if cur != nil && cur.name == name {
			found = cur
		}
		cur = nil
	}
	for i, l := range lines {
		trimmed := strings.TrimRight(l, "\r\n")
		switch {
		case indexHeaderRE.MatchString(trimmed):
			finish()
			cur = &entry{schemaAt: -1}
		case tableHeaderRE.MatchString(trimmed):
			finish()
		case cur != nil:
			m := keyRE.FindStringSubmatch(trimmed)
			if m == nil {
				continue
			}
			v := tomlString(m[4])
			if m[2] == "name" {
				cur.name = v
			} else {
				cur.schemaAt, cur.schemaVal = i, v
			}
		}
		if found != nil {
			break
		}
	}
	finish()
	switch {
	case found == nil:
		var b strings.Builder
		b.Write(text)
		if len(text) > 0 && !strings.HasSuffix(string(text), "\n") {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "\n[[index]]\nname = %s\nschema = %s\nenabled = true\n", strconv.Quote(name), strconv.Quote(schemaPath))
		return []byte(b.String()), true, nil
	case found.schemaAt < 0:
		return nil, false, fmt.Errorf("the [[index]] entry %q has no schema line to update", name)
	case found.schemaVal == schemaPath:
		return text, false, nil
	}
	l := lines[found.schemaAt]
	m := keyRE.FindStringSubmatch(strings.TrimRight(l, "\r\n"))
	lines[found.schemaAt] = m[1] + m[2] + m[3] + strconv.Quote(schemaPath) + l[len(strings.TrimRight(l, "\r\n")):]
	return []byte(strings.Join(lines, "")), true, nil
}

// tomlString reads a TOML string value with an optional trailing comment;
// an unquoted or unparsable value reads as "".
func tomlString(v string) string {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "'") {
		if end := strings.Index(v[1:], "'"); end >= 0 {
			return v[1 : end+1]
		}
		return ""
	}
	if strings.HasPrefix(v, `"`) {
		for i := 1; i < len(v); i++ {
			if v[i] == '\\' {
				i++
				continue
			}
			if v[i] == '"' {
				s, err := strconv.Unquote(v[:i+1])
				if err != nil {
					return ""
				}
				return s
			}
		}
	}
	return ""
}
