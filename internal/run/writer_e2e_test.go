package run_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/run"
	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

// The tests in this file prove the writer semantics through the whole
// pipeline: on_error, quarantine and its tooling, reindex through the
// control surface, fan-out, schema changes, prefixes and ordering.

// itemsSchema maps a text column onto an integer field, so a row whose n is
// not a number is a document OpenSearch refuses item by item.
const itemsSchema = `version: 1
table: items
primary_key: id
fields:
  - integer: id
  - custom: n
    postgres: [text]
    opensearch: integer
`

const itemsTable = `CREATE TABLE items (id int PRIMARY KEY, n text NOT NULL);
	INSERT INTO items VALUES (1, '1'), (2, '2'), (3, '3');`

func TestOnErrorStopHoldsTheSlotUntilTheDataIsFixed(t *testing.T) {
	e := newE2E(t, itemsTable)
	cfg := e.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "items", Schema: itemsSchema}}})
	data := t.TempDir()

	p := harness.Launch(t, e.Options(cfg, data))
	e.awaitDocs("the backfill", "items", func(d map[string]map[string]any) bool { return len(d) == 3 })

	bad := e.execXID(`UPDATE items SET n = 'abc' WHERE id = 2`)
	e.Exec(`UPDATE items SET n = '33' WHERE id = 3`)
	err := p.Failure()
	for _, want := range []string{"index items", "document 2", "sink primary", "failed to parse field [n]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the stop message %q does not name %q", err, want)
		}
	}
	if !e.unconfirmed()[bad] {
		t.Fatalf("the slot was confirmed past the refused transaction %s", bad)
	}
	if got := field(e.docsAt(e.Prefix+"items"), "2", "n"); got != "2" {
		t.Fatalf("document 2 holds n = %v; the refused build must not land", got)
	}

	// A restart with the data unchanged stops again at the same document.
	p = harness.Launch(t, e.Options(cfg, data))
	if err := p.Failure(); !strings.Contains(err.Error(), "document 2") {
		t.Fatalf("restart without a fix: %v", err)
	}

	e.Exec(`UPDATE items SET n = '2222' WHERE id = 2`)
	p = harness.Launch(t, e.Options(cfg, data))
	e.awaitDocs("the fixed document and the one after it", "items", func(d map[string]map[string]any) bool {
		return field(d, "2", "n") == "2222" && field(d, "3", "n") == "33"
	})
	caughtUp := e.WALPosition()
	e.Exec(`UPDATE items SET n = '11' WHERE id = 1`)
	e.awaitConfirmed(caughtUp)
	p.CheckRunning()
	p.StopClean()
}

