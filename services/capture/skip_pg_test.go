package capture_test

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/pkg/meter"
	"github.com/flusso/flusso/proto/flussopb"
)

// TestUpdatesOfUnreadColumnsAreNotPublished changes columns no index reads
// (orders.note, users.last_seen) between changes that matter: nothing of
// the former reaches the changes stream, and they are counted, where the
// old row tells (orders, a related table with REPLICA IDENTITY FULL; users
// once its owner gives it FULL). A root table without the old row cannot
// tell, and publishes.
func TestUpdatesOfUnreadColumnsAreNotPublished(t *testing.T) {
	r := newRig(t, `
		CREATE TABLE users (id int PRIMARY KEY, email text, last_seen timestamptz);
		CREATE TABLE orders (id int PRIMARY KEY, user_id int, status text, note text);
		ALTER TABLE orders ALTER COLUMN status SET STORAGE EXTERNAL;`, "")
	cfg := r.config(map[string]string{"users": usersSchema})
	skipped := &meter.Counter{}
	cfg.Skipped = skipped
	r.start(cfg)
	r.waitStreaming()

	// A status too large to stay in the row: an update leaving it alone
	// sends it as 'unchanged', not as its value.
	big := strings.Repeat("paid ", 1000)
	steps := []struct {
		sql       string
		published string // table.op of the change published; "" when none
	}{
		{`INSERT INTO users VALUES (1, 'ada@x.io', now())`, "users.INSERT"},
		{`INSERT INTO orders VALUES (10, 1, '` + big + `', 'a')`, "orders.INSERT"},
		{`UPDATE orders SET note = 'b' WHERE id = 10`, ""},
		{`UPDATE orders SET note = note WHERE id = 10`, ""},
		{`UPDATE orders SET status = 'sent' WHERE id = 10`, "orders.UPDATE"},
		{`UPDATE orders SET user_id = 2, note = 'c' WHERE id = 10`, "orders.UPDATE"},
		// No old row under the default identity: the capture cannot tell.
		{`UPDATE users SET last_seen = now() WHERE id = 1`, "users.UPDATE"},
		{`ALTER TABLE users REPLICA IDENTITY FULL`, ""},
		{`UPDATE users SET last_seen = now() + interval '1 hour' WHERE id = 1`, ""},
		{`UPDATE users SET email = 'ada@y.io' WHERE id = 1`, "users.UPDATE"},
		{`DELETE FROM orders WHERE id = 10`, "orders.DELETE"},
	}
	var want []string
	for _, s := range steps {
		r.exec(s.sql)
		if s.published != "" {
			want = append(want, s.published)
		}
	}
	var got []string
	for _, c := range r.read(len(want), true) {
		got = append(got, c.Table+"."+c.Op.String())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("published %v, want %v", got, want)
	}
	// Nothing follows: the skipped updates were not merely late.
	r.exec(`INSERT INTO users VALUES (2, 'alan@x.io', now())`)
	last := r.read(1, true)[0]
	if last.Table != "users" || last.Op != flussopb.ChangeOp_INSERT {
		t.Fatalf("after the last step the stream holds %s.%s, want the users insert that follows", last.Table, last.Op)
	}
	batch, err := r.consumer().Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		t.Errorf("an extra change was published: %v", decode(t, m))
	}
	if got, want := skipped.Snapshot(), map[string]uint64{"public.orders": 2, "public.users": 1}; !maps.Equal(got, want) {
		t.Errorf("skipped = %v, want %v", got, want)
	}
}
