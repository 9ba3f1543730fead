// Package query reads the indexes flusso keeps, through the Go types
// `flusso gen go` writes for them.
//
// Generated code declares each index as a query.Index[T]: its logical name,
// the hash of the schema it was made from and T, the document type. The
// Client adds the deployment's index prefix at run time, so one binary reads
// every environment, and reads the index through the alias
// {prefix}{logical}_{hash}, which only a deployment of that very schema
// serves: any other answers with a *MismatchError instead of documents of
// another shape.
//
//	c, err := query.FromEnv("primary") // PRIMARY_OPENSEARCH_URL, FLUSSO_INDEX_PREFIX
//	res, err := query.Search(ctx, c, search.Users, query.Request{
//		Query: query.Nested(search.UsersFieldOrders,
//			query.Term(search.UsersFieldOrdersStatus, search.UsersOrdersStatusPaid)),
//		Sort: []query.Sort{query.Desc(search.UsersFieldTotalSpent)},
//	})
//	for _, h := range res.Hits { fmt.Println(h.Doc.Name) }
//
// It is its own module, so an application pulls in opensearch-go and
// nothing of the flusso server.
package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/opensearch-project/opensearch-go/v4"
)

// PrefixVar is the variable holding the index prefix, the one `flusso run`
// reads too.
const PrefixVar = "FLUSSO_INDEX_PREFIX"

// Config says how to reach OpenSearch.
type Config struct {
	Addresses          []string // default http://localhost:9200
	Username, Password string
	// Prefix starts every index name, as the deployment's prefix (or its
	// FLUSSO_INDEX_PREFIX) does.
	Prefix    string
	Transport http.RoundTripper // optional, e.g. for TLS settings
}

// Client reads indexes of one deployment.
type Client struct {
	os     *opensearch.Client
	prefix string
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	c, err := opensearch.NewClient(opensearch.Config{
		Addresses: cfg.Addresses,
		Username:  cfg.Username,
		Password:  cfg.Password,
		Transport: cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("query: create the OpenSearch client: %w", err)
	}
	return &Client{os: c, prefix: cfg.Prefix}, nil
}

// FromEnv returns a client configured as `flusso run` configures the sink
// named sink: <SINK>_OPENSEARCH_URL (required; several URLs separated by
// commas), <SINK>_OPENSEARCH_USERNAME and _PASSWORD, and the index prefix
// from FLUSSO_INDEX_PREFIX.
func FromEnv(sink string) (*Client, error) {
	env := strings.ToUpper(sink) + "_OPENSEARCH_"
	url := os.Getenv(env + "URL")
	if url == "" {
		return nil, fmt.Errorf("query: %sURL is not set", env)
	}
	return New(Config{
		Addresses: strings.Split(url, ","),
		Username:  os.Getenv(env + "USERNAME"),
		Password:  os.Getenv(env + "PASSWORD"),
		Prefix:    os.Getenv(PrefixVar),
	})
}

// Prefix is the index prefix the client applies.
func (c *Client) Prefix() string { return c.prefix }

// Target is an index as generated code declares it; every Index[T] is one.
type Target interface {
	// Name is the index's name under prefix: {prefix}{logical}_{hash}.
	Name(prefix string) string
	logicalHash() (logical, hash string)
}

// Check returns a *MismatchError for the first of ixs the deployment does
// not serve. Call it at start-up to fail fast rather than at the first
// query.
func (c *Client) Check(ctx context.Context, ixs ...Target) error {
	for _, ix := range ixs {
		res, err := c.do(ctx, http.MethodHead, "/"+ix.Name(c.prefix), nil)
		if err != nil {
			return fmt.Errorf("query: check index %s: %w", ix.Name(c.prefix), err)
		}
		res.Body.Close()
		switch res.StatusCode {
		case http.StatusOK:
		case http.StatusNotFound:
			return c.mismatch(ctx, ix)
		default:
			return fmt.Errorf("query: check index %s: OpenSearch answered %s", ix.Name(c.prefix), res.Status)
		}
	}
	return nil
}

// do sends one request; body, when not nil, is sent as JSON.
func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode the request: %w", err)
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.os.Perform(req)
}

