package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ICUUnavailableReason says why the dev OpenSearch node has no ICU analysis: tests of
// text_analysis = "icu" skip with it unless the node loads an ICU plugin.
const ICUUnavailableReason = "the analysis-icu plugin of OpenSearch 2.19.x is not published on Maven Central " +
	"(org.opensearch.plugin:analysis-icu-client does not resolve), so the dev node of deploy/dev/opensearch " +
	"has no ICU analysis; run against an OpenSearch with analysis-icu installed " +
	"(FLUSSO_TEST_OPENSEARCH_URL) to cover it"

// OpenSearchURL returns the configured base URL (FLUSSO_TEST_OPENSEARCH_URL) without a
// trailing slash.
func OpenSearchURL() string {
	return strings.TrimRight(envOr(EnvOpenSearchURL, DefaultOpenSearchURL), "/")
}

// OpenSearch returns the base URL of the dev OpenSearch node after checking that it
// answers and its cluster is at least yellow.
func OpenSearch(t testing.TB) string {
	t.Helper()
	needsServices(t, "OpenSearch")
	holdService(t, "opensearch")
	base := OpenSearchURL()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	status, body, err := OpenSearchDo(ctx, http.MethodGet, base+"/_cluster/health?wait_for_status=yellow&timeout=30s", nil)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("cluster health answered %d: %s", status, body)
	}
	if err != nil {
		unavailable(t, "OpenSearch at "+base, err)
	}
	return base
}

// IndexPrefix returns a unique lowercase prefix such as "t1a2b3c4d_" for the indexes a
// test creates, so tests can share the node. At cleanup every index, index template and
// ingest pipeline whose name starts with the prefix is deleted.
func IndexPrefix(t testing.TB) string {
	t.Helper()
	base := OpenSearch(t)
	prefix := "t" + randomHex(4) + "_"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for _, path := range []string{
			"/" + prefix + "*?expand_wildcards=all",
			"/_index_template/" + prefix + "*",
			"/_ingest/pipeline/" + prefix + "*",
		} {
			status, body, err := OpenSearchDo(ctx, http.MethodDelete, base+path, nil)
			if err != nil {
				t.Errorf("testenv: deleting %s: %v", path, err)
			} else if status != http.StatusOK && status != http.StatusNotFound {
				t.Errorf("testenv: deleting %s: status %d: %s", path, status, body)
			}
		}
	})
	return prefix
}

// OpenSearchPlugins lists the plugins (names and classnames) the node runs.
func OpenSearchPlugins(t testing.TB) []string {
	t.Helper()
	base := OpenSearch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, body, err := OpenSearchDo(ctx, http.MethodGet, base+"/_nodes/plugins", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("testenv: listing OpenSearch plugins: status %d: %v %s", status, err, body)
	}
	var resp struct {
		Nodes map[string]struct {
			Plugins []struct{ Name, Classname string } `json:"plugins"`
			Modules []struct{ Name, Classname string } `json:"modules"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("testenv: decoding _nodes/plugins: %v", err)
	}
	var names []string
	for _, n := range resp.Nodes {
		for _, p := range append(n.Plugins, n.Modules...) {
			names = append(names, p.Name, p.Classname)
		}
	}
	return names
}

// RequireICU skips the test unless the OpenSearch node has ICU analysis
// (text_analysis = "icu"). It skips even under CI=true: the dev node cannot have it,
// see ICUUnavailableReason.
func RequireICU(t testing.TB) {
	t.Helper()
	for _, p := range OpenSearchPlugins(t) {
		if strings.Contains(strings.ToLower(p), "icu") {
			return
		}
	}
	t.Skip("testenv: " + ICUUnavailableReason)
}

// OpenSearchRequest sends one request to the test OpenSearch node (url is whole) and
// returns the status and the answer; it fails the test only when no answer comes, so
// the caller judges the status. See OpenSearchDo for how body is sent.
func OpenSearchRequest(t testing.TB, method, url string, body any) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	status, out, err := OpenSearchDo(ctx, method, url, body)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return status, out
}

// OpenSearchDo sends one request to OpenSearch and returns the status and the answer.
// A string or []byte body is sent as it is (a _bulk's NDJSON, a document already
// encoded), any other non-nil body as JSON.
func OpenSearchDo(ctx context.Context, method, url string, body any) (int, []byte, error) {
	var payload []byte
	switch b := body.(type) {
	case nil:
	case string:
		payload = []byte(b)
	case []byte:
		payload = b
	default:
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return 0, nil, fmt.Errorf("encoding the body of %s %s: %w", method, url, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(payload))
	if err != nil {
		return 0, nil, fmt.Errorf("building %s %s: %w", method, url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("reading the answer to %s %s: %w", method, url, err)
	}
	return resp.StatusCode, out, nil
}
