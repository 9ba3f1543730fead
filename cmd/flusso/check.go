package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/mapping"
	"github.com/flusso/flusso/pkg/publication"
	"github.com/flusso/flusso/pkg/redact"
	"github.com/flusso/flusso/pkg/schema"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "validate the config and schemas and show each index's fields and mapping",
		Description: "--offline checks the files alone: no database, no secrets. " +
			"Without it flusso connects to the source database and compares every column, type and nullability " +
			"the schemas declare with the live tables, and the publication and replica identities with what capture needs, " +
			"printing the SQL that closes any gap. It fails only on errors, not on warnings.",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			configFlag(),
			&cli.BoolFlag{
				Name:    "offline",
				Usage:   "check the files only, without connecting to the database",
				EnvVars: []string{"FLUSSO_OFFLINE"},
			},
			formatFlag(),
			publicationFlag(),
			managePublicationFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cfg, err := config.Load(c.String("config"))
			if err != nil {
				return err
			}
			if err := sinkURLs(cfg, os.LookupEnv); err != nil {
				return err
			}
			if err := publication.CheckName(c.String("publication")); err != nil {
				return cli.Exit(fmt.Sprintf("flusso: --publication (FLUSSO_PUBLICATION) %v", err), exitUsage)
			}
			manage := cfg.Source.ManagePublication
			if c.IsSet("manage-publication") {
				manage = c.Generic("manage-publication").(*boolValue).v
			}
			if !c.Bool("offline") {
				return checkDatabase(c, cfg, c.String("publication"), manage)
			}
			r := newReport(cfg, c.String("publication"), manage)
			if c.String("format") == "json" {
				return fail(writeJSON(c.App.Writer, r))
			}
			return fail(r.print(c.App.Writer))
		},
	}
}

// sinkURLs refuses an OpenSearch sink with no url in the file and none in
// its <SINK>_OPENSEARCH_URL: a run could not start without one.
func sinkURLs(cfg *config.Config, env func(string) (string, bool)) error {
	var errs []error
	for _, s := range cfg.Sinks {
		if s.Type != config.OpenSearch || s.URL.IsSet() {
			continue
		}
		name := s.EnvPrefix() + "_OPENSEARCH_URL"
		if v, ok := env(name); ok && v != "" {
			continue
		}
		errs = append(errs, fmt.Errorf("%s: sink %s has no url: set url in [sinks.%s] or the variable %s", cfg.Path, s.Name, s.Name, name))
	}
	return errors.Join(errs...)
}

func publicationFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:    "publication",
		Usage:   "the `NAME` of the Postgres publication",
		EnvVars: []string{"FLUSSO_PUBLICATION"},
		Value:   "flusso",
	}
}

func managePublicationFlag() *cli.GenericFlag {
	return &cli.GenericFlag{
		Name:    "manage-publication",
		Usage:   "create or extend the publication (`true` or false; default: [source].manage_publication)",
		EnvVars: []string{"FLUSSO_MANAGE_PUBLICATION"},
		Value:   &boolValue{},
	}
}

// boolValue is a boolean flag that takes its value as a separate word
// (--manage-publication false), and whose absence leaves the config's value.
type boolValue struct{ v bool }

func (b *boolValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "true", "1", "yes", "on":
		b.v = true
	case "false", "0", "no", "off":
		b.v = false
	default:
		return fmt.Errorf("%q is not true or false", s)
	}
	return nil
}

func (b *boolValue) String() string { return "" }

// report is what check prints: the validated config, minus secrets, and per
// index its schema and mapping.
type report struct {
	Config      string          `json:"config"`
	Source      sourceView      `json:"source"`
	Sinks       []sinkView      `json:"sinks"`
	Prefix      string          `json:"prefix,omitempty"`
	OnError     flow.OnError    `json:"on_error"`
	Server      config.Server   `json:"server"`
	Publication publicationView `json:"publication"`
	Indexes     []indexView     `json:"indexes"`
	Env         envView         `json:"env"`
	Notes       []string        `json:"notes,omitempty"`
}

// envView lists what the run-time environment is read for: variables the
// run fails without, and reserved variables that override the file when set.
type envView struct {
	Required  []string `json:"required"`
	Overrides []string `json:"overrides"`
}

type sourceView struct {
	Type              string `json:"type"`
	ConnectionURL     string `json:"connection_url"`
	ManagePublication bool   `json:"manage_publication"`
}