// call sends a request to the index ix and decodes a 200 answer into out.
// An index that does not exist is a *MismatchError; a 404 of a document
// (found: false) is reported as notFound.
func (c *Client) call(ctx context.Context, ix Target, method, path string, body, out any) (notFound bool, err error) {
	name := ix.Name(c.prefix)
	res, err := c.do(ctx, method, "/"+name+path, body)
	if err != nil {
		return false, fmt.Errorf("query: index %s: %w", name, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return false, fmt.Errorf("query: index %s: read the answer: %w", name, err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
			Found *bool `json:"found"`
		}
		_ = json.Unmarshal(data, &e)
		switch {
		case res.StatusCode == http.StatusNotFound && e.Error.Type == "index_not_found_exception":
			return false, c.mismatch(ctx, ix)
		case res.StatusCode == http.StatusNotFound && e.Found != nil:
			return true, nil
		case e.Error.Type != "":
			return false, fmt.Errorf("query: index %s: %s: %s: %s", name, res.Status, e.Error.Type, e.Error.Reason)
		}
		return false, fmt.Errorf("query: index %s: %s: %s", name, res.Status, truncate(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return false, fmt.Errorf("query: index %s: decode the answer: %w", name, err)
	}
	return false, nil
}

func truncate(b []byte) string {
	const max = 300
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// MismatchError says the deployment does not serve the index as the code
// was generated: flusso runs another version of its schema (or none, or
// under another prefix).
type MismatchError struct {
	Index  string   // the name looked for: {prefix}{logical}_{hash}
	Prefix string   // the client's prefix
	Hash   string   // the hash the code was generated from
	Served []string // the hashes the deployment serves the index under, if any
}

func (e *MismatchError) Error() string {
	logical := strings.TrimSuffix(strings.TrimPrefix(e.Index, e.Prefix), "_"+e.Hash)
	msg := fmt.Sprintf("query: no index %s: this code was generated from schema hash %s of index %s", e.Index, e.Hash, logical)
	if len(e.Served) == 0 {
		return msg + fmt.Sprintf(", and the deployment serves no version of it under the prefix %q (is flusso running with this prefix, %s?)", e.Prefix, PrefixVar)
	}
	return msg + fmt.Sprintf(", but the deployment serves schema hash %s: regenerate the code from the deployed schema (flusso gen go) or deploy the schema the code was made from",
		strings.Join(e.Served, ", "))
}

// ErrMismatch matches every *MismatchError with errors.Is.
var ErrMismatch = errors.New("query: the deployment serves another schema")

// Is lets errors.Is(err, ErrMismatch) find a mismatch.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// mismatch builds the error for ix, listing the hashes the deployment
// serves it under: the aliases {prefix}{logical}_{8 hex digits}.
func (c *Client) mismatch(ctx context.Context, ix Target) error {
	logical, hash := ix.logicalHash()
	e := &MismatchError{Index: ix.Name(c.prefix), Prefix: c.prefix, Hash: hash}
	base := c.prefix + logical + "_"
	res, err := c.do(ctx, http.MethodGet, "/_cat/aliases/"+base+"*?format=json&h=alias", nil)
	if err != nil {
		return e // the mismatch is the finding; the list only helps
	}
	defer res.Body.Close()
	var rows []struct {
		Alias string `json:"alias"`
	}
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&rows) != nil {
		return e
	}
	for _, r := range rows {
		h := strings.TrimPrefix(r.Alias, base)
		if len(h) == 8 && strings.Trim(h, "0123456789abcdef") == "" && !contains(e.Served, h) {
			e.Served = append(e.Served, h)
		}
	}
	return e
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
