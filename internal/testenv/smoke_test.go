package testenv_test

// Smoke tests proving that the services behind testenv are the real thing: logical
// decoding with pgoutput, OpenSearch analysis and ingest modules, JetStream on the
// embedded server and on the nats-server binary.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/internal/testenv"
)

func TestPostgresLogicalReplication(t *testing.T) {
	db := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	conn := testenv.Conn(t, db)
	mustExec(t, conn.PgConn(), `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
		CREATE PUBLICATION smoke_pub FOR TABLE items`)

	row := streamOneInsert(ctx, t, db, "smoke_slot", "smoke_pub", func() {
		mustExec(t, conn.PgConn(), `INSERT INTO items VALUES (1, 'hello')`)
	})
	if want := []string{"1", "hello"}; !slices.Equal(row, want) {
		t.Fatalf("decoded insert %q, want %q", row, want)
	}
}

// TestPostgresUnprivileged proves the role a least-privileged deployment uses: it cannot
// create publications, yet it can read granted tables and stream a publication that a
// superuser made.
func TestPostgresUnprivileged(t *testing.T) {
	db := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	admin := testenv.Conn(t, db)
	mustExec(t, admin.PgConn(), `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
		CREATE PUBLICATION smoke_pub FOR TABLE items;
		INSERT INTO items VALUES (1, 'first')`)
	testenv.GrantRead(t, db, "items")

	unpriv := testenv.UnprivilegedURL(t, db)
	conn := testenv.Conn(t, unpriv)
	var super bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil {
		t.Fatalf("reading rolsuper: %v", err)
	}
	if super {
		t.Fatalf("%s is a superuser", testenv.UnprivilegedRole)
	}
	var name string
	if err := conn.QueryRow(ctx, `SELECT name FROM items WHERE id = 1`).Scan(&name); err != nil || name != "first" {
		t.Fatalf("reading a granted table: %q, %v", name, err)
	}
	for _, stmt := range []string{
		`CREATE PUBLICATION mine FOR TABLE items`,
		`CREATE TABLE mine (id int)`,
	} {
		_, err := conn.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as %s: got %v, want insufficient_privilege (42501)", stmt, testenv.UnprivilegedRole, err)
		}
	}

	row := streamOneInsert(ctx, t, unpriv, "unpriv_slot", "smoke_pub", func() {
		mustExec(t, admin.PgConn(), `INSERT INTO items VALUES (2, 'second')`)
	})
	if want := []string{"2", "second"}; !slices.Equal(row, want) {
		t.Fatalf("decoded insert %q, want %q", row, want)
	}
}

// streamOneInsert creates a pgoutput slot on dbURL, runs change, and returns the text
// columns of the first insert it decodes.
func streamOneInsert(ctx context.Context, t *testing.T, dbURL, slot, publication string, change func()) []string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("replication", "database")
	u.RawQuery = q.Encode()
	repl, err := pgconn.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("opening a replication connection: %v", err)
	}
	defer repl.Close(context.Background())

	if _, err := pglogrepl.CreateReplicationSlot(ctx, repl, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{}); err != nil {
		t.Fatalf("creating slot %s: %v", slot, err)
	}
	change()
	if err := pglogrepl.StartReplication(ctx, repl, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + publication + "'"},
	}); err != nil {
		t.Fatalf("starting replication on %s: %v", slot, err)
	}
	relations := map[uint32]string{}
	for {
		msg, err := repl.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receiving from slot %s: %v", slot, err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok || cd.Data[0] != pglogrepl.XLogDataByteID {
			continue // keepalives
		}
		xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
		if err != nil {
			t.Fatalf("parsing XLogData: %v", err)
		}
		m, err := pglogrepl.Parse(xld.WALData)
		if err != nil {
			t.Fatalf("parsing pgoutput: %v", err)
		}
		switch m := m.(type) {
		case *pglogrepl.RelationMessage:
			relations[m.RelationID] = m.Namespace + "." + m.RelationName
		case *pglogrepl.InsertMessage:
			if relations[m.RelationID] != "public.items" {
				t.Fatalf("insert into relation %d (%q), want public.items", m.RelationID, relations[m.RelationID])
			}
			var row []string
			for _, c := range m.Tuple.Columns {
				row = append(row, string(c.Data))
			}
			return row
		}
	}
}