func TestOnErrorSkipQuarantinesAndGoesOn(t *testing.T) {
	cases := []struct {
		name             string
		global, override string
		skip             bool
	}{
		{name: "global skip", global: "skip", skip: true},
		{name: "index skip over global stop", override: "skip", skip: true},
		{name: "index stop over global skip", global: "skip", override: "stop"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newE2E(t, itemsTable)
			cfg := e.WriteConfig(harness.Config{OnError: tc.global, Indexes: []harness.Index{{Name: "items", Schema: itemsSchema, OnError: tc.override}}})
			opts := e.Options(cfg, "")
			opts.NATSURL = testenv.NATS(t)
			p := harness.Launch(t, opts)
			e.awaitDocs("the backfill", "items", func(d map[string]map[string]any) bool { return len(d) == 3 })

			e.Exec(`UPDATE items SET n = 'abc' WHERE id = 2`)
			e.Exec(`UPDATE items SET n = '33' WHERE id = 3`)
			if !tc.skip {
				if err := p.Failure(); !strings.Contains(err.Error(), "index items, document 2") {
					t.Fatalf("on_error = stop for the index: the run ended with %v", err)
				}
				return
			}
			e.Exec(`INSERT INTO items VALUES (4, '4')`)
			e.awaitDocs("the documents after the refused one", "items", func(d map[string]map[string]any) bool {
				return field(d, "3", "n") == "33" && field(d, "4", "n") == "4"
			})
			if got := field(e.docsAt(e.Prefix+"items"), "2", "n"); got != "2" {
				t.Errorf("document 2 holds n = %v; the refused build must not land", got)
			}

			await(t, "documents_quarantined in /status", func() (bool, string) {
				st := status(t, p)
				ix := indexStatus(st, "items")
				return st["documents_quarantined"] == 1.0 && ix["documents_quarantined"] == 1.0, fmt.Sprint(st)
			})
			metric := regexp.MustCompile(`(?m)^flusso_documents_quarantined_total\{[^}]*index="items"[^}]*\} 1$`)
			await(t, "flusso_documents_quarantined_total", func() (bool, string) {
				_, body := call(t, http.MethodGet, p.PublicURL()+"/metrics", nil)
				return metric.Match(body), string(body)
			})
			entries := quarantined(t, opts.NATSURL, broker.QuarantineFilter{Index: "items"})
			if len(entries) != 1 {
				t.Fatalf("quarantine holds %d entries, want 1: %+v", len(entries), entries)
			}
			q := entries[0]
			if q.Sink != "primary" || q.Index != "items" || q.ID != "2" || q.Version == 0 || !strings.Contains(q.Reason, "failed to parse field [n]") {
				t.Errorf("quarantine entry %+v does not say sink, index, id, version and reason", q)
			}

			e.Exec(`UPDATE items SET n = '5' WHERE id = 4`)
			e.awaitDocs("a later change", "items", func(d map[string]map[string]any) bool { return field(d, "4", "n") == "5" })
			p.CheckRunning()
			p.StopClean()
		})
	}
}

func TestQuarantineListAndReplay(t *testing.T) {
	cases := []struct {
		name     string
		external bool // NATS outside the pipeline: the tooling works while it runs
	}{
		{name: "nats-url while the pipeline runs", external: true},
		{name: "data-dir of a stopped pipeline"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newE2E(t, itemsTable)
			cfg := e.WriteConfig(harness.Config{OnError: "skip", Indexes: []harness.Index{{Name: "items", Schema: itemsSchema}}})
			data := t.TempDir()
			opts := e.Options(cfg, data)
			where := []string{"--data-dir", data}
			if tc.external {
				opts.NATSURL = testenv.NATS(t)
				where = []string{"--nats-url", opts.NATSURL}
			}
			p := harness.Launch(t, opts)
			e.awaitDocs("the backfill", "items", func(d map[string]map[string]any) bool { return len(d) == 3 })
			e.Exec(`UPDATE items SET n = 'abc' WHERE id = 2`)
			await(t, "the refused document to be quarantined", func() (bool, string) {
				st := status(t, p)
				return st["documents_quarantined"] == 1.0, fmt.Sprint(st)
			})

			// The data is fixed where the pipeline does not see it (the table
			// is out of the publication meanwhile), so only a replay can
			// rebuild the document.
			e.Exec(`ALTER PUBLICATION flusso DROP TABLE items`)
			e.Exec(`UPDATE items SET n = '22' WHERE id = 2`)
			e.Exec(`ALTER PUBLICATION flusso ADD TABLE items`)
			e.Exec(`UPDATE items SET n = '11' WHERE id = 1`)
			e.awaitDocs("a later change", "items", func(d map[string]map[string]any) bool { return field(d, "1", "n") == "11" })
			if got := field(e.docsAt(e.Prefix+"items"), "2", "n"); got != "2" {
				t.Fatalf("document 2 holds n = %v before the replay; want the last accepted build, 2", got)
			}
			if !tc.external {
				p.StopClean()
			}

			var listed []broker.QuarantineEntry
			if err := json.Unmarshal([]byte(flusso(t, append([]string{"quarantine", "list", "--format", "json"}, where...)...)), &listed); err != nil {
				t.Fatalf("decoding the JSON list: %v", err)
			}
			if len(listed) != 1 || listed[0].Index != "items" || listed[0].ID != "2" || listed[0].Sink != "primary" ||
				!strings.Contains(listed[0].Reason, "failed to parse field [n]") {
				t.Fatalf("quarantine list: %+v", listed)
			}
			human := flusso(t, append([]string{"quarantine", "list", "--index", "items"}, where...)...)
			if !strings.Contains(human, "SINK") || !strings.Contains(human, "items") || !strings.Contains(human, "failed to parse field [n]") {
				t.Errorf("human list:\n%s", human)
			}
			if other := flusso(t, append([]string{"quarantine", "list", "--index", "nothing", "--format", "json"}, where...)...); strings.TrimSpace(other) != "[]" {
				t.Errorf("list of another index: %s", other)
			}

			out := flusso(t, append([]string{"quarantine", "replay", "--index", "items"}, where...)...)
			if !strings.Contains(out, "replayed 1 entries") {
				t.Errorf("replay said: %s", out)
			}
			if !tc.external {
				if left := flusso(t, append([]string{"quarantine", "list", "--format", "json"}, where...)...); strings.TrimSpace(left) != "[]" {
					t.Errorf("entries left after the replay: %s", left)
				}
				p = harness.Launch(t, opts)
			}
			e.awaitDocs("the replayed document", "items", func(d map[string]map[string]any) bool { return field(d, "2", "n") == "22" })
			if tc.external {
				if left := quarantined(t, opts.NATSURL, broker.QuarantineFilter{}); len(left) != 0 {
					t.Errorf("entries left after the replay: %+v", left)
				}
			}
			p.CheckRunning()
			p.StopClean()
		})
	}
}

