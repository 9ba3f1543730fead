package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flusso/flusso/pkg/redact"
)

// PostgresAdminURL returns the superuser URL of the dev cluster (FLUSSO_TEST_PG_URL).
func PostgresAdminURL() string { return envOr(EnvPostgresURL, DefaultPostgresURL) }

// Postgres creates a fresh, empty database on the dev cluster and returns its superuser
// URL. At cleanup the database is dropped WITH (FORCE), together with the replication
// slots created in it (a database that has slots cannot be dropped, and leaked slots
// would soon exhaust max_replication_slots).
func Postgres(t testing.TB) string {
	t.Helper()
	needsServices(t, "PostgreSQL")
	holdService(t, "postgres")
	admin := PostgresAdminURL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		unavailable(t, "PostgreSQL at "+redact.String(admin), err)
	}
	defer conn.Close(context.Background())

	// A cluster without logical decoding would make every capture test fail obscurely.
	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		t.Fatalf("testenv: reading wal_level: %v", err)
	}
	if walLevel != "logical" {
		t.Fatalf("testenv: PostgreSQL at %s runs with wal_level=%s; flusso needs wal_level=logical (%s)",
			redact.String(admin), walLevel, startHint)
	}

	name := databaseName(t)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testenv: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := dropDatabase(admin, name); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	dbURL, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return dbURL
}

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// databaseName is unique and names the test, so a leaked database says where it came from.
func databaseName(t testing.TB) string {
	base := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(base) > 40 {
		base = base[:40]
	}
	return "t_" + base + "_" + randomHex(4)
}

// dropDatabase removes the replication slots of database name, then the database.
func dropDatabase(admin, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connecting to drop database %s: %w", name, err)
	}
	defer conn.Close(context.Background())

	for {
		// An active slot belongs to a walsender that may outlive the test's connection
		// by a moment: end it, then drop what is inactive, until nothing is left.
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid)
			FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, name); err != nil {
			return fmt.Errorf("terminating replication connections of database %s: %w", name, err)
		}
		var left int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM (
			SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = $1 AND NOT active) dropped`, name).Scan(&left)
		if err != nil && !isObjectInUse(err) {
			return fmt.Errorf("dropping replication slots of database %s: %w", name, err)
		}
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, name).Scan(&left); err != nil {
			return fmt.Errorf("counting replication slots of database %s: %w", name, err)
		}
		if left == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dropping replication slots of database %s: %d left: %w", name, left, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping database %s: %w", name, err)
	}
	return nil
}

// isObjectInUse matches "replication slot ... is active for PID ...", a race with a
// walsender that grabbed the slot again; the caller retries.
func isObjectInUse(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr) && pgErr.SQLState() == "55006"
}

// UnprivilegedURL returns the URL of database dbURL for the flusso_unpriv role: it may
// log in and replicate, but is no superuser and cannot create publications. Granting it
// what a test needs (see GrantRead) is up to the test.
func UnprivilegedURL(t testing.TB, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("testenv: parsing database URL %s: %v", redact.String(dbURL), err)
	}
	u.User = url.UserPassword(UnprivilegedRole, unprivilegedPassword)
	return u.String()
}

// GrantRead lets flusso_unpriv read the given tables ("name" or "schema.name") of
// database dbURL, or every table of schema public when none is named: what a
// deployment's least-privileged role needs for backfill and document builds.
func GrantRead(t testing.TB, dbURL string, tables ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("testenv: connecting to grant reads: %v", err)
	}
	defer conn.Close(context.Background())

	role := pgx.Identifier{UnprivilegedRole}.Sanitize()
	stmts := []string{"GRANT USAGE ON SCHEMA public TO " + role}
	if len(tables) == 0 {
		stmts = append(stmts, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+role)
	}
	for _, table := range tables {
		id := pgx.Identifier(strings.SplitN(table, ".", 2))
		if len(id) == 2 {
			stmts = append(stmts, "GRANT USAGE ON SCHEMA "+pgx.Identifier{id[0]}.Sanitize()+" TO "+role)
		}
		stmts = append(stmts, "GRANT SELECT ON TABLE "+id.Sanitize()+" TO "+role)
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("testenv: %s: %v", s, err)
		}
	}
}

// Conn opens a connection to url that is closed at cleanup.
func Conn(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("testenv: connecting to %s: %v", redact.String(url), err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// withDatabase returns admin with its database replaced by name.
func withDatabase(admin, name string) (string, error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%s must be a postgres:// URL, got %q", EnvPostgresURL, redact.String(admin))
	}
	u.Path = "/" + name
	return u.String(), nil
}