func mustExec(t *testing.T, conn *pgconn.PgConn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql).ReadAll(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestOpenSearchAnalysis(t *testing.T) {
	base := testenv.OpenSearch(t)
	index := testenv.IndexPrefix(t) + "analysis"

	status, body := testenv.OpenSearchRequest(t, http.MethodPut, base+"/"+index, map[string]any{
		"settings": map[string]any{
			"number_of_shards": 1, "number_of_replicas": 0,
			"analysis": map[string]any{
				"filter": map[string]any{
					"parts": map[string]any{
						"type":                  "word_delimiter_graph",
						"preserve_original":     true,
						"split_on_case_change":  true,
						"split_on_numerics":     true,
						"catenate_all":          true,
						"generate_word_parts":   true,
						"generate_number_parts": true,
					},
				},
				"analyzer": map[string]any{
					"code": map[string]any{
						"type":      "custom",
						"tokenizer": "whitespace",
						"filter":    []string{"parts", "lowercase", "asciifolding"},
					},
				},
			},
		},
	})
	if status != http.StatusOK {
		t.Fatalf("creating index %s: %d %s", index, status, body)
	}

	tokens := analyze(t, base, index, "C-01234")
	for _, want := range []string{"c01234", "c", "01234"} {
		if !slices.Contains(tokens, want) {
			t.Errorf("_analyze C-01234 = %q, missing %q", tokens, want)
		}
	}
	if tokens := analyze(t, base, index, "Café"); !slices.Contains(tokens, "cafe") {
		t.Errorf("_analyze Café = %q, missing cafe (asciifolding)", tokens)
	}
}

func analyze(t *testing.T, base, index, text string) []string {
	t.Helper()
	status, body := testenv.OpenSearchRequest(t, http.MethodPost, base+"/"+index+"/_analyze", map[string]any{"analyzer": "code", "text": text})
	if status != http.StatusOK {
		t.Fatalf("_analyze: %d %s", status, body)
	}
	var resp struct{ Tokens []struct{ Token string } }
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("decoding _analyze: %v", err)
	}
	var tokens []string
	for _, tok := range resp.Tokens {
		tokens = append(tokens, tok.Token)
	}
	return tokens
}

func TestOpenSearchIngestPipeline(t *testing.T) {
	base := testenv.OpenSearch(t)
	prefix := testenv.IndexPrefix(t)
	pipeline := map[string]any{
		"description": "flusso smoke",
		"processors":  []any{map[string]any{"set": map[string]any{"field": "origin", "value": "pipeline"}}},
	}

	status, body := testenv.OpenSearchRequest(t, http.MethodPost, base+"/_ingest/pipeline/_simulate", map[string]any{
		"pipeline": pipeline,
		"docs":     []any{map[string]any{"_source": map[string]any{"title": "x"}}},
	})
	if status != http.StatusOK || !strings.Contains(string(body), `"origin":"pipeline"`) {
		t.Fatalf("_simulate: %d %s", status, body)
	}

	name := prefix + "pipe"
	if status, body := testenv.OpenSearchRequest(t, http.MethodPut, base+"/_ingest/pipeline/"+name, pipeline); status != http.StatusOK {
		t.Fatalf("creating pipeline %s: %d %s", name, status, body)
	}
	index := prefix + "docs"
	if status, body := testenv.OpenSearchRequest(t, http.MethodPut, base+"/"+index, map[string]any{
		"settings": map[string]any{"number_of_replicas": 0},
	}); status != http.StatusOK {
		t.Fatalf("creating index %s: %d %s", index, status, body)
	}
	if status, body := testenv.OpenSearchRequest(t, http.MethodPut, base+"/"+index+"/_doc/1?pipeline="+name+"&refresh=true",
		map[string]any{"title": "x"}); status != http.StatusCreated {
		t.Fatalf("indexing through %s: %d %s", name, status, body)
	}
	status, body = testenv.OpenSearchRequest(t, http.MethodGet, base+"/"+index+"/_doc/1", nil)
	var doc struct {
		Source map[string]any `json:"_source"`
	}
	if err := json.Unmarshal(body, &doc); status != http.StatusOK || err != nil || doc.Source["origin"] != "pipeline" {
		t.Fatalf("document indexed through %s: %d %s (%v)", name, status, body, err)
	}
}