const accountsSchema = `version: 1
table: accounts
primary_key: id
fields:
  - integer: id
  - keyword: email
  - integer: counter
`

const tagsSchema = `version: 1
table: tags
primary_key: id
fields:
  - integer: id
  - keyword: label
`

func TestReindexThroughTheControlSurface(t *testing.T) {
	const accounts = 3000
	e := newE2E(t, fmt.Sprintf(`
		CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, counter int NOT NULL DEFAULT 0);
		INSERT INTO accounts SELECT i, 'user' || i || '@x.io', 0 FROM generate_series(1, %d) i;
		CREATE TABLE tags (id int PRIMARY KEY, label text NOT NULL);
		INSERT INTO tags VALUES (1, 'one'), (2, 'two');`, accounts))
	cfg := e.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "accounts", Schema: accountsSchema}, {Name: "tags", Schema: tagsSchema}}})
	p := harness.Launch(t, e.Options(cfg, t.TempDir()))
	hash := e.hashAlias(cfg, "accounts")
	await(t, "both indexes seeded", func() (bool, string) {
		ix := indexes(t, p)
		return ix["accounts"]["state"] == "seeded" && ix["accounts"]["docs"] == float64(accounts) && ix["tags"]["state"] == "seeded", fmt.Sprint(ix)
	})

	reindex := func(index string, auth ...string) (int, string) {
		if auth == nil {
			auth = []string{p.Options.AdminUser, p.Options.AdminPassword}
		}
		code, body := call(t, http.MethodPost, p.PrivateURL()+"/reindex?index="+index, nil, auth...)
		return code, string(body)
	}
	// The reindex backfill cannot read accounts while it is locked: the
	// reindex stays under way, deterministically, for what follows.
	unlock := e.lockTable("accounts")
	for _, c := range []struct {
		name, index string
		auth        []string
		want        int
	}{
		{"bad credentials", "accounts", []string{"admin", "wrong"}, http.StatusUnauthorized},
		{"unknown index", "nothing", nil, http.StatusNotFound},
		{"accepted", "accounts", nil, http.StatusAccepted},
		{"already running", "accounts", nil, http.StatusConflict},
	} {
		if code, body := reindex(c.index, c.auth...); code != c.want {
			t.Fatalf("%s: POST /reindex?index=%s answered %d %s, want %d", c.name, c.index, code, body, c.want)
		}
	}
	e.Exec(`UPDATE tags SET label = 'uno' WHERE id = 1`)
	e.awaitDocs("another index to keep flowing during the reindex", "tags", func(d map[string]map[string]any) bool {
		return field(d, "1", "label") == "uno"
	})
	if gens := e.concrete(hash + "_*"); !slices.Equal(gens, []string{hash + "_1", hash + "_2"}) {
		t.Fatalf("during the reindex the generations are %v, want _1 and _2", gens)
	}
	if g := indexes(t, p)["accounts"]["generation"]; g != 1.0 {
		t.Fatalf("/indexes shows generation %v while the reindex runs, want 1", g)
	}

	s := e.search(accounts, hash, e.Prefix+"accounts")
	live := e.liveUpdates(`UPDATE accounts SET counter = counter + 1, email = 'u' || (counter + 1) || '@x.io' WHERE id = $1`, accounts)
	unlock()
	// Watched in OpenSearch, not through /indexes: that reads state with
	// Sink.Ensure, which re-points the aliases from a possibly stale meta
	// document and so can undo the swap while it happens.
	await(t, "the reindex to finish and retire the old generation", func() (bool, string) {
		gens := e.concrete(hash + "_*")
		return slices.Equal(gens, []string{hash + "_2"}), fmt.Sprint(gens)
	})
	if ix := indexes(t, p)["accounts"]; ix["generation"] != 2.0 || ix["state"] != "seeded" {
		t.Errorf("/indexes shows %v after the reindex, want generation 2 seeded", ix)
	}
	updates := live.finish(t)
	bad, searches := s.finish()
	if len(bad) > 0 {
		t.Errorf("%d of %d searches during the reindex failed or missed documents, first: %s", len(bad), searches, bad[0])
	}
	for _, alias := range []string{hash, e.Prefix + "accounts"} {
		if got := e.aliasHolders(alias); !slices.Equal(got, []string{hash + "_2"}) {
			t.Errorf("alias %s points at %v, want the new generation", alias, got)
		}
	}
	caughtUp := e.WALPosition()
	e.Exec(`UPDATE tags SET label = 'due' WHERE id = 2`)
	e.awaitConfirmed(caughtUp)
	e.compare(cfg, "accounts", hash)
	if code, body := reindex("accounts"); code != http.StatusAccepted {
		t.Errorf("a second reindex once the first is done: %d %s", code, body)
	}
	t.Logf("%d live updates and %d searches during the reindex", updates, searches)
	p.CheckRunning()
	p.StopClean()
}

