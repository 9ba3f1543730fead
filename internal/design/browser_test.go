package design_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/check"
	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/sqlbuild"
)

// screenshotsVar names a directory to keep the screenshots in (the docs'
// are made with FLUSSO_TEST_SCREENSHOTS=docs/design).
const screenshotsVar = "FLUSSO_TEST_SCREENSHOTS"

// chromium returns the path of a headless Chromium, installed by
// deploy/dev/chromium.sh when missing. Without one the test is skipped,
// except under CI=true where it fails: a browser test that silently skips
// proves nothing.
func chromium(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(testenv.RepoRoot(t), "deploy", "dev", "chromium.sh")).Output()
	if err != nil {
		msg := "no Chromium for the browser test: deploy/dev/chromium.sh failed: " + err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + strings.TrimSpace(string(ee.Stderr))
		}
		if v := strings.ToLower(os.Getenv("CI")); v == "true" || v == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return strings.TrimSpace(string(out))
}

// TestBrowserComposeSaveCheck drives the designer in a real headless
// Chromium on the demo shop: start an index on users, add has_many orders,
// their items and each item's product with keyboard and clicks, see a
// document equal to what the pipeline's builder makes, see an error next
// to the field it concerns, save, and check the saved files as `flusso
// check` does.
func TestBrowserComposeSaveCheck(t *testing.T) {
	exe := chromium(t)
	d := start(t)
	shots := os.Getenv(screenshotsVar)
	if shots == "" {
		shots = t.TempDir()
	} else if !filepath.IsAbs(shots) {
		shots = filepath.Join(testenv.RepoRoot(t), shots)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1280, 800))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	// The first call starts the browser, which lives as long as the context
	// of that call: ctx, without deadline. Each step then has its own.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	fatal := func(what string, err error) {
		t.Helper()
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("%s: %v\npage:\n%s", what, err, page)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			fatal(what, err)
		}
	}
	get := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(sctx, a)
		if err != nil {
			fatal(what, err)
		}
		return v
	}
	js := func(expr string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Evaluate[any](expr)(ctx, tg)
			return chromedp.Void{}, err
		}
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	// change sets an input's value as typing it and leaving the box does.
	change := func(sel, value string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(chromedp.SetValue(css(sel), value),
			js(`document.querySelector(`+strconv.Quote(sel)+`).dispatchEvent(new Event('change'))`))
	}
	shot := func(name string, w, h int64, scale float64) {
		t.Helper()
		do("viewport "+name, chromedp.EmulateViewport(w, h, chromedp.EmulateScale(scale)), chromedp.Sleep(300*time.Millisecond))
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			fatal("screenshot "+name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		do("viewport", chromedp.EmulateViewport(1280, 800))
	}
	// node finds the tree node labelled label ("has_many orders") and
	// returns its id.
	node := func(label string) string {
		t.Helper()
		return get("find "+label, chromedp.Poll[string](`(() => { const b = [...document.querySelectorAll('#tree .sel')].find((b) => b.title === 'Edit `+label+`'); return b ? b.dataset.k.slice(4) : false; })()`, chromedp.WithPollingTimeout(10*time.Second)))
	}
	// valid waits for the server's verdict on the last edit, and that it is
	// valid.
	valid := chromedp.Steps(chromedp.WaitVisible(css(`#doc[aria-busy="false"]`)), chromedp.WaitVisible(css(`#status .ok`)))
	// addJoin opens the adder of node id, picks the option starting with
	// choice and presses Add, with the keyboard.
	addJoin := func(id, choice string) {
		t.Helper()
		adder := `[data-k="adder:` + id + `"]`
		do("settle", valid)
		// The adder stays open after an addition, for the next one.
		if open := get("adder open?", chromedp.Evaluate[string](`document.querySelector('`+adder+`') ? 'yes' : ''`)); open == "" {
			do("open the adder for "+choice, chromedp.Focus(css(`[data-k="add:`+id+`"]`)), chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(css(adder)))
		}
		found := get("pick "+choice, chromedp.Evaluate[string](`(() => { const s = document.querySelector('`+adder+`');
			const o = [...s.options].find((o) => o.text.startsWith('`+choice+`')); if (!o) return ''; s.value = o.value; return o.value; })()`))
		if found == "" {
			t.Fatalf("no option %q to add to node %q", choice, id)
		}
		do("add", chromedp.Focus(css(`[data-k="addgo:`+id+`"]`)), chromedp.KeyEvent(kb.Enter), valid)
	}

	do("open the designer", chromedp.Navigate(d.url+"/"), chromedp.WaitVisible(css(`[data-table="public.users"]`)))
	do("search users", chromedp.SendKeys(css(`#search`), "user"), chromedp.Click(css(`[data-table="public.users"]`)),
		chromedp.WaitVisible(css(`[data-start="public.users"]`)))
	shot("catalog.png", 1280, 800, 1)
	do("pick users", chromedp.Click(css(`[data-start="public.users"]`)), valid)

	addJoin("", "has_many orders")
	orders := node("has_many orders")
	do("valid", valid)
	addJoin(orders, "has_many order_items")
	items := node("has_many order_items")
	do("valid", valid)
	addJoin(items, "belongs_to product")
	node("belongs_to product")
	do("valid", valid)
	// Through a junction, and aggregates over a join.
	addJoin("", "many_to_many tags")
	node("many_to_many tags")
	addJoin("", "count of orders")
	node("count orders_count")
	addJoin("", "sum of orders.total")
	node("sum sum_orders_total")
	do("valid", valid, chromedp.WaitEnabled(css(`#save`)), chromedp.Click(css(`[data-k="addclose:"]`)))

	// Name it, then see the document of customer 4.
	do("name the index",
		change(`#name`, "customers"),
		chromedp.WaitVisible(`//span[contains(@class, "hash") and contains(., "demo_customers_")]`),
		change(`#path`, "schemas/customers.schema.yml"),
		valid)
	do("preview customer 4",
		chromedp.Click(css(`#tabs [data-tab="docs"]`)),
		chromedp.SetValue(css(`#keys`), "4"),
		chromedp.Click(css(`#preview-form button`)),
		chromedp.WaitVisible(css(`#docs pre[data-id="4"]`)))
	doc := get("document", chromedp.Text(css(`#docs pre[data-id="4"]`)))
	yaml := get("yaml", chromedp.Value(css(`#yaml`)))
	shot("documents.png", 1280, 800, 1)
	do("mapping", chromedp.Click(css(`#tabs [data-tab="mapping"]`)), chromedp.WaitVisible(`//pre[@id="mapping" and contains(., '"nested"')]`))
	shot("mapping.png", 1280, 800, 1)
	do("back to documents", chromedp.Click(css(`#tabs [data-tab="docs"]`)))

	// The document shown is the builder's for the schema shown.
	ev := d.evaluateYAML("customers", yaml)
	x, err := sqlbuild.Compile("customers", ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Prepare(context.Background(), d.db); err != nil {
		t.Fatal(err)
	}
	built, err := x.Build(context.Background(), d.db, []string{"4"})
	if err != nil {
		t.Fatal(err)
	}
	var shown, want any
	if err := json.Unmarshal([]byte(doc), &shown); err != nil {
		t.Fatalf("the document shown is not JSON: %v\n%s", err, doc)
	}
	_ = json.Unmarshal(built[0].Body, &want)
	if !reflect.DeepEqual(shown, want) {
		t.Fatalf("document shown:\n%s\nbuilt:\n%s", doc, built[0].Body)
	}
	if !strings.Contains(doc, `"product": {`) || !strings.Contains(doc, `"order_items": [`) || !strings.Contains(doc, `"orders_count": 4`) ||
		!strings.Contains(doc, `"tags": [`) || !strings.Contains(doc, `"sum_orders_total": `) {
		t.Errorf("the document lacks the nested items and products:\n%s", doc)
	}

	// An error, shown on the field it concerns with the CLI's text, and
	// nothing can be saved meanwhile.
	fk := `[data-k="foreign_key:` + orders + `"]`
	do("introduce an error",
		chromedp.Focus(css(`[data-k="sel:`+orders+`"]`)), chromedp.KeyEvent(kb.Enter), // the keyboard opens the inspector
		chromedp.WaitVisible(css(fk)),
		change(fk, "usr_id"),
		chromedp.WaitVisible(css(`[data-node="`+orders+`"].has-error .msg.error`)),
		chromedp.WaitVisible(css(`#save:disabled`)),
		chromedp.WaitVisible(css(`#status .bad`)))
	msg := get("error text", chromedp.Text(css(`[data-node="`+orders+`"] .msg.error`)))
	if want := "error   customers.schema.yml:"; !strings.HasPrefix(msg, want) || !strings.Contains(msg, "field orders: foreign_key: column public.orders.usr_id does not exist") {
		t.Errorf("error shown on orders: %q", msg)
	}
	shot("error.png", 1280, 800, 1)
	shot("phone.png", 390, 844, 2)
	do("fix it", change(fk, "user_id"), valid, chromedp.Click(css(`#tabs [data-tab="yaml"]`)))
	shot("compose.png", 1280, 800, 1)

	// An edit of the YAML itself redraws the tree from it.
	edited := strings.Replace(get("yaml", chromedp.Value(css(`#yaml`))), "  - text: email\n    required: true\n",
		"  - keyword: email\n    required: true\n    transforms: [trim, lowercase]\n", 1)
	do("edit the YAML", chromedp.SetValue(css(`#yaml`), edited), chromedp.Focus(css(`#yaml`)),
		chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierCtrl)), valid,
		chromedp.WaitVisible(`//button[@title="Edit keyword email"]`))
	if got := get("model", chromedp.Evaluate[string](`JSON.stringify(S.model.fields[1])`)); got != `{"keyword":"email","required":true,"transforms":["trim","lowercase"]}` {
		t.Errorf("the tree's email after the YAML edit: %s", got)
	}
	yaml = get("yaml", chromedp.Value(css(`#yaml`)))

	// Save with the keyboard, then check the saved files.
	do("save",
		chromedp.Focus(css(`#search`)),
		chromedp.KeyEvent("s", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.WaitVisible(`//span[contains(@class, "ok") and starts-with(., "saved ")]`))
	status := get("status", chromedp.Text(css(`#status`)))
	saved, err := os.ReadFile(filepath.Join(filepath.Dir(d.config), "schemas", "customers.schema.yml"))
	if err != nil {
		t.Fatalf("status %q: %v", status, err)
	}
	if string(saved) != yaml {
		t.Errorf("saved:\n%s\nshown before the save:\n%s", saved, yaml)
	}
	cfg, err := config.Load(d.config)
	if err != nil {
		t.Fatalf("the saved config does not load: %v", err)
	}
	r, err := check.Run(context.Background(), d.db, cfg.Indexes, check.Options{Publication: "flusso", ManagePublication: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || len(r.Indexes) != 3 {
		var b strings.Builder
		_ = r.Print(&b)
		t.Errorf("check of the saved deployment:\n%s", b.String())
	}
}
