package design_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/internal/design"
	"github.com/flusso/flusso/internal/design/demodb"
	"github.com/flusso/flusso/pkg/check"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/mapping"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// designer serves the designer on the demo deployment.
type designer struct {
	t      *testing.T
	url    string // of the server
	config string
	db     *pgxpool.Pool
}

func start(t *testing.T) *designer {
	t.Helper()
	dbURL := demodb.Database(t)
	cfg := demodb.Deployment(t, dbURL)
	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	ts := httptest.NewUnstartedServer(nil)
	ts.Config.Handler = design.New(cfg, db).Handler(ts.Listener.Addr().String())
	ts.Start()
	t.Cleanup(ts.Close)
	return &designer{t: t, url: ts.URL, config: cfg, db: db}
}

// call posts body to an API path (GET when body is nil) and decodes the
// answer into out, returning the status.
func (d *designer) call(path string, body, out any) int {
	d.t.Helper()
	method := http.MethodGet
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			d.t.Fatal(err)
		}
		method, r = http.MethodPost, bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.url+path, r)
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", d.url)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			d.t.Fatalf("%s: decoding %s: %v", path, b, err)
		}
	}
	return res.StatusCode
}

// evaluateYAML loads text as the designer's YAML and fails the test unless
// it is valid.
func (d *designer) evaluateYAML(name, text string) *schema.Index {
	d.t.Helper()
	var ev evalResp
	d.call("/api/evaluate", map[string]any{"name": name, "schema_path": "schemas/" + name + ".schema.yml", "yaml": text}, &ev)
	if !ev.Valid {
		d.t.Fatalf("not valid: %+v", ev.Messages)
	}
	ix, err := schema.Parse("x.yml", []byte(ev.YAML))
	if err != nil {
		d.t.Fatal(err)
	}
	return ix
}

type stateResp struct {
	Tables []struct {
		Name      string `json:"name"`
		Junction  bool   `json:"junction"`
		Relations []struct {
			Kind  string          `json:"kind"`
			Name  string          `json:"name"`
			Table string          `json:"table"`
			Field json.RawMessage `json:"field"`
		} `json:"relations"`
		Fields map[string]json.RawMessage `json:"fields"`
	} `json:"tables"`
	Indexes []struct {
		Name  string          `json:"name"`
		Model json.RawMessage `json:"model"`
		Hash  string          `json:"hash"`
	} `json:"indexes"`
}

type evalResp struct {
	YAML     string          `json:"yaml"`
	Model    json.RawMessage `json:"model"`
	Valid    bool            `json:"valid"`
	Messages []struct {
		Node, Severity, Text string
		Line                 int
	} `json:"messages"`
	Hash     string         `json:"hash"`
	Alias    string         `json:"alias"`
	Mapping  map[string]any `json:"mapping"`
	Analysis map[string]any `json:"analysis"`
	Diff     struct {
		Saved     bool     `json:"saved"`
		SavedHash string   `json:"saved_hash"`
		Reseed    bool     `json:"reseed"`
		Changes   []string `json:"changes"`
	} `json:"diff"`
}

// relationField is the field the catalog offers for a join, as the app
// adds it.
func (s *stateResp) relationField(t *testing.T, table, name string) map[string]any {
	t.Helper()
	for _, tb := range s.Tables {
		for _, r := range tb.Relations {
			if tb.Name == table && r.Name == name {
				var f map[string]any
				if err := json.Unmarshal(r.Field, &f); err != nil {
					t.Fatal(err)
				}
				return f
			}
		}
	}
	t.Fatalf("no relation %s from %s", name, table)
	return nil
}

// composed is the index of the proof: users, has_many orders, each order's
// has_many items, each item's belongs_to product, built from the fields the
// catalog offers. Models are ordered JSON: the type key goes first.
func composed(t *testing.T, st *stateResp) json.RawMessage {
	t.Helper()
	product := st.relationField(t, "order_items", "product")
	items := st.relationField(t, "orders", "order_items")
	orders := st.relationField(t, "users", "orders")
	items["fields"] = append(items["fields"].([]any), product)
	orders["fields"] = append(orders["fields"].([]any), items)
	o, _ := json.Marshal(orders)
	return json.RawMessage(`{"version": 1, "table": "users", "primary_key": "id", "soft_delete": {"column": "deleted_at"},
		"fields": [{"integer": "id"}, {"keyword": "email", "required": true}, ` + string(o) + `]}`)
}