func TestFanOutToOpenSearchAndStdout(t *testing.T) {
	const rows = 50
	e := newE2E(t, fmt.Sprintf(`CREATE TABLE tags (id int PRIMARY KEY, label text NOT NULL);
		INSERT INTO tags SELECT i, 'tag' || i FROM generate_series(1, %d) i;`, rows))
	e.WriteConfig(harness.Config{Sinks: "[sinks.audit]\ntype = \"stdout\"\n\n", Indexes: []harness.Index{{Name: "tags", Schema: tagsSchema}}})
	// The binary: the stdout sink writes to the process's standard output.
	proc := harness.NewProc(t, "flusso", e.Dir, "--config", "flusso.toml", "--data-dir", "data",
		"--index-prefix", e.Prefix, "--slot", e.Slot(), "--lag-poll-secs", "1")
	proc.Start()

	stdoutHas := func(from int, want func(map[string]any) bool) func() (bool, string) {
		return func() (bool, string) {
			n := 0
			for _, env := range envelopes(t, proc.LogFile, from) {
				if want(env) {
					n++
				}
			}
			return n > 0, proc.Tail()
		}
	}
	e.awaitDocs("the backfill in OpenSearch", "tags", func(d map[string]map[string]any) bool { return len(d) == rows })
	await(t, "the backfill on stdout", func() (bool, string) {
		ids := map[any]bool{}
		for _, env := range envelopes(t, proc.LogFile, 1) {
			if env["op"] == "upsert" && env["index"] == "tags" {
				ids[env["id"]] = true
			}
		}
		return len(ids) == rows, fmt.Sprintf("%d ids; log:\n%s", len(ids), proc.Tail())
	})
	e.Exec(`UPDATE tags SET label = 'first' WHERE id = 1`)
	e.awaitDocs("a live change in OpenSearch", "tags", func(d map[string]map[string]any) bool { return field(d, "1", "label") == "first" })
	await(t, "a live change on stdout", stdoutHas(1, func(env map[string]any) bool {
		doc, _ := env["document"].(map[string]any)
		return env["id"] == "1" && doc["label"] == "first"
	}))
	// Both sinks must have recorded their seeding before the stop, or the
	// restart rightly seeds again: OpenSearch in its meta index, stdout in
	// the state bucket.
	for _, sink := range []string{"primary", "audit"} {
		seeded := regexp.MustCompile(`(?m)writer: index seeded .*sink=` + sink + ` .*index=tags`)
		await(t, sink+" to record its seeding", func() (bool, string) {
			return seeded.MatchString(segment(t, proc.LogFile, 1)), proc.Tail()
		})
	}
	before := e.docsAt(e.Prefix + "tags")
	proc.Stop()

	proc.Start()
	e.Exec(`UPDATE tags SET label = 'second' WHERE id = 2`)
	e.awaitDocs("a live change after the restart", "tags", func(d map[string]map[string]any) bool { return field(d, "2", "label") == "second" })
	await(t, "a live change on stdout after the restart", stdoutHas(2, func(env map[string]any) bool {
		doc, _ := env["document"].(map[string]any)
		return env["id"] == "2" && doc["label"] == "second"
	}))
	if log := segment(t, proc.LogFile, 2); strings.Contains(log, "backfill requested") {
		t.Errorf("the restart requested a backfill:\n%s", log)
	}
	for _, env := range envelopes(t, proc.LogFile, 2) {
		// At most the last change before the stop may come again.
		if env["id"] != "1" && env["id"] != "2" {
			t.Errorf("stdout printed %v/%v again after the restart: re-backfilled", env["index"], env["id"])
		}
	}
	after := e.docsAt(e.Prefix + "tags")
	for id, doc := range before {
		if id != "2" && after[id]["_version"] != doc["_version"] {
			t.Errorf("document %s was written again after the restart (version %v, was %v): re-backfilled", id, after[id]["_version"], doc["_version"])
		}
	}
	proc.Stop()
}

