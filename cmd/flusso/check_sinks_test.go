package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckSinkWithoutURL: an OpenSearch sink needs a url from the file or
// from its <SINK>_OPENSEARCH_URL; check --offline names both when neither
// gives one.
func TestCheckSinkWithoutURL(t *testing.T) {
	const schema = "version: 1\ntable: users\nprimary_key: id\nfields:\n  - integer: id\n"
	tests := []struct {
		name     string
		sinks    string
		env      map[string]string
		wantCode int
		want     []string
	}{
		{name: "url in the file", sinks: "[sinks.primary]\ntype = \"opensearch\"\nurl = \"http://localhost:9200\"\n", wantCode: exitOK},
		{name: "url from a reference", sinks: "[sinks.primary]\ntype = \"opensearch\"\nurl = { env = \"SEARCH\" }\n", wantCode: exitOK},
		{name: "url from the reserved variable", sinks: "[sinks.primary]\ntype = \"opensearch\"\n",
			env: map[string]string{"PRIMARY_OPENSEARCH_URL": "http://localhost:9200"}, wantCode: exitOK},
		{name: "stdout needs none", sinks: "[sinks.audit]\ntype = \"stdout\"\n", wantCode: exitOK},
		{name: "no url anywhere", sinks: "[sinks.primary]\ntype = \"opensearch\"\n", wantCode: exitUsage,
			want: []string{"sink primary has no url: set url in [sinks.primary] or the variable PRIMARY_OPENSEARCH_URL"}},
		{name: "reserved variable empty", sinks: "[sinks.primary]\ntype = \"opensearch\"\n",
			env: map[string]string{"PRIMARY_OPENSEARCH_URL": ""}, wantCode: exitUsage, want: []string{"PRIMARY_OPENSEARCH_URL"}},
		{name: "each sink named", sinks: "[sinks.primary]\ntype = \"opensearch\"\n[sinks.backup]\ntype = \"opensearch\"\n", wantCode: exitUsage,
			want: []string{"[sinks.primary] or the variable PRIMARY_OPENSEARCH_URL", "[sinks.backup] or the variable BACKUP_OPENSEARCH_URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range []string{"PRIMARY_OPENSEARCH_URL", "BACKUP_OPENSEARCH_URL"} {
				t.Setenv(v, "")
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "flusso.toml")
			writeFile(t, filepath.Join(dir, "users.schema.yml"), schema)
			writeFile(t, path, "[source]\ntype = \"postgres\"\nconnection_url = \"postgres://localhost/app\"\n\n"+tt.sinks+
				"\n[[index]]\nname = \"users\"\nschema = \"users.schema.yml\"\nenabled = true\n")
			code, _, stderr := flusso(t, "check", "--offline", "-c", path)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d: %s", code, tt.wantCode, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, "flusso: "+path+": ") || !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not name the file and %q", stderr, w)
				}
			}
		})
	}
}