func TestStateCatalog(t *testing.T) {
	d := start(t)
	var st stateResp
	if code := d.call("/api/state", nil, &st); code != 200 {
		t.Fatalf("state: %d", code)
	}
	junctions := map[string]bool{}
	rels := map[string][]string{}
	for _, tb := range st.Tables {
		junctions[tb.Name] = tb.Junction
		for _, r := range tb.Relations {
			rels[tb.Name] = append(rels[tb.Name], r.Kind+" "+r.Name)
		}
	}
	want := map[string]bool{"users": false, "orders": false, "order_items": false, "user_tags": true, "product_tags": true, "products": false}
	for name, j := range want {
		if junctions[name] != j {
			t.Errorf("%s junction = %v, want %v", name, junctions[name], j)
		}
	}
	if got := strings.Join(rels["users"], ", "); got != "has_many orders, has_one profile, many_to_many tags" {
		t.Errorf("relations of users: %s", got)
	}
	if len(st.Indexes) != 2 || st.Indexes[0].Name != "users" || len(st.Indexes[0].Model) == 0 {
		t.Errorf("saved indexes: %+v", st.Indexes)
	}
	var email map[string]any
	for _, tb := range st.Tables {
		if tb.Name == "users" {
			_ = json.Unmarshal(tb.Fields["email"], &email)
		}
	}
	if !reflect.DeepEqual(email, map[string]any{"text": "email", "required": true}) {
		t.Errorf("field offered for users.email: %v", email)
	}
}

// TestComposeRoundTrip: a composed index evaluates valid; its YAML loads to
// the mapping and hash the designer showed; saved, the deployment loads it
// with the same mapping and hash, and the YAML of the saved file is the one
// shown.
func TestComposeRoundTrip(t *testing.T) {
	d := start(t)
	var st stateResp
	d.call("/api/state", nil, &st)
	model := composed(t, &st)
	req := map[string]any{"name": "customers", "schema_path": "schemas/customers.schema.yml", "model": model}
	var ev evalResp
	if code := d.call("/api/evaluate", req, &ev); code != 200 || !ev.Valid {
		t.Fatalf("evaluate: %d %+v\n%s", code, ev.Messages, ev.YAML)
	}
	if !strings.HasPrefix(ev.Alias, "demo_customers_") || len(ev.Hash) != schema.HashLen || !ev.Diff.Reseed || ev.Diff.Saved {
		t.Errorf("alias %q hash %q diff %+v", ev.Alias, ev.Hash, ev.Diff)
	}
	ix, err := schema.Parse("x.yml", []byte(ev.YAML))
	if err != nil {
		t.Fatal(err)
	}
	if schema.Hash(ix) != ev.Hash {
		t.Errorf("hash of the shown YAML %s, shown %s", schema.Hash(ix), ev.Hash)
	}
	var saved struct {
		SchemaFile    string `json:"schema_file"`
		ConfigChanged bool   `json:"config_changed"`
		Hash          string `json:"hash"`
	}
	if code := d.call("/api/save", req, &saved); code != 200 || !saved.ConfigChanged || saved.Hash != ev.Hash {
		t.Fatalf("save: %d %+v", code, saved)
	}
	text, err := os.ReadFile(saved.SchemaFile)
	if err != nil || string(text) != ev.YAML {
		t.Fatalf("saved file differs from the YAML shown (%v):\n%s", err, text)
	}
	cfg, err := config.Load(d.config)
	if err != nil {
		t.Fatal(err)
	}
	var loaded *schema.Index
	for _, c := range cfg.Indexes {
		if c.Name == "customers" {
			loaded = c.Schema
		}
	}
	if loaded == nil {
		t.Fatal("the saved index is not in the config")
	}
	want := mapping.For(loaded, mapping.Options{TextAnalysis: config.TextAnalysisBuiltin, AutoSubfields: true})
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(ev.Mapping)
	if string(wantJSON) != string(gotJSON) {
		t.Errorf("mapping shown:\n%s\nmapping of the saved file:\n%s", gotJSON, wantJSON)
	}
	if _, ok := ev.Analysis["analyzer"].(map[string]any)["flusso_text"]; !ok {
		t.Errorf("the analysis lacks the analyzers the mapping names: %v", ev.Analysis)
	}
	// Open the saved index again: same model, same hash, nothing to reseed.
	var again evalResp
	d.call("/api/evaluate", map[string]any{"name": "customers", "schema_path": "schemas/customers.schema.yml", "yaml": string(text)}, &again)
	if !again.Valid || again.Hash != ev.Hash || again.Diff.Reseed || len(again.Diff.Changes) != 0 || string(again.Model) != string(ev.Model) {
		t.Errorf("reopened: valid %v hash %s diff %+v\nmodel %s\nwas   %s", again.Valid, again.Hash, again.Diff, again.Model, ev.Model)
	}
	// A change of shape changes the hash: reseed, with the change named.
	var changed evalResp
	d.call("/api/evaluate", map[string]any{"name": "customers", "schema_path": "schemas/customers.schema.yml",
		"yaml": strings.Replace(string(text), "  - keyword: email\n", "  - keyword: email\n    transforms: [lowercase]\n", 1)}, &changed)
	if !changed.Valid || !changed.Diff.Reseed || !reflect.DeepEqual(changed.Diff.Changes, []string{"changed field email"}) {
		t.Errorf("after a change: %+v", changed.Diff)
	}
}

