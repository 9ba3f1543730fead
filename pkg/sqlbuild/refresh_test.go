package sqlbuild_test

import (
	"context"
	"errors"
	"testing"

	"github.com/flusso/flusso/pkg/sqlbuild"
)

// TestRefresh checks that Refresh keeps the statements while the tables
// keep their shape, prepares new ones when a type changes (the old ones
// stay usable for what runs on them), and names the field and column a
// schema reads that the table lost.
func TestRefresh(t *testing.T) {
	ctx := context.Background()
	pool := database(t, `CREATE TABLE users (id int PRIMARY KEY, email text, age int);
		INSERT INTO users VALUES (1, 'ada@x', 36)`)
	ix := index(t, pool, "version: 1\ntable: users\nprimary_key: id\nfields:\n  - keyword: email\n  - integer: age\n")

	same, err := ix.Refresh(ctx, pool)
	if err != nil || same != ix {
		t.Fatalf("Refresh on unchanged tables = %p, %v; want the same index %p", same, err, ix)
	}

	// Widening the key lets in keys the old statements cannot take.
	exec(t, pool, "ALTER TABLE users ALTER COLUMN id TYPE bigint; INSERT INTO users VALUES (5000000000, 'big@x', 1)")
	if docs, err := ix.Build(ctx, pool, []string{"5000000000"}); err != nil || docs[0].Err == nil {
		t.Fatalf("the stale statements built %+v, %v; want the key refused as out of range (is the test still meaningful?)", docs, err)
	}
	fresh, err := ix.Refresh(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if fresh == ix {
		t.Fatal("Refresh after a type change returned the stale index")
	}
	assertDoc(t, build(t, pool, fresh, "5000000000"), "5000000000", `{"email": "big@x", "age": 1}`)
	assertDoc(t, build(t, pool, ix, "1"), "1", `{"email": "ada@x", "age": 36}`)

	exec(t, pool, "ALTER TABLE users DROP COLUMN email")
	_, err = fresh.Refresh(ctx, pool)
	var missing *sqlbuild.MissingError
	if !errors.As(err, &missing) {
		t.Fatalf("Refresh after a dropped column: %v, want a *MissingError", err)
	}
	if want := (sqlbuild.MissingError{Field: "email", Schema: "public", Table: "users", Column: "email"}); *missing != want {
		t.Errorf("MissingError = %+v, want %+v", *missing, want)
	}
}