type sinkView struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	URL      string `json:"url,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Pretty   bool   `json:"pretty,omitempty"`
}

type publicationView struct {
	Name    string   `json:"name"`
	Managed bool     `json:"managed"`
	Tables  []string `json:"tables"` // every table the enabled indexes read
}

type indexView struct {
	Name     string        `json:"name"`
	Schema   string        `json:"schema"`
	Enabled  bool          `json:"enabled"`
	OnError  flow.OnError  `json:"on_error"`
	Hash     string        `json:"hash"`
	Index    *schema.Index `json:"definition"`
	Mappings []mappingView `json:"mappings"`
}

// mappingView is the mapping the listed sinks create; sinks with the same
// analysis options share one.
type mappingView struct {
	Sinks   []string       `json:"sinks"`
	Mapping map[string]any `json:"mapping"`
}

func newReport(cfg *config.Config, publication string, manage bool) *report {
	r := &report{
		Config:      cfg.Path,
		Source:      sourceView{Type: cfg.Source.Type, ManagePublication: manage},
		Prefix:      cfg.Prefix,
		OnError:     cfg.OnError,
		Server:      cfg.Server,
		Publication: publicationView{Name: publication, Managed: manage, Tables: []string{}},
		Env:         envView{Required: []string{}, Overrides: []string{}},
	}
	need := func(name string) {
		if !slices.Contains(r.Env.Required, name) {
			r.Env.Required = append(r.Env.Required, name)
		}
	}
	override := func(name string) {
		if !slices.Contains(r.Env.Overrides, name) {
			r.Env.Overrides = append(r.Env.Overrides, name)
		}
	}

	src := cfg.Source
	switch {
	case src.URL.Env != "":
		r.Source.ConnectionURL = src.URL.String()
		need(src.URL.Env)
	case src.URL.Literal != "":
		r.Source.ConnectionURL = redact.String(src.URL.Literal)
		override(config.DatabaseURLVar)
	case src.Parts != nil:
		p := src.Parts
		r.Source.ConnectionURL = fmt.Sprintf("host %s port %d user %s database %s", p.Host, p.Port, p.User, p.Database)
		if p.Password.Env != "" {
			r.Source.ConnectionURL += " password " + p.Password.String()
			need(p.Password.Env)
		}
		override(config.DatabaseURLVar)
	default:
		r.Source.ConnectionURL = "(from " + config.DatabaseURLVar + ")"
		need(config.DatabaseURLVar)
	}
	if src.Parts != nil && src.Parts.Password.Literal != "" {
		r.Notes = append(r.Notes, `[source.connection_url].password is written in the file; prefer { env = "…" }`)
	}

	for _, s := range cfg.Sinks {
		v := sinkView{Name: s.Name, Type: s.Type, Pretty: s.Pretty}
		if s.Type == config.OpenSearch {
			prefix := s.EnvPrefix() + "_OPENSEARCH_"
			v.URL = shown(s.URL, true)
			v.Username = shown(s.Username, false)
			v.Password = s.Password.String()
			for _, f := range []struct {
				key string
				v   config.Value
			}{{"URL", s.URL}, {"USERNAME", s.Username}, {"PASSWORD", s.Password}} {
				switch {
				case f.v.Env != "":
					need(f.v.Env)
				case f.key == "URL" && !f.v.IsSet():
					need(prefix + f.key)
				default:
					override(prefix + f.key)
				}
			}
			if s.Password.Literal != "" {
				r.Notes = append(r.Notes, fmt.Sprintf(`[sinks.%s].password is written in the file; prefer { env = "…" }`, s.Name))
			}
		}
		r.Sinks = append(r.Sinks, v)
	}

	for _, ix := range cfg.Indexes {
		if ix.Enabled {
			for _, t := range ix.Schema.Tables() {
				if name := t.Schema + "." + t.Name; !slices.Contains(r.Publication.Tables, name) {
					r.Publication.Tables = append(r.Publication.Tables, name)
				}
			}
		}
		r.Indexes = append(r.Indexes, indexView{
			Name:     ix.Name,
			Schema:   ix.SchemaPath,
			Enabled:  ix.Enabled,
			OnError:  ix.OnError,
			Hash:     schema.Hash(ix.Schema),
			Index:    ix.Schema,
			Mappings: mappings(cfg.Sinks, ix.Schema),
		})
	}
	return r
}

// mappings derives the mapping of ix once per distinct set of OpenSearch
// options; with no OpenSearch sink, once with the defaults.
func mappings(sinks []config.Sink, ix *schema.Index) []mappingView {
	var (
		opts []mapping.Options
		out  []mappingView
	)
	for _, s := range sinks {
		if s.Type != config.OpenSearch {
			continue
		}
		o := mapping.Options{TextAnalysis: s.TextAnalysis, AutoSubfields: s.AutoSubfields}
		if i := slices.Index(opts, o); i >= 0 {
			out[i].Sinks = append(out[i].Sinks, s.Name)
			continue
		}
		opts = append(opts, o)
		out = append(out, mappingView{Sinks: []string{s.Name}, Mapping: mapping.For(ix, o)})
	}
	if len(out) == 0 {
		o := mapping.Options{TextAnalysis: config.TextAnalysisBuiltin, AutoSubfields: true}
		out = append(out, mappingView{Sinks: []string{}, Mapping: mapping.For(ix, o)})
	}
	return out
}

// shown renders a value for display: references by name, literal URLs
// without credentials, other literals as written (url) or hidden.
func shown(v config.Value, isURL bool) string {
	switch {
	case v.Literal == "":
		return v.String()
	case isURL:
		return redact.String(v.Literal)
	}
	return v.Literal
}

func (r *report) print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s: valid\n\n", r.Config)
	fmt.Fprintf(tw, "source\t%s\t%s, manage_publication=%t\n", r.Source.Type, r.Source.ConnectionURL, r.Source.ManagePublication)
	for _, s := range r.Sinks {
		var details []string
		switch s.Type {
		case config.OpenSearch:
			for _, kv := range [][2]string{{"url", s.URL}, {"username", s.Username}, {"password", s.Password}} {
				if kv[1] != "" {
					details = append(details, kv[0]+" "+kv[1])
				}
			}
		case config.Stdout:
			details = append(details, fmt.Sprintf("pretty=%t", s.Pretty))
		}
		fmt.Fprintf(tw, "sink %s\t%s\t%s\n", s.Name, s.Type, orNone(details))
	}
	if r.Prefix != "" {
		fmt.Fprintf(tw, "prefix\t%s\n", r.Prefix)
	}
	fmt.Fprintf(tw, "on_error\t%s\n", r.OnError)
	fmt.Fprintf(tw, "server\tpublic %s, private %s\n", r.Server.PublicAddress, r.Server.PrivateAddress)
	who := "created or extended by flusso when the role may"
	if !r.Publication.Managed {
		who = "managed by you"
	}
	fmt.Fprintf(tw, "publication\t%s: %s; must cover %s\n", r.Publication.Name, who, orNone(r.Publication.Tables))
	fmt.Fprintf(tw, "environment\tneeds %s; overrides read when set: %s\n", orNone(r.Env.Required), orNone(r.Env.Overrides))
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}

	for _, ix := range r.Indexes {
		state := "enabled"
		if !ix.Enabled {
			state = "disabled"
		}
		fmt.Fprintf(w, "\nindex %s (%s, %s, on_error=%s, hash %s)\n", ix.Name, ix.Schema, state, ix.OnError, ix.Hash)
		root := ix.Index.Schema + "." + ix.Index.Table
		if ix.Index.PrimaryKey != "" {
			root += ", primary key " + ix.Index.PrimaryKey
		}
		fmt.Fprintf(w, "  table %s\n", root)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		printFields(tw, ix.Index.Fields, "    ")
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, m := range ix.Mappings {
			label := "default options, no OpenSearch sink"
			if len(m.Sinks) > 0 {
				label = "sinks " + strings.Join(m.Sinks, ", ")
			}
			b, err := json.MarshalIndent(m.Mapping, "  ", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "  mapping (%s):\n  %s\n", label, b)
		}
	}
	return nil
}

// printFields writes the field tree: name, kind, OpenSearch type and what
// else shapes the field.
func printFields(w io.Writer, fields []schema.Field, indent string) {
	for i := range fields {
		f := &fields[i]
		line := fmt.Sprintf("%s%s\t%s\t%s", indent, f.Name, f.Kind, mapping.Type(f))
		if d := fieldDetails(f); len(d) > 0 {
			line += "\t" + strings.Join(d, ", ")
		}
		fmt.Fprintln(w, line)
		printFields(w, f.Fields, indent+"  ")
	}
}

func fieldDetails(f *schema.Field) []string {
	var d []string
	add := func(format string, args ...any) { d = append(d, fmt.Sprintf(format, args...)) }
	if f.Required {
		add("required")
	}
	if f.Table != "" {
		add("table %s", f.Table)
	}
	switch {
	case f.Kind == schema.BelongsTo:
		add("via column %s", f.Column)
	case f.Column != "" && f.Column != f.Name:
		add("column %s", f.Column)
	}
	if f.ForeignKey != "" {
		add("foreign_key %s", f.ForeignKey)
	}
	if t := f.Through; t != nil {
		add("through %s (%s → %s)", t.Table, t.LeftKey, t.RightKey)
	}
	if f.Lat != "" || f.Lon != "" {
		add("lat %s, lon %s", f.Lat, f.Lon)
	}
	if f.Values != "" {
		add("values %s", f.Values)
	}
	if f.ValueType != "" {
		add("value_type %s", f.ValueType)
	}
	if f.ElementType != "" {
		add("element_type %s", f.ElementType)
	}
	if len(f.PostgresTypes) > 0 {
		add("postgres %s", strings.Join(f.PostgresTypes, "|"))
	}
	if len(f.Transforms) > 0 {
		ts := make([]string, len(f.Transforms))
		for i, t := range f.Transforms {
			ts[i] = string(t)
		}
		add("transforms %s", strings.Join(ts, ", "))
	}
	if len(f.Variants) > 0 {
		add("variants %s", strings.Join(f.Variants, " < "))
	}
	if f.Default != nil {
		add("default %s", jsonText(f.Default))
	}
	if f.Kind == schema.Constant {
		add("value %s", jsonText(f.Value))
	}
	for _, o := range f.OrderBy {
		add("order_by %s %s", o.Column, o.Direction)
	}
	if f.Limit > 0 {
		add("limit %d", f.Limit)
	}
	if len(f.Filters) > 0 {
		add("%d filter(s)", len(f.Filters))
	}
	return d
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "(none)"
	}
	return strings.Join(list, ", ")
}
