package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flusso/flusso/internal/testenv"
)

func TestCheckOnline(t *testing.T) {
	url := testenv.Postgres(t)
	conn := testenv.Conn(t, url)
	if _, err := conn.Exec(context.Background(), `
		CREATE TABLE users (id int8 PRIMARY KEY, email text NOT NULL, name text);
		CREATE PUBLICATION flusso FOR TABLE users`); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CHECK_DATABASE_URL", url)
	t.Setenv("DATABASE_URL", "")

	tests := []struct {
		name     string
		schema   string
		args     []string
		wantCode int
		want     []string
	}{
		{"matches", "- long: id\n  - keyword: email\n    required: true", nil, exitOK,
			[]string{": valid\n", "index users: every column matches", "publication flusso: covers every table", "0 errors, 0 warnings"}},
		{"warning passes", "- keyword: name\n    required: true", nil, exitOK,
			[]string{"warning users.schema.yml:5 field name: declared required, but public.users.name is nullable", "0 errors, 1 warning"}},
		{"error fails", "- integer: email\n  - keyword: nick", nil, exitFailure,
			[]string{"integer reads public.users.email of type text", "column public.users.nick does not exist", "2 errors, 0 warnings"}},
		{"json", "- keyword: nick", []string{"--format", "json"}, exitFailure, []string{`"errors": 1`}},
		{"publication from the flag", "- long: id", []string{"--publication", "other", "--manage-publication", "false"}, exitFailure,
			[]string{`CREATE PUBLICATION "other" FOR TABLE "public"."users";`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "flusso.toml")
			writeFile(t, path, `
[source]
type = "postgres"
connection_url = { env = "CHECK_DATABASE_URL" }

[[index]]
name = "users"
schema = "users.schema.yml"
enabled = true
`)
			writeFile(t, filepath.Join(dir, "users.schema.yml"), "version: 1\ntable: users\nprimary_key: id\nfields:\n  "+tt.schema+"\n")
			code, stdout, stderr := flusso(t, append([]string{"check", "-c", path}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			if tt.wantCode == exitFailure && !strings.Contains(stderr, "the database does not match the schemas") {
				t.Errorf("stderr: %q", stderr)
			}
			if len(tt.args) > 1 && tt.args[1] == "json" {
				var v map[string]any
				if err := json.Unmarshal([]byte(stdout), &v); err != nil {
					t.Errorf("--format json is not JSON: %v\n%s", err, stdout)
				}
			}
		})
	}
}

func TestCheckOnlineUnreachable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flusso.toml")
	writeFile(t, path, "[source]\ntype = \"postgres\"\nconnection_url = \"postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2\"\n")
	t.Setenv("DATABASE_URL", "")
	code, _, stderr := flusso(t, "check", "-c", path)
	if code != exitFailure || !strings.Contains(stderr, "connecting to postgres://u:xxxxx@127.0.0.1:1/db") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if strings.Contains(stderr, "hunter2") {
		t.Errorf("password printed: %q", stderr)
	}
}
