package design

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/check"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/mapping"
	"github.com/flusso/flusso/pkg/scaffold"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sink/opensearch"
)

// state is what the app starts from: the deployment and the catalog.
type state struct {
	Config  string       `json:"config"`
	Prefix  string       `json:"prefix"`
	Indexes []savedIndex `json:"indexes"`
	Schemas []string     `json:"schemas"`
	Tables  []tableView  `json:"tables"`
}

type savedIndex struct {
	Name       string          `json:"name"`
	SchemaPath string          `json:"schema_path"`
	Enabled    bool            `json:"enabled"`
	Hash       string          `json:"hash"`
	YAML       string          `json:"yaml"`
	Model      json.RawMessage `json:"model"`
}

func (s *Server) state(ctx context.Context, _ request) (any, error) {
	cfg, err := config.Load(s.configPath)
	if err != nil {
		return nil, badRequest{err}
	}
	cat, err := scaffold.Read(ctx, s.db)
	if err != nil {
		return nil, err
	}
	st := state{Config: cfg.Path, Prefix: cfg.Prefix, Indexes: []savedIndex{}, Schemas: cat.Schemas, Tables: []tableView{}}
	for _, ix := range cfg.Indexes {
		text, err := os.ReadFile(schemaFile(cfg, ix.SchemaPath))
		if err != nil {
			return nil, fmt.Errorf("reading the schema of index %s: %w", ix.Name, err)
		}
		model, err := modelOf(text)
		if err != nil {
			return nil, fmt.Errorf("reading the schema of index %s: %w", ix.Name, err)
		}
		st.Indexes = append(st.Indexes, savedIndex{
			Name: ix.Name, SchemaPath: ix.SchemaPath, Enabled: ix.Enabled, Hash: schema.Hash(ix.Schema),
			YAML: string(text), Model: model,
		})
	}
	for _, t := range cat.Tables {
		v := tableView{Table: t, Relations: []relationView{}, Fields: map[string]json.RawMessage{}}
		for _, col := range t.Columns {
			if v.Fields[col.Name], err = modelOfNode(scaffold.ScalarField(col, col.Name == t.Key())); err != nil {
				return nil, err
			}
		}
		for _, rel := range cat.Relations(t) {
			f, err := modelOfNode(cat.Join(t, rel, 0))
			if err != nil {
				return nil, err
			}
			v.Relations = append(v.Relations, relationView{Relation: rel, Field: f})
		}
		st.Tables = append(st.Tables, v)
	}
	return st, nil
}

// schemaFile is where the config loader reads a schema path from.
func schemaFile(cfg *config.Config, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(cfg.Path), filepath.FromSlash(p))
}

// scaffold starts an index on a table, as `flusso init` does.
func (s *Server) scaffold(ctx context.Context, req request) (any, error) {
	cat, err := scaffold.Read(ctx, s.db)
	if err != nil {
		return nil, err
	}
	pgSchema := req.Schema
	if pgSchema == "" {
		pgSchema = "public"
	}
	t, err := cat.Find(pgSchema, req.Table)
	if err != nil {
		return nil, badRequest{err}
	}
	doc, err := cat.Index(t, req.Depth)
	if err != nil {
		return nil, badRequest{err}
	}
	text, err := scaffold.Marshal(doc)
	if err != nil {
		return nil, err
	}
	model, err := modelOf(text)
	if err != nil {
		return nil, err
	}
	return map[string]any{"yaml": string(text), "model": model}, nil
}

// message is one problem, placed on the element it is about: Node is a
// field id (see spans), "" for the top of the schema, "@name" or "@path"
// for the index name and schema path.
type message struct {
	Node     string `json:"node"`
	Severity string `json:"severity"`
	Line     int    `json:"line,omitempty"`
	// Text is what `flusso check` prints for the problem.
	Text string `json:"text"`
}

// evaluation is the outcome of an edit.
type evaluation struct {
	YAML     string          `json:"yaml"`
	Model    json.RawMessage `json:"model"`
	File     string          `json:"file"`
	Valid    bool            `json:"valid"` // loads, and check finds no error
	Messages []message       `json:"messages"`
	// Hash names the index in the sinks; Alias is the name clients and
	// flusso address: <prefix><name>_<hash>.
	Hash    string         `json:"hash,omitempty"`
	Alias   string         `json:"alias,omitempty"`
	Mapping map[string]any `json:"mapping,omitempty"`
	// Analysis is the analysis block the index is created with: the
	// analyzers the mapping names.
	Analysis any   `json:"analysis,omitempty"`
	Diff     *diff `json:"diff,omitempty"`
}

// diff compares the schema being edited with the one saved under its name.
type diff struct {
	Saved     bool   `json:"saved"`
	SavedHash string `json:"saved_hash,omitempty"`
	// Reseed: the hash changes, so the next run builds a new index from
	// scratch (backfill) and moves the aliases when it is complete.
	Reseed  bool     `json:"reseed"`
	Changes []string `json:"changes"`
}