// TestPreviewIsTheBuilder: the documents previewed are the bytes sqlbuild
// builds for the same keys, and the first rows when no key is given.
func TestPreviewIsTheBuilder(t *testing.T) {
	d := start(t)
	var st stateResp
	d.call("/api/state", nil, &st)
	model := composed(t, &st)
	type docs struct {
		Docs []struct {
			ID    string          `json:"id"`
			Doc   json.RawMessage `json:"doc"`
			Error string          `json:"error"`
		} `json:"docs"`
	}
	var got docs
	req := map[string]any{"name": "customers", "schema_path": "schemas/c.schema.yml", "model": model, "keys": []string{"4", "6", "3", "999"}}
	if code := d.call("/api/preview", req, &got); code != 200 || len(got.Docs) != 4 {
		t.Fatalf("preview: %d %+v", code, got)
	}
	var ev evalResp
	d.call("/api/evaluate", req, &ev)
	ix, err := schema.Parse("c.yml", []byte(ev.YAML))
	if err != nil {
		t.Fatal(err)
	}
	x, err := sqlbuild.Compile("customers", ix)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Prepare(context.Background(), d.db); err != nil {
		t.Fatal(err)
	}
	built, err := x.Build(context.Background(), d.db, []string{"4", "6", "3", "999"})
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range built {
		g := got.Docs[i]
		if g.ID != b.ID || string(g.Doc) != string(orNull(b.Body)) || g.Error != "" {
			t.Errorf("document %s: preview %s (%s)\nbuilder %s", b.ID, g.Doc, g.Error, b.Body)
		}
	}
	if !strings.Contains(string(got.Docs[0].Doc), `"product":{"id":`) {
		t.Errorf("document 4 lacks the items' products: %s", got.Docs[0].Doc)
	}
	if string(got.Docs[3].Doc) != "null" {
		t.Errorf("key 999 (no row) previews as %s, want null", got.Docs[3].Doc)
	}
	// No keys: the first rows in key order, as the backfill reads them.
	var first docs
	d.call("/api/preview", map[string]any{"name": "customers", "schema_path": "schemas/c.schema.yml", "model": model, "sample": 2}, &first)
	if len(first.Docs) != 2 || first.Docs[0].ID != "1" || first.Docs[1].ID != "2" {
		t.Errorf("sample: %+v", first.Docs)
	}
}