func TestSchemaChangeSeedsANewIndexBehindTheConvenienceAlias(t *testing.T) {
	const accounts = 2000
	e := newE2E(t, fmt.Sprintf(`
		CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, counter int NOT NULL DEFAULT 7);
		INSERT INTO accounts SELECT i, 'user' || i || '@x.io' FROM generate_series(1, %d) i;`, accounts))
	const before = `version: 1
table: accounts
primary_key: id
fields:
  - integer: id
  - keyword: email
`
	data := t.TempDir()
	oldCfg := e.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "accounts", Schema: before}}})
	oldHash := e.hashAlias(oldCfg, "accounts")
	p := harness.Launch(t, e.Options(oldCfg, data))
	e.awaitDocs("the first schema's backfill", "accounts", func(d map[string]map[string]any) bool { return len(d) == accounts })
	await(t, "the first schema seeded", func() (bool, string) {
		ix := indexes(t, p)["accounts"]
		return ix["state"] == "seeded", fmt.Sprint(ix)
	})
	p.StopClean()

	newCfg := e.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "accounts", Schema: accountsSchema}}})
	newHash := e.hashAlias(newCfg, "accounts")
	if newHash == oldHash {
		t.Fatal("adding a field did not change the schema hash")
	}
	// Hold the new schema's backfill back, so what readers see while it
	// has not finished can be checked.
	unlock := e.lockTable("accounts")
	convenience := e.Prefix + "accounts"
	s := e.search(accounts, convenience)
	p = harness.Launch(t, e.Options(newCfg, data))
	await(t, "the new schema's index", func() (bool, string) {
		got := e.aliasHolders(newHash)
		return slices.Equal(got, []string{newHash + "_1"}), fmt.Sprint(got)
	})
	if got := e.aliasHolders(convenience); !slices.Equal(got, []string{oldHash + "_1"}) {
		t.Fatalf("while the new index is seeded the convenience alias points at %v, want the old index", got)
	}
	if d := e.docsAt(convenience); len(d) != accounts || d["1"]["counter"] != nil {
		t.Fatalf("while the new index is seeded the convenience alias serves %d documents of shape %v", len(d), d["1"])
	}

	unlock()
	await(t, "the convenience alias to move to the new index", func() (bool, string) {
		got := e.aliasHolders(convenience)
		return slices.Equal(got, []string{newHash + "_1"}), fmt.Sprint(got)
	})
	if bad, searches := s.finish(); len(bad) > 0 {
		t.Errorf("%d of %d searches through the convenience alias failed or missed documents, first: %s", len(bad), searches, bad[0])
	}
	if d := e.docsAt(convenience); len(d) != accounts || d["1"]["counter"] != 7.0 {
		t.Fatalf("after the switch the convenience alias serves %d documents of shape %v", len(d), d["1"])
	}
	if got := e.aliasHolders(oldHash); !slices.Equal(got, []string{oldHash + "_1"}) {
		t.Errorf("the old schema's hash alias points at %v; it is left for its clients", got)
	}
	e.Exec(`UPDATE accounts SET counter = 8 WHERE id = 1`)
	e.awaitDocs("a live change in the new index", "accounts", func(d map[string]map[string]any) bool { return d["1"]["counter"] == 8.0 })
	e.compare(newCfg, "accounts", newHash)
	p.StopClean()
}

