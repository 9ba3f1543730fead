package capture_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flusso/flusso/internal/testenv"
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/schema"
	"github.com/flusso/flusso/proto/flussopb"
	"github.com/flusso/flusso/services/capture"
)

// TestBadInputFailsWithOneLineFix runs the capture against each kind of
// bad source: it must stop (not retry forever) with one line naming the
// problem and the fix, and no password.
func TestBadInputFailsWithOneLineFix(t *testing.T) {
	const password = "not-the-password"
	r := newRig(t, `CREATE TABLE users (id int PRIMARY KEY, email text);
		CREATE TABLE orders (id int PRIMARY KEY, user_id int, status text);`, "")
	admin := r.dbURL
	with := func(edit func(u *url.URL)) string {
		u, err := url.Parse(admin)
		if err != nil {
			t.Fatal(err)
		}
		edit(u)
		return u.String()
	}
	tests := []struct {
		name string
		// setup prepares the case and returns the capture's database URL
		// ("" keeps the test database).
		setup func(t *testing.T, slot string) string
		want  []string
	}{{
		name: "unreachable database",
		setup: func(t *testing.T, _ string) string {
			// Two hosts: pgx reports each on a line of its own.
			return with(func(u *url.URL) {
				u.Host = "127.0.0.1:" + strconv.Itoa(closedPort(t)) + ",localhost:" + strconv.Itoa(closedPort(t))
			})
		},
		want: []string{"cannot reach postgres at postgres://flusso:xxxxx@127.0.0.1:", "connection refused", "check that it runs and the host and port"},
	}, {
		name: "wrong password",
		setup: func(*testing.T, string) string {
			return with(func(u *url.URL) { u.User = url.UserPassword(u.User.Username(), password) })
		},
		want: []string{"refused the credentials", `password authentication failed for user "flusso"`, "check the user and password in DATABASE_URL or [source].connection_url"},
	}, {
		name:  "database missing",
		setup: func(*testing.T, string) string { return with(func(u *url.URL) { u.Path = "/flusso_no_such_db" }) },
		want:  []string{`database "flusso_no_such_db" does not exist: create it or fix the database name`},
	}, {
		name:  "wal_level not logical",
		setup: func(t *testing.T, _ string) string { return replicaCluster(t) },
		want:  []string{"postgres has wal_level = replica", "set wal_level = logical in postgresql.conf and restart Postgres"},
	}, {
		name: "role without REPLICATION",
		setup: func(t *testing.T, _ string) string {
			role := "t_norepl_" + randomHex(4)
			r.exec(`CREATE ROLE ` + role + ` LOGIN PASSWORD 'pw'`)
			t.Cleanup(func() { dropRole(t, admin, role) })
			return with(func(u *url.URL) { u.User = url.UserPassword(role, "pw") })
		},
		want: []string{`lacks the REPLICATION attribute`, "run ALTER ROLE", "REPLICATION as a superuser"},
	}, {
		name: "slot of another plugin",
		setup: func(t *testing.T, slot string) string {
			r.exec(`SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, slot)
			return ""
		},
		want: []string{"uses plugin test_decoding, not pgoutput: drop it or choose another --slot"},
	}, {
		name: "physical slot",
		setup: func(t *testing.T, slot string) string {
			r.exec(`SELECT pg_create_physical_replication_slot($1)`, slot)
			// Not of any database: the database's cleanup would leave it.
			t.Cleanup(func() { r.exec(`SELECT pg_drop_replication_slot($1)`, slot) })
			return ""
		},
		want: []string{"is a physical slot, not a logical one: choose another --slot"},
	}, {
		name: "slot of another database",
		setup: func(t *testing.T, slot string) string {
			other := testenv.Conn(t, testenv.Postgres(t))
			if _, err := other.Exec(context.Background(), `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
				t.Fatal(err)
			}
			return ""
		},
		want: []string{"belongs to database", "choose another --slot"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := r.config(map[string]string{"users": usersSchema})
			cfg.Slot = "t_" + randomHex(6)
			if dsn := tt.setup(t, cfg.Slot); dsn != "" {
				cfg.DatabaseURL = dsn
			}
			c, err := capture.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err = c.Run(ctx)
			if ctx.Err() != nil {
				t.Fatalf("the capture kept retrying instead of failing; log:\n%s", r.logs)
			}
			if err == nil {
				t.Fatal("the capture ended without an error")
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error spans several lines: %q", msg)
			}
			if strings.Contains(msg, password) {
				t.Errorf("error shows the password: %q", msg)
			}
		})
	}
}

