package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/internal/logging"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/query"
)

const guideDir = "../../docs/guide"

// guide reads every page of the guide, by name.
func guide(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(guideDir, "*.md"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no guide pages: %v", err)
	}
	pages := map[string]string{}
	for _, p := range paths {
		pages[filepath.Base(p)] = fileText(t, p)
	}
	return pages
}

// configKeys lists the property names of the JSON Schema of flusso.toml, at
// any depth.
func configKeys(t *testing.T) []string {
	t.Helper()
	var doc any
	if err := json.Unmarshal(config.JSONSchema, &doc); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok {
				for k := range props {
					if !slices.Contains(keys, k) {
						keys = append(keys, k)
					}
				}
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(doc)
	if len(keys) < 20 {
		t.Fatalf("only %d keys in the config's JSON Schema: %v", len(keys), keys)
	}
	return keys
}

// commandFlags calls fn with each command's path and flags, at any depth.
func commandFlags(cmds []*cli.Command, path string, fn func(cmd string, f cli.Flag)) {
	for _, c := range cmds {
		for _, f := range c.Flags {
			fn(strings.TrimSpace(path+" "+c.Name), f)
		}
		commandFlags(c.Subcommands, path+" "+c.Name, fn)
	}
}

// TestGuide keeps the guide true to the code: the configuration reference
// documents every key of flusso.toml and every flag with its variable, no
// page names a FLUSSO_ variable that does not exist, every schema example
// loads and every relative link leads to a file.
func TestGuide(t *testing.T) {
	pages := guide(t)
	ref := pages["configuration.md"]
	for _, k := range configKeys(t) {
		// As `key`, `[key]` or inside a snippet such as `{ env = "VAR" }`.
		if !regexp.MustCompile("`[^`\n]*\\b" + k + "\\b[^`\n]*`").MatchString(ref) {
			t.Errorf("configuration.md does not document the key %s", k)
		}
	}

	// The variables flusso reads besides its flags', the stream names, and
	// the variables of docker-compose.yml.
	known := []string{logging.EnvFormat, query.PrefixVar, broker.ChangesStream, broker.DocsStream, broker.QuarantineStream}
	envRE := regexp.MustCompile(`FLUSSO_[A-Z_]*[A-Z]`)
	known = append(known, envRE.FindAllString(fileText(t, "../../docker-compose.yml"), -1)...)
	app := newApp(io.Discard, io.Discard)
	for _, c := range app.Commands {
		known = append(known, envRE.FindAllString(c.ArgsUsage, -1)...) // flusso schema's argument
	}
	flags := 0
	commandFlags(app.Commands, "", func(cmd string, f cli.Flag) {
		flags++
		name := f.Names()[0]
		if name == "help" {
			return
		}
		if !regexp.MustCompile("`--" + name + "[` ,]").MatchString(ref) {
			t.Errorf("configuration.md does not document %s --%s", cmd, name)
		}
		if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
			for _, v := range ev.GetEnvVars() {
				known = append(known, v)
				if !strings.Contains(ref, "`"+v+"`") {
					t.Errorf("configuration.md does not document %s, the variable of %s --%s", v, cmd, name)
				}
			}
		}
	})
	if flags < 40 {
		t.Fatalf("only %d flags found", flags)
	}

	pages["../../README.md"] = fileText(t, "../../README.md")
	linkRE := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	for name, text := range pages {
		for _, i := range envRE.FindAllStringIndex(text, -1) {
			v := text[i[0]:i[1]]
			if !slices.Contains(known, v) && !strings.HasPrefix(text[i[1]:], "_*") { // FLUSSO_NATS_* names a family
				t.Errorf("%s names %s, which flusso does not read", name, v)
			}
		}
		for _, m := range linkRE.FindAllStringSubmatch(text, -1) {
			if strings.Contains(m[1], "://") {
				continue
			}
			if _, err := os.Stat(filepath.Join(guideDir, filepath.Dir(name), m[1])); err != nil {
				t.Errorf("%s links to %s: %v", name, m[1], err)
			}
		}
	}

	yamlRE := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	for _, name := range []string{"schemas.md", "getting-started.md", "querying.md"} {
		for i, m := range yamlRE.FindAllStringSubmatch(pages[name], -1) {
			if !strings.Contains(m[1], "version: 1") {
				continue
			}
			if _, err := schema.Parse(name+" example "+string(rune('1'+i))+".schema.yml", []byte(m[1])); err != nil {
				t.Errorf("%s: a schema example does not load: %v\n%s", name, err, m[1])
			}
		}
	}
}