func TestOpenSearchICU(t *testing.T) {
	base := testenv.OpenSearch(t)
	testenv.RequireICU(t)
	status, body := testenv.OpenSearchRequest(t, http.MethodPost, base+"/_analyze", map[string]any{
		"tokenizer": "icu_tokenizer", "filter": []string{"icu_folding"}, "text": "Ĉafé",
	})
	if status != http.StatusOK || !strings.Contains(string(body), `"cafe"`) {
		t.Fatalf("icu _analyze: %d %s", status, body)
	}
}

func TestNATSEmbedded(t *testing.T) {
	url := testenv.NATS(t)
	nc := natsConnect(t, url)
	jetStreamRoundTrip(t, nc, "hello embedded")
}

// TestNATSBinary runs the real nats-server binary and proves that JetStream data
// survives a SIGKILL of the broker.
func TestNATSBinary(t *testing.T) {
	srv := testenv.StartNATSProcess(t)
	nc := natsConnect(t, srv.URL)
	jetStreamRoundTrip(t, nc, "hello binary")

	srv.Kill()
	srv.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc) // nc reconnects to the same URL
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := js.Stream(ctx, "SMOKE")
		if err == nil {
			if n := info.CachedInfo().State.Msgs; n != 1 {
				t.Fatalf("stream SMOKE holds %d messages after a SIGKILL of the broker, want 1", n)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("stream SMOKE after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func natsConnect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// jetStreamRoundTrip publishes one message to a file-backed stream and consumes it with
// an explicit-ack durable consumer.
func jetStreamRoundTrip(t *testing.T, nc *nats.Conn, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "SMOKE", Subjects: []string{"smoke.>"}, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatalf("creating stream: %v", err)
	}
	ack, err := js.Publish(ctx, "smoke.one", []byte(payload))
	if err != nil {
		t.Fatalf("publishing: %v", err)
	}
	if ack.Stream != "SMOKE" || ack.Sequence != 1 {
		t.Fatalf("publish ack %+v, want stream SMOKE sequence 1", ack)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "SMOKE", jetstream.ConsumerConfig{
		Durable: "smoke", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatalf("creating consumer: %v", err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatalf("fetching: %v", err)
	}
	var got []string
	for msg := range batch.Messages() {
		got = append(got, string(msg.Data()))
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatalf("acking: %v", err)
		}
	}
	if err := batch.Error(); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if !slices.Equal(got, []string{payload}) {
		t.Fatalf("consumed %q, want %q", got, payload)
	}
}

// TestPostgresCleanupDropsActiveSlot proves that Postgres' cleanup removes a database
// whose slot is still streaming to a connection the test leaked.
func TestPostgresCleanupDropsActiveSlot(t *testing.T) {
	var dbName string
	var leaked *pgconn.PgConn
	t.Run("leak", func(t *testing.T) {
		db := testenv.Postgres(t)
		u, err := url.Parse(db)
		if err != nil {
			t.Fatal(err)
		}
		dbName = strings.TrimPrefix(u.Path, "/")
		q := u.Query()
		q.Set("replication", "database")
		u.RawQuery = q.Encode()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		leaked, err = pgconn.Connect(ctx, u.String())
		if err != nil {
			t.Fatalf("opening a replication connection: %v", err)
		}
		if _, err := pglogrepl.CreateReplicationSlot(ctx, leaked, "leaked_slot", "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{}); err != nil {
			t.Fatalf("creating the slot: %v", err)
		}
		mustExec(t, testenv.Conn(t, db).PgConn(), `CREATE PUBLICATION p FOR ALL TABLES`)
		if err := pglogrepl.StartReplication(ctx, leaked, "leaked_slot", 0, pglogrepl.StartReplicationOptions{
			PluginArgs: []string{"proto_version '1'", "publication_names 'p'"},
		}); err != nil {
			t.Fatalf("starting replication: %v", err)
		}
	})
	if leaked != nil {
		defer leaked.Close(context.Background())
	}
	if t.Failed() || dbName == "" {
		return
	}
	admin := testenv.Conn(t, testenv.PostgresAdminURL())
	var dbs, slots int
	if err := admin.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM pg_database WHERE datname = $1),
		(SELECT count(*) FROM pg_replication_slots WHERE database = $1)`, dbName).Scan(&dbs, &slots); err != nil {
		t.Fatal(err)
	}
	if dbs != 0 || slots != 0 {
		t.Fatalf("after cleanup database %s: %d databases, %d slots left", dbName, dbs, slots)
	}
}