// source is a schema being edited, parsed.
type source struct {
	cfg   *config.Config
	text  []byte
	model json.RawMessage
	file  string
	ix    *schema.Index
	msgs  []message
}

// parse renders the request's model (or takes its YAML) and loads it with
// the schema loader, as `flusso check` would load the saved file.
func (s *Server) parse(req request) (*source, error) {
	cfg, err := config.Load(s.configPath)
	if err != nil {
		return nil, badRequest{err}
	}
	src := &source{cfg: cfg}
	// As the config checks [[index]].name: a Postgres identifier, and a
	// name OpenSearch accepts once prefixed.
	if id, err := schema.NormalizeIdent(req.Name); err != nil || id != req.Name {
		src.msgs = append(src.msgs, message{Node: "@name", Severity: "error", Text: fmt.Sprintf(
			"index name %q must be a Postgres identifier: lowercase letters, digits and _, not starting with a digit, at most 63 characters", req.Name)})
	} else if err := config.ValidateIndexName(cfg.Prefix + req.Name); err != nil {
		src.msgs = append(src.msgs, message{Node: "@name", Severity: "error", Text: fmt.Sprintf("index name %q: %v", cfg.Prefix+req.Name, err)})
	}
	if err := validSchemaPath(req.SchemaPath); err != nil {
		src.msgs = append(src.msgs, message{Node: "@path", Severity: "error", Text: "schema path: " + err.Error()})
		req.SchemaPath = "schemas/" + req.Name + ".schema.yml"
	}
	src.file = schemaFile(cfg, req.SchemaPath)
	switch {
	case req.YAML != nil:
		src.text = []byte(*req.YAML)
		src.model, _ = modelOf(src.text) // a YAML error is reported by the loader
	case len(req.Model) > 0:
		doc, err := nodeOf(req.Model)
		if err != nil {
			return nil, badRequest{err}
		}
		if src.text, err = scaffold.Marshal(doc); err != nil {
			return nil, badRequest{err}
		}
		if src.model, err = modelOf(src.text); err != nil {
			return nil, badRequest{err}
		}
	default:
		return nil, badRequest{errors.New("give the schema as model or yaml")}
	}
	ix, err := schema.Parse(src.file, src.text)
	var list schema.ErrorList
	switch {
	case errors.As(err, &list):
		where := spansOf(src.text)
		for _, e := range list {
			src.msgs = append(src.msgs, message{Node: where.at(e.Line), Severity: "error", Line: e.Line, Text: e.Error()})
		}
	case err != nil:
		return nil, err
	default:
		src.ix = ix
	}
	return src, nil
}

func validSchemaPath(p string) error {
	switch {
	case p == "":
		return errors.New("is empty")
	case filepath.IsAbs(p) || strings.HasPrefix(filepath.Clean(filepath.FromSlash(p)), ".."):
		return fmt.Errorf("%q must be relative to the config's directory, inside it", p)
	case !strings.HasSuffix(p, ".yml") && !strings.HasSuffix(p, ".yaml"):
		return fmt.Errorf("%q must end in .yml or .yaml", p)
	}
	return nil
}

func (s *Server) evaluate(ctx context.Context, req request) (any, error) {
	src, err := s.parse(req)
	if err != nil {
		return nil, err
	}
	ev := &evaluation{YAML: string(src.text), Model: src.model, File: src.file, Messages: src.msgs}
	if src.ix != nil {
		ix := src.ix
		ev.Hash = flow.New(req.Name, ix, src.cfg.OnError).Hash
		ev.Alias = opensearch.HashAlias(src.cfg.Prefix, req.Name, ev.Hash)
		opts := mappingOptions(src.cfg)
		ev.Mapping = mapping.For(ix, opts)
		ev.Analysis = mapping.Settings(ix, opts, 1, 0)["analysis"]
		found, err := s.check(ctx, src.cfg, req.Name, req.SchemaPath, ix)
		if err != nil {
			return nil, err
		}
		where := spansOf(src.text)
		for _, f := range found {
			ev.Messages = append(ev.Messages, message{Node: where.at(f.Line), Severity: string(f.Severity), Line: f.Line, Text: f.Text()})
		}
		ev.Diff = compare(src.cfg, req.Name, ix, ev.Hash)
	}
	ev.Valid = src.ix != nil
	for _, m := range ev.Messages {
		if m.Severity == "error" {
			ev.Valid = false
		}
	}
	if ev.Messages == nil {
		ev.Messages = []message{}
	}
	return ev, nil
}