// TestPreviewIsReadOnly: documents are built in a read-only transaction, so
// a schema whose raw filter would write (here, advance a sequence) fails
// instead of changing the database.
func TestPreviewIsReadOnly(t *testing.T) {
	d := start(t)
	seq := func() int64 {
		var v int64
		if err := d.db.QueryRow(context.Background(), "SELECT last_value FROM orders_id_seq").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := seq()
	yaml := "version: 1\ntable: users\nprimary_key: id\nfilters: [{raw: \"nextval('orders_id_seq') > 0\"}]\nfields:\n  - integer: id\n"
	var out map[string]string
	code := d.call("/api/preview", map[string]any{"name": "users", "schema_path": "schemas/users.schema.yml", "yaml": yaml, "keys": []string{"1"}}, &out)
	if code != 400 || !strings.Contains(out["error"], "read-only transaction") {
		t.Errorf("preview with a writing filter: %d %v", code, out)
	}
	if after := seq(); after != before {
		t.Errorf("the preview advanced orders_id_seq from %d to %d", before, after)
	}
}

func orNull(b []byte) []byte {
	if b == nil {
		return []byte("null")
	}
	return b
}

// TestErrorsPlacedWithCLIText: a problem is placed on the field it is about,
// with the text `flusso check` prints for it.
func TestErrorsPlacedWithCLIText(t *testing.T) {
	d := start(t)
	base := "version: 1\ntable: users\nprimary_key: id\nfields:\n  - integer: id\n  - has_many: orders\n    table: orders\n    foreign_key: user_id\n    primary_key: id\n    fields:\n      - integer: id\n"
	for _, tc := range []struct {
		name, yaml, node, text string
	}{
		{"unknown key", base + "      - keyword: status\n        requird: true\n", "1.1",
			"schemas/users.schema.yml:13: fields[1].orders.fields[1]: unknown key \"requird\"; did you mean \"required\"?"},
		{"wrong join key", strings.Replace(base, "foreign_key: user_id", "column: user_id", 1), "1",
			"has_many takes foreign_key"},
		{"missing column", base + "      - keyword: state\n", "1.1",
			"error   users.schema.yml:12 field orders.state: keyword: column public.orders.state does not exist"},
		{"type mismatch", base + "      - boolean: total\n", "1.1",
			"error   users.schema.yml:12 field orders.total: "},
		{"yaml syntax", base + "  - keyword: [\n", "", "schemas/users.schema.yml:"},
		{"no version", strings.Replace(base, "version: 1\n", "", 1), "", "users.schema.yml:1: missing version: add `version: 1`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ev evalResp
			d.call("/api/evaluate", map[string]any{"name": "users", "schema_path": "schemas/users.schema.yml", "yaml": tc.yaml}, &ev)
			if ev.Valid {
				t.Fatal("valid")
			}
			for _, m := range ev.Messages {
				if m.Node == tc.node && strings.Contains(m.Text, tc.text) {
					return
				}
			}
			t.Errorf("no message on node %q containing %q: %+v", tc.node, tc.text, ev.Messages)
		})
	}

	// The check's messages are the CLI's: the report printed for the same
	// schema holds each of them.
	bad := base + "      - boolean: total\n      - keyword: state\n"
	file := filepath.Join(filepath.Dir(d.config), "schemas", "users.schema.yml")
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	ix, err := schema.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	r, err := check.Run(context.Background(), d.db, []config.Index{{Name: "users", Schema: ix}}, check.Options{Publication: "flusso", ManagePublication: true})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := r.Print(&out); err != nil {
		t.Fatal(err)
	}
	printed := strings.Join(strings.Fields(out.String()), " ")
	var ev evalResp
	d.call("/api/evaluate", map[string]any{"name": "users", "schema_path": "schemas/users.schema.yml", "yaml": bad}, &ev)
	if len(ev.Messages) != 2 {
		t.Fatalf("messages: %+v", ev.Messages)
	}
	for _, m := range ev.Messages {
		if !strings.Contains(printed, strings.Join(strings.Fields(m.Text), " ")) {
			t.Errorf("%q is not what check prints:\n%s", m.Text, out.String())
		}
	}

	// Name and path are checked too, and nothing invalid is saved.
	var named evalResp
	d.call("/api/evaluate", map[string]any{"name": "Bad Name", "schema_path": "../x.yml", "yaml": base}, &named)
	nodes := map[string]string{}
	for _, m := range named.Messages {
		nodes[m.Node] = m.Text
	}
	if !strings.HasPrefix(nodes["@name"], `index name "Bad Name" must be a Postgres identifier`) || !strings.Contains(nodes["@path"], "must be relative to the config's directory") || named.Valid {
		t.Errorf("name and path messages: %+v", named.Messages)
	}
	var saveErr map[string]string
	if code := d.call("/api/save", map[string]any{"name": "users", "schema_path": "schemas/users.schema.yml", "yaml": bad}, &saveErr); code != 400 ||
		!strings.Contains(saveErr["error"], "not saved: error   users.schema.yml:12 field orders.total") {
		t.Errorf("saving an invalid schema: %d %v", code, saveErr)
	}
}