// TestUnprivilegedRoleLogsTheSQLAndGoesOn runs the capture as a role that
// may replicate but owns nothing: it logs the exact SQL an owner must run,
// waits for the publication without creating its slot (decoding a change
// from before the publication existed would break the slot for good), and
// streams once the owner ran the SQL.
func TestUnprivilegedRoleLogsTheSQLAndGoesOn(t *testing.T) {
	r := newRig(t, `
		CREATE TABLE users (id int PRIMARY KEY, email text);
		CREATE TABLE orders (id int PRIMARY KEY, user_id int, status text);
		INSERT INTO users VALUES (1, 'ada@x.io'), (2, 'bob@x.io');
		INSERT INTO orders VALUES (10, 1, 'new');`, "")
	testenv.GrantRead(t, r.dbURL)
	cfg := r.config(map[string]string{"users": usersSchema})
	cfg.DatabaseURL = testenv.UnprivilegedURL(t, r.dbURL)
	cfg.Seeds = func(context.Context, flow.Index) (map[string]uint32, error) {
		return map[string]uint32{"primary": 1}, nil
	}
	bar := &logBuffer{}
	cfg.Progress = bar
	c := r.start(cfg)

	r.eventually("the capture to wait for its publication", 30*time.Second, func() bool {
		return len(r.logs.lines("waiting for the publication")) > 0
	})
	stmts := loggedSQL(t, r.logs, "cannot manage the publication")
	want := []string{
		`CREATE PUBLICATION "flusso" FOR TABLE "public"."orders", "public"."users"`,
		`ALTER TABLE "public"."orders" REPLICA IDENTITY FULL`,
	}
	if strings.Join(stmts, "; ") != strings.Join(want, "; ") {
		t.Fatalf("logged SQL %q, want %q", stmts, want)
	}
	// While it waits the tables change; the capture runs, without a slot.
	r.exec(`INSERT INTO users VALUES (3, 'cy@x.io')`)
	time.Sleep(2 * time.Second)
	var slots int
	if err := r.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, r.slot).Scan(&slots); err != nil {
		t.Fatal(err)
	}
	if slots != 0 || c.Stats().Streaming || r.run.Returned() {
		t.Fatalf("while the publication is missing: %d slots, streaming %v, exited %v; want a capture waiting without a slot", slots, c.Stats().Streaming, r.run.Returned())
	}

	// The owner creates the publication: the capture goes on, still asking
	// for the replica identity, and seeds the index from the slot's snapshot.
	r.exec(stmts[0])
	r.waitStreaming()
	if got := loggedSQL(t, r.logs, "cannot manage the publication"); len(got) != 1 || got[0] != want[1] {
		t.Errorf("after the publication was created the capture asks for %q, want %q", got, want[1:])
	}
	seed := r.read(1, true)[0]
	if seed.Op != flussopb.ChangeOp_BACKFILL || strings.Join(seed.Keys, ",") != "1,2,3" {
		t.Fatalf("first change %s keys %v, want BACKFILL of 1,2,3", seed.Op, seed.Keys)
	}
	if !strings.Contains(bar.String(), "backfill users [") {
		t.Errorf("no progress bar drawn: %q", bar.String())
	}

	// Without REPLICA IDENTITY FULL a child's delete carries its key only.
	r.exec(`DELETE FROM orders WHERE id = 10`)
	if del := r.read(1, true)[0]; del.Op != flussopb.ChangeOp_DELETE || !equalImage(del.Old, map[string]string{"id": "10"}) {
		t.Fatalf("delete without full identity: %s old %v, want DELETE old {id: 10}", del.Op, image(del.Old))
	}
	r.exec(stmts[1])
	r.exec(`INSERT INTO orders VALUES (11, 2, 'new'); DELETE FROM orders WHERE id = 11`)
	got := r.read(2, true)
	if del := got[1]; del.Op != flussopb.ChangeOp_DELETE || !equalImage(del.Old, map[string]string{"id": "11", "user_id": "2"}) {
		t.Fatalf("delete with full identity: %s old %v, want the old row's key and foreign key", del.Op, image(del.Old))
	}
}