// mappingOptions are those of the first OpenSearch sink, or the defaults
// `flusso check` shows when there is none.
func mappingOptions(cfg *config.Config) mapping.Options {
	for _, s := range cfg.Sinks {
		if s.Type == config.OpenSearch {
			return mapping.Options{TextAnalysis: s.TextAnalysis, AutoSubfields: s.AutoSubfields}
		}
	}
	return mapping.Options{TextAnalysis: config.TextAnalysisBuiltin, AutoSubfields: true}
}

// check runs the schema checks of `flusso check` on ix alone, in a
// read-only transaction. The publication is not the designer's concern
// until the index is saved and run.
func (s *Server) check(ctx context.Context, cfg *config.Config, name, schemaPath string, ix *schema.Index) ([]check.Finding, error) {
	tx, err := s.db.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("checking the schema: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	r, err := check.Run(ctx, tx, []config.Index{{Name: name, SchemaPath: schemaPath, Schema: ix}},
		check.Options{Publication: "flusso", ManagePublication: true})
	if err != nil {
		return nil, fmt.Errorf("checking the schema: %w", err)
	}
	var out []check.Finding
	for _, f := range r.Findings {
		if f.Scope == check.ScopeSchema {
			out = append(out, f)
		}
	}
	return out, nil
}

// compare diffs ix with the schema saved under name.
func compare(cfg *config.Config, name string, ix *schema.Index, hash string) *diff {
	d := &diff{Changes: []string{}}
	var saved *schema.Index
	for _, c := range cfg.Indexes {
		if c.Name == name {
			saved = c.Schema
		}
	}
	if saved == nil {
		d.Reseed = true
		d.Changes = append(d.Changes, "new index: the first run builds it from scratch")
		return d
	}
	d.Saved, d.SavedHash = true, schema.Hash(saved)
	d.Reseed = d.SavedHash != hash
	was, now := flatten(saved), flatten(ix)
	var keys []string
	for k := range was {
		keys = append(keys, k)
	}
	for k := range now {
		if _, ok := was[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		a, inA := was[k]
		b, inB := now[k]
		switch {
		case !inA:
			d.Changes = append(d.Changes, "added "+k)
		case !inB:
			d.Changes = append(d.Changes, "removed "+k)
		case !reflect.DeepEqual(a, b):
			d.Changes = append(d.Changes, "changed "+k)
		}
	}
	return d
}

// flatten lists the parts of a schema by where they are: each field by its
// document path (without its nested fields), each top-level setting by its
// key, as the hash sees them (schema.Canonical).
func flatten(ix *schema.Index) map[string]any {
	var root map[string]any
	_ = json.Unmarshal(schema.Canonical(ix), &root)
	out := map[string]any{}
	var walk func(fields any, prefix string)
	walk = func(fields any, prefix string) {
		list, _ := fields.([]any)
		for _, f := range list {
			m, _ := f.(map[string]any)
			path := prefix + fmt.Sprint(m["name"])
			children := m["fields"]
			delete(m, "fields")
			out["field "+path] = m
			walk(children, path+".")
		}
	}
	walk(root["fields"], "")
	for k, v := range root {
		if k != "fields" {
			out[k] = v
		}
	}
	return out
}

// preview builds documents of the schema being edited, as the pipeline
// builds them (sqlbuild), from the keys given or the first root rows.
func (s *Server) preview(ctx context.Context, req request) (any, error) {
	src, err := s.parse(req)
	if err != nil {
		return nil, err
	}
	if src.ix == nil {
		return nil, badRequest{errors.New("the schema does not load: fix the errors shown first")}
	}
	// Compiled as every stage of the pipeline compiles its indexes.
	fx, err := flow.New(req.Name, src.ix, src.cfg.OnError).Compiled()
	if err != nil {
		return nil, badRequest{err}
	}
	x := fx.SQL
	tx, err := s.db.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("building documents: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	if err := x.Prepare(ctx, tx); err != nil {
		return nil, badRequest{err}
	}
	keys := req.Keys
	if len(keys) == 0 {
		n := min(max(req.Sample, 1), 50)
		if keys, err = x.Keys(ctx, tx, "", true, n); err != nil {
			return nil, badRequest{err}
		}
	}
	if len(keys) > 50 {
		return nil, badRequest{fmt.Errorf("%d keys: preview at most 50 documents at once", len(keys))}
	}
	docs, err := x.Build(ctx, tx, keys)
	if err != nil {
		return nil, badRequest{err}
	}
	type docView struct {
		ID    string          `json:"id"`
		Doc   json.RawMessage `json:"doc"` // null: no such document (no row, filtered out or soft deleted)
		Error string          `json:"error,omitempty"`
	}
	out := make([]docView, len(docs))
	for i, d := range docs {
		out[i] = docView{ID: d.ID, Doc: d.Body}
		if d.Err != nil {
			out[i].Error = d.Err.Error()
		}
		if d.Body == nil {
			out[i].Doc = json.RawMessage("null")
		}
	}
	return map[string]any{"docs": out}, nil
}
