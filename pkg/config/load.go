package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/flusso/flusso/pkg/schema"
)

// maxFileSize bounds flusso.toml. A real deployment file is a few KiB; the
// bound keeps a wrong path (a dump, a binary) from being read into memory.
const maxFileSize = 1 << 20

// Load reads the flusso.toml at path and every schema its [[index]] entries
// reference (enabled or not, so a broken schema surfaces before it is turned
// on), validates both layers and returns one Config. Schema paths resolve
// relative to the config file's directory; absolute ones are taken as they
// are. Nothing is read from the environment: { env = "X" } references and
// the reserved override variables are resolved at run time (see
// Value.Resolve, Source.ConnString and Sink.Connection).
//
// Every problem found is reported, each naming the file, the line where
// possible, the key path and the cause; they are joined into one error whose
// parts are *Error for the config and *schema.Error for schema files.
func Load(path string) (*Config, error) {
	data, err := readFile("config", path, maxFileSize)
	if err != nil {
		return nil, err
	}
	l := &loader{file: path}
	cfg := l.parse(data)
	var schemaErrs []error
	if len(l.errs) == 0 {
		schemaErrs = l.loadSchemas(cfg, filepath.Dir(path))
	}
	if err := joinErrors(l.errs, schemaErrs); err != nil {
		return nil, err
	}
	return cfg, nil
}

// readFile reads a regular file of at most limit bytes; what names it in
// errors.
func readFile(what, path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s %s: not a regular file", what, path)
	}
	if info.Size() > limit {
		return nil, fmt.Errorf("read %s %s: file is %s, larger than the %s allowed", what, path, byteSize(info.Size()), byteSize(limit))
	}
	// The size may change under us; never read past the limit.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s %s: file is larger than the %s allowed", what, path, byteSize(limit))
	}
	return data, nil
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// loader decodes one config file, collecting every problem it finds.
type loader struct {
	file string
	pos  *positions
	errs []*Error
}

// errorf records a problem at the key path.
func (l *loader) errorf(path, format string, args ...any) {
	var p position
	if l.pos != nil {
		p = l.pos.lookup(path)
	}
	l.errs = append(l.errs, &Error{File: l.file, Line: p.line, Column: p.column, Path: path, Err: fmt.Errorf(format, args...)})
}

// parse decodes the TOML document and validates every key of it.
func (l *loader) parse(data []byte) *Config {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			msg := strings.TrimPrefix(de.Error(), "toml: ")
			l.errs = append(l.errs, &Error{File: l.file, Line: line, Column: col, Path: strings.Join(de.Key(), "."), Err: fmt.Errorf("invalid TOML: %s", msg)})
		} else {
			l.errs = append(l.errs, &Error{File: l.file, Err: fmt.Errorf("invalid TOML: %w", err)})
		}
		return nil
	}
	l.pos = indexPositions(data)
	return l.config(doc)
}

// schemaFile is where the schema path p of a config in dir leads: an
// absolute path as it is, a relative one from dir.
func schemaFile(dir, p string) string {
	p = filepath.FromSlash(p)
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// loadSchemas reads the schema of every index. A missing file is a problem
// of the config's schema key; problems inside a schema file are returned
// as the schema loader reports them, one error each.
func (l *loader) loadSchemas(cfg *Config, dir string) []error {
	var errs []error
	for i := range cfg.Indexes {
		ix := &cfg.Indexes[i]
		key := fmt.Sprintf("index[%d].schema", i)
		file := schemaFile(dir, ix.SchemaPath)
		info, err := os.Stat(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			l.errorf(key, "schema file %s not found", file)
			continue
		case err != nil:
			l.errorf(key, "schema file: %w", err)
			continue
		case info.IsDir():
			l.errorf(key, "schema file %s is a directory", file)
			continue
		}
		s, err := schema.Load(file)
		var list schema.ErrorList
		switch {
		case errors.As(err, &list):
			for _, e := range list {
				errs = append(errs, e)
			}
		case err != nil:
			errs = append(errs, err)
		default:
			ix.Schema = s
		}
	}
	return errs
}
