package gogen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// PackageOf is the package of the generated files already in dir, or the
// directory's base name made an identifier when there are none: so a
// --check, or a regeneration, keeps the package the code was made with.
func PackageOf(dir string) (string, error) {
	names, err := generated(dir)
	if err != nil {
		return "", err
	}
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return "", fmt.Errorf("read %s: %w", filepath.Join(dir, n), err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "package "); ok {
				f.Close()
				return strings.TrimSpace(name), nil
			}
		}
		f.Close()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	name := strings.ToLower(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return -1
	}, filepath.Base(abs)))
	if !isIdent(name) || name[0] >= '0' && name[0] <= '9' {
		return "", fmt.Errorf("the directory name %s makes no Go package name: pass one", filepath.Base(abs))
	}
	return name, nil
}

// generated lists the files of dir this generator wrote: named *.gen.go
// and starting with the Marker. A missing dir has none.
func generated(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), Suffix) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, e.Name()), err)
		}
		if bytes.HasPrefix(data, []byte(Marker)) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Write writes files into dir, creating it, and removes the files an
// earlier run generated for indexes that are gone.
func Write(dir string, files []File) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	old, err := generated(dir)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, f := range files {
		keep[f.Name] = true
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Content, 0o644); err != nil {
			return fmt.Errorf("write generated code: %w", err)
		}
	}
	for _, n := range old {
		if !keep[n] {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return fmt.Errorf("remove the code of a removed index: %w", err)
			}
		}
	}
	return nil
}

// Drift compares dir with files: each problem names a file that is
// missing, differs from what the schemas generate now, or was generated
// for an index that is gone. None means dir is up to date.
func Drift(dir string, files []File) ([]string, error) {
	var problems []string
	want := map[string]bool{}
	for _, f := range files {
		want[f.Name] = true
		path := filepath.Join(dir, f.Name)
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			problems = append(problems, path+": missing")
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", path, err)
		case !bytes.Equal(data, f.Content):
			was, now := firstLine(data), firstLine(f.Content)
			if was == now {
				problems = append(problems, path+": stale: it differs from the code "+now+" (edited by hand, or by another flusso version)")
			} else {
				problems = append(problems, path+": stale: "+was+"; the schemas now give "+strings.TrimPrefix(now, "made from "))
			}
		}
	}
	old, err := generated(dir)
	if err != nil {
		return nil, err
	}
	for _, n := range old {
		if !want[n] {
			problems = append(problems, filepath.Join(dir, n)+": generated for an index the config no longer has (or has disabled)")
		}
	}
	return problems, nil
}

// firstLine is the header of a generated file, which names the schema hash
// it was made from.
func firstLine(data []byte) string {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	if h, ok := bytes.CutPrefix(line, []byte(Marker+" from ")); ok {
		return "made from " + string(bytes.TrimSuffix(h, []byte(". DO NOT EDIT.")))
	}
	return "with no generated header"
}