func equalImage(r *flussopb.Row, want map[string]string) bool {
	got := image(r)
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

var sqlAttr = regexp.MustCompile(`sql=("(?:[^"\\]|\\.)*")`)

// loggedSQL returns the statements of the last log line containing msg.
func loggedSQL(t *testing.T, logs *logBuffer, msg string) []string {
	t.Helper()
	lines := logs.lines(msg)
	if len(lines) == 0 {
		t.Fatalf("no log line says %q:\n%s", msg, logs)
	}
	m := sqlAttr.FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		t.Fatalf("log line %q has no sql", lines[len(lines)-1])
	}
	sql, err := strconv.Unquote(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(sql, "; ")
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func dropRole(t *testing.T, admin, role string) {
	conn := testenv.Conn(t, admin)
	if _, err := conn.Exec(context.Background(), `DROP ROLE IF EXISTS `+schema.QuoteIdent(role)); err != nil {
		t.Errorf("dropping role %s: %v", role, err)
	}
}

// replicaCluster starts a throwaway PostgreSQL cluster with wal_level =
// replica and returns its URL. PostgreSQL refuses to run as root, so as
// root it runs as the postgres user, like deploy/dev/services.sh.
func replicaCluster(t *testing.T) string {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) for a throwaway cluster")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	var as []string
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			t.Skip("running as root without a postgres user to run a throwaway cluster as")
		}
		as = []string{"runuser", "-u", "postgres", "--"}
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(append(as, args...)[0], append(as, args...)[1:]...)
		cmd.Dir = "/"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	dir, err := os.MkdirTemp("", "flusso-replica-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, _ := user.Lookup("postgres")
		uid, _ := strconv.Atoi(u.Uid)
		if err := os.Chown(dir, uid, -1); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	run(filepath.Join(bin, "initdb"), "-D", data, "-U", "flusso", "--auth=trust", "--no-sync")
	port := closedPort(t)
	run(filepath.Join(bin, "pg_ctl"), "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-t", "60",
		"-o", "-p "+strconv.Itoa(port)+" -c listen_addresses=127.0.0.1 -k "+dir+" -c wal_level=replica -c fsync=off", "start")
	t.Cleanup(func() { run(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop") })
	return "postgres://flusso@127.0.0.1:" + strconv.Itoa(port) + "/postgres?sslmode=disable"
}

// TestSlotOlderThanItsPublication drops the publication while the capture
// is stopped and changes a table meanwhile: the slot cannot decode that
// change ever again, so the capture must stop with the way out instead of
// retrying forever.
func TestSlotOlderThanItsPublication(t *testing.T) {
	r := newRig(t, `CREATE TABLE users (id int PRIMARY KEY, email text);
		CREATE TABLE orders (id int PRIMARY KEY, user_id int, status text);`, "")
	cfg := r.config(map[string]string{"users": usersSchema})
	ctx, cancel := context.WithCancel(context.Background())
	first, err := capture.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	r.eventually("the first capture to stream", 2*time.Minute, func() bool { return first.Stats().Streaming })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	r.exec(`DROP PUBLICATION flusso`)
	r.exec(`INSERT INTO users VALUES (1, 'unseen')`)
	second, err := capture.New(cfg) // creates the publication again
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = second.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("the capture kept retrying; log:\n%s", r.logs)
	}
	msg := fmt.Sprint(err)
	t.Logf("error: %s", msg)
	for _, w := range []string{"publication", "pg_drop_replication_slot('" + r.slot + "')", "reindex"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not say %q", msg, w)
		}
	}
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error spans several lines: %q", msg)
	}
}