// TestSaveKeepsTheConfig: saving adds or updates only the [[index]] entry;
// every other byte of flusso.toml stays.
func TestSaveKeepsTheConfig(t *testing.T) {
	d := start(t)
	before, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	var st stateResp
	d.call("/api/state", nil, &st)
	model := composed(t, &st)
	save := func(name, path string) bool {
		t.Helper()
		var out map[string]any
		if code := d.call("/api/save", map[string]any{"name": name, "schema_path": path, "model": model}, &out); code != 200 {
			t.Fatalf("save %s %s: %d %v", name, path, code, out)
		}
		return out["config_changed"] == true
	}
	save("customers", "schemas/customers.schema.yml")
	after, _ := os.ReadFile(d.config)
	want := string(before) + "\n[[index]]\nname = \"customers\"\nschema = \"schemas/customers.schema.yml\"\nenabled = true\n"
	if string(after) != want {
		t.Fatalf("config after adding an index:\n%s\nwant\n%s", after, want)
	}
	// The existing users entry moves to another file: only its schema line changes.
	save("users", "schemas/people.schema.yml")
	moved, _ := os.ReadFile(d.config)
	want = strings.Replace(want, `schema = "schemas/users.schema.yml"`, `schema = "schemas/people.schema.yml"`, 1)
	if string(moved) != want {
		t.Fatalf("config after moving users:\n%s", moved)
	}
	// Saving the same again leaves the config alone.
	if save("users", "schemas/people.schema.yml") {
		t.Error("an unchanged entry is reported as a change of the config")
	}
	if again, _ := os.ReadFile(d.config); string(again) != want {
		t.Fatal("an unchanged entry rewrote the config")
	}
	cfg, err := config.Load(d.config)
	if err != nil || len(cfg.Indexes) != 3 {
		t.Fatalf("config after the saves: %v %+v", err, cfg)
	}

	// A save the config would not load with leaves both files as they
	// were: here the indexes are an inline array, which an [[index]] entry
	// cannot extend.
	inline := strings.Replace(want, "[[index]]\nname = \"users\"\nschema = \"schemas/people.schema.yml\"\nenabled = true\n", "", 1)
	inline = strings.Replace(inline, "[[index]]\nname = \"products\"\nschema = \"schemas/products.schema.yml\"\nenabled = true\n", "", 1)
	inline = strings.Replace(inline, "prefix = \"demo_\"\n",
		"prefix = \"demo_\"\nindex = [{ name = \"users\", schema = \"schemas/people.schema.yml\", enabled = true }, { name = \"products\", schema = \"schemas/products.schema.yml\", enabled = true }]\n", 1)
	inline = strings.Replace(inline, "\n[[index]]\nname = \"customers\"\nschema = \"schemas/customers.schema.yml\"\nenabled = true\n", "", 1)
	if err := os.WriteFile(d.config, []byte(inline), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(d.config); err != nil {
		t.Fatalf("the inline form does not load: %v\n%s", err, inline)
	}
	want = inline
	var out map[string]string
	code := d.call("/api/save", map[string]any{"name": "long", "schema_path": "schemas/long.schema.yml", "model": model}, &out)
	if code != 400 || !strings.HasPrefix(out["error"], "not saved: the config would not load: "+d.config+":") {
		t.Errorf("saving next to an inline array of indexes: %d %v", code, out)
	}
	if now, _ := os.ReadFile(d.config); string(now) != want {
		t.Errorf("a refused save changed the config:\n%s", now)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(d.config), "schemas", "long.schema.yml")); !os.IsNotExist(err) {
		t.Errorf("a refused save left its schema file: %v", err)
	}
}

// TestGuard: only same-origin JSON writes to the designer's own address.
func TestGuard(t *testing.T) {
	d := start(t)
	do := func(method, host, origin, ctype string) int {
		req, _ := http.NewRequest(method, d.url+"/api/evaluate", strings.NewReader(`{}`))
		if method == http.MethodGet {
			req, _ = http.NewRequest(method, d.url+"/api/state", nil)
		}
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	port := d.url[strings.LastIndexByte(d.url, ':'):]
	for _, tc := range []struct {
		name                        string
		method, host, origin, ctype string
		want                        int
	}{
		{"same origin", "POST", "", d.url, "application/json", 400}, // 400: the empty request
		{"other site", "POST", "", "http://evil.example", "application/json", 403},
		{"no origin", "POST", "", "", "application/json", 403},
		{"form post", "POST", "", d.url, "text/plain", 415},
		{"rebound name", "GET", "evil.example" + port, "", "", 421},
		{"localhost", "GET", "localhost" + port, "", "", 200},
	} {
		if got := do(tc.method, tc.host, tc.origin, tc.ctype); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
