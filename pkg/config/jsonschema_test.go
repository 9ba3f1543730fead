package config

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/flusso/flusso/pkg/sink/opensearch"
)

// TestJSONSchemaMatchesLoader keeps config.schema.json and the loader in
// step: the same keys in every table, and the same defaults.
func TestJSONSchemaMatchesLoader(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(JSONSchema, &doc); err != nil {
		t.Fatalf("config.schema.json: %v", err)
	}
	at := func(path ...any) map[string]any {
		var v any = doc
		for _, p := range path {
			switch p := p.(type) {
			case string:
				v = v.(map[string]any)[p]
			case int:
				v = v.([]any)[p]
			}
		}
		return v.(map[string]any)
	}
	props := func(path ...any) map[string]any { return at(append(path, "properties")...) }

	tables := []struct {
		name  string
		props map[string]any
		keys  []string
	}{
		{"top level", props(), topKeys},
		{"[source]", props("properties", "source"), sourceKeys},
		{"connection parts", props("properties", "source", "properties", "connection_url", "oneOf", 2), partsKeys},
		{"env reference", props("definitions", "env_ref"), envKeys},
		{"opensearch sink", props("definitions", "opensearch_sink"), openSearchKeys},
		{"stdout sink", props("definitions", "stdout_sink"), stdoutKeys},
		{"[[index]]", props("properties", "index", "items"), indexKeys},
		{"[server]", props("properties", "server"), serverKeys},
	}
	for _, tt := range tables {
		var got []string
		for k := range tt.props {
			got = append(got, k)
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tt.keys))
		if !slices.Equal(got, want) {
			t.Errorf("%s: JSON Schema keys %v, loader keys %v", tt.name, got, want)
		}
	}

	os := props("definitions", "opensearch_sink")
	parts := props("properties", "source", "properties", "connection_url", "oneOf", 2)
	srv := props("properties", "server")
	defaults := []struct {
		name string
		prop map[string]any
		want any
	}{
		{"batch_size", os, float64(opensearch.DefaultBatchSize)},
		{"max_bytes", os, float64(opensearch.DefaultMaxBytes)},
		{"timeout_secs", os, opensearch.DefaultTimeout.Seconds()},
		{"max_retries", os, float64(opensearch.DefaultMaxRetries)},
		{"number_of_shards", os, float64(opensearch.DefaultShards)},
		{"number_of_replicas", os, float64(opensearch.DefaultReplicas)},
		{"refresh_interval", os, opensearch.DefaultRefreshInterval},
		{"text_analysis", os, TextAnalysisBuiltin},
		{"tls_verify", os, true},
		{"auto_subfields", os, true},
		{"host", parts, DefaultHost},
		{"port", parts, float64(DefaultPort)},
		{"user", parts, DefaultUser},
		{"public_address", srv, DefaultPublicAddress},
		{"private_address", srv, DefaultPrivateAddress},
	}
	for _, d := range defaults {
		if got := d.prop[d.name].(map[string]any)["default"]; got != d.want {
			t.Errorf("%s: JSON Schema default %v, loader default %v", d.name, got, d.want)
		}
	}
}