func TestPrefixesIsolateDeploymentsOnOneCluster(t *testing.T) {
	const table = `CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, counter int NOT NULL DEFAULT 0);
		INSERT INTO accounts SELECT i, 'user' || i || '@x.io', 0 FROM generate_series(1, 100) i;`
	one, two := newE2E(t, table), newE2E(t, table)
	if one.Prefix == two.Prefix {
		t.Fatal("the deployments need different prefixes")
	}
	// Same logical index, different schemas: different hashes too.
	cfgOne := one.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "accounts", Schema: strings.TrimSuffix(accountsSchema, "  - integer: counter\n")}}})
	cfgTwo := two.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "accounts", Schema: accountsSchema}}})
	pOne := harness.Launch(t, one.Options(cfgOne, t.TempDir()))
	pTwo := harness.Launch(t, two.Options(cfgTwo, t.TempDir()))
	for _, d := range []struct {
		e *e2e
		p *harness.Pipeline
	}{{one, pOne}, {two, pTwo}} {
		await(t, d.e.Prefix+" seeded", func() (bool, string) {
			ix := indexes(t, d.p)["accounts"]
			return ix["state"] == "seeded" && ix["docs"] == 100.0, fmt.Sprint(ix)
		})
	}

	// Deployment two goes through live changes, a reindex and a truncate
	// (a purge of its index) while deployment one follows its own changes.
	two.Exec(`UPDATE accounts SET counter = 2 WHERE id <= 10`)
	one.Exec(`UPDATE accounts SET email = 'changed@x.io' WHERE id = 1`)
	two.awaitDocs("deployment two's change", "accounts", func(d map[string]map[string]any) bool { return d["10"]["counter"] == 2.0 })
	one.awaitDocs("deployment one's change", "accounts", func(d map[string]map[string]any) bool { return d["1"]["email"] == "changed@x.io" })
	untouched := one.ownedState()
	if code, body := call(t, http.MethodPost, pTwo.PrivateURL()+"/reindex?index=accounts", nil, "admin", "secret"); code != http.StatusAccepted {
		t.Fatalf("reindex of deployment two: %d %s", code, body)
	}
	twoHash := two.hashAlias(cfgTwo, "accounts")
	await(t, "deployment two's reindex", func() (bool, string) {
		gens := two.concrete(twoHash + "_*")
		return slices.Equal(gens, []string{twoHash + "_2"}), fmt.Sprint(gens)
	})
	two.Exec(`TRUNCATE accounts`)
	two.awaitDocs("deployment two's purge", "accounts", func(d map[string]map[string]any) bool { return len(d) == 0 })

	if now := one.ownedState(); now != untouched {
		t.Errorf("deployment two changed what deployment one owns:\nbefore:\n%s\nafter:\n%s", untouched, now)
	}
	one.compare(cfgOne, "accounts", one.hashAlias(cfgOne, "accounts"))
	pOne.CheckRunning()
	pTwo.CheckRunning()
	pOne.StopClean()
	pTwo.StopClean()
}

func TestParallelAssemblersAndWritersNeverOverwriteWithAStaleBuild(t *testing.T) {
	const hot, changes, writers = 5, 4000, 4
	e := newE2E(t, fmt.Sprintf(`
		CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, deleted boolean NOT NULL DEFAULT false);
		CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users, total numeric NOT NULL, status text NOT NULL);
		INSERT INTO users (email) SELECT 'user' || i || '@x.io' FROM generate_series(1, %d) i;`, hot))
	cfg := e.WriteConfig(harness.Config{Indexes: []harness.Index{{Name: "users", Schema: usersSchema}}})
	nats := testenv.NATS(t)
	// Two processes' worth of stages on one broker: every stage but the
	// capture twice, each assembler with several workers.
	full := e.Options(cfg, "")
	full.NATSURL = nats
	second := e.Options(cfg, "")
	second.NATSURL, second.Roles = nats, []run.Role{run.Assembler, run.Writer}
	p1, p2 := harness.Launch(t, full), harness.Launch(t, second)
	e.awaitDocs("the backfill", "users", func(d map[string]map[string]any) bool { return len(d) == hot })

	// Connections hammer the same few documents: root updates and child
	// inserts, updates, moves and deletes, each its own transaction.
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		conn := testenv.Conn(t, e.DBURL)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range changes / writers {
				user := 1 + (i+w)%hot
				var sql string
				switch i % 5 {
				case 0:
					sql = fmt.Sprintf(`UPDATE users SET email = 'v%d-%d@x.io' WHERE id = %d`, w, i, user)
				case 1, 2:
					sql = fmt.Sprintf(`INSERT INTO orders (user_id, total, status) VALUES (%d, %d, 'new')`, user, i)
				case 3:
					sql = fmt.Sprintf(`UPDATE orders SET total = total + 1, user_id = %d WHERE id = (SELECT max(id) FROM orders)`, user)
				case 4:
					sql = `DELETE FROM orders WHERE id = (SELECT min(id) FROM orders)`
				}
				if _, err := conn.Exec(context.Background(), sql); err != nil {
					errs <- fmt.Errorf("%s: %w", sql, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Once the slot is confirmed past the last change, every build of it
	// is in OpenSearch: what is there now must be the latest.
	caughtUp := e.WALPosition()
	e.Exec(`UPDATE users SET deleted = false WHERE id = 1`)
	e.awaitConfirmed(caughtUp)
	hash := e.hashAlias(cfg, "users")
	e.compare(cfg, "users", hash)

	// However rare the race above is in a run, the guarantee is the
	// versions: older builds published after newer ones are refused.
	current := e.docsAt(hash)
	conn := testenv.BrokerAt(t, nats)
	stale := []*flussopb.Document{
		{Index: "users", Id: "1", Op: flussopb.DocOp_UPSERT, Version: uint64(current["1"]["_version"].(float64)) - 1,
			Body: []byte(`{"id":1,"email":"stale@x.io","orders":[],"orderCount":0}`)},
		{Index: "users", Id: "2", Op: flussopb.DocOp_DELETE_DOC, Version: uint64(current["2"]["_version"].(float64)) - 1},
	}
	for _, d := range stale {
		if err := conn.PublishDocument(context.Background(), d, ""); err != nil {
			t.Fatal(err)
		}
	}
	caughtUp = e.WALPosition()
	e.Exec(`UPDATE users SET deleted = false WHERE id = 3`)
	e.awaitConfirmed(caughtUp)
	e.compare(cfg, "users", hash)
	for _, p := range []*harness.Pipeline{p1, p2} {
		p.CheckRunning()
	}
	built := func(p *harness.Pipeline) float64 { v, _ := status(t, p)["documents_built"].(float64); return v }
	if built(p1) == 0 || built(p2) == 0 {
		t.Errorf("documents built: %v and %v; both processes' assemblers should have worked", built(p1), built(p2))
	}
	p2.StopClean()
	p1.StopClean()
}
