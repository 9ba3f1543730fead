package opensearch

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	opensearchgo "github.com/opensearch-project/opensearch-go/v4"
)

// Nodes splits a url setting into the base URLs of the nodes it lists:
// comma-separated, each starting with its scheme. A comma not followed by
// a scheme stays in its URL, so a password with a comma is not split.
func Nodes(setting string) []string {
	var out []string
	rest := strings.TrimSpace(setting)
	for rest != "" {
		node := rest
		rest = ""
		for i := 0; i < len(node); i++ {
			if node[i] == ',' && hasScheme(strings.TrimSpace(node[i+1:])) {
				node, rest = node[:i], strings.TrimSpace(node[i+1:])
				break
			}
		}
		if node = strings.TrimSpace(node); node != "" {
			out = append(out, node)
		}
	}
	return out
}

// hasScheme reports whether s starts with a URL scheme and "://".
func hasScheme(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok || scheme == "" {
		return false
	}
	for i, c := range scheme {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// passOver is how long a node that did not answer is left out while
// others remain: a dead node would otherwise cost a failed attempt (or a
// whole timeout) on every other request.
const passOver = 5 * time.Second

// node is one node the sink sends requests to.
type node struct {
	url    string
	client *opensearchgo.Client
	// downUntil is when a node that did not answer is tried again, in
	// Unix nanoseconds; 0 while it answers.
	downUntil atomic.Int64
}

// pool spreads requests over a cluster's nodes round-robin, passing over
// a node that stopped answering. Bulk requests take turns on a counter of
// their own: a writer sends one other request (reading the meta
// documents) before each bulk, and with two nodes a shared counter would
// send every bulk to the same one.
type pool struct {
	nodes       []*node
	bulk, other atomic.Uint64
}

func newPool(cfg Config) (*pool, error) {
	urls := Nodes(cfg.URL)
	if len(urls) == 0 {
		return nil, errors.New("no url")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // opt-in tls_verify = false
	// Go asks for gzip by default and OpenSearch then compresses every
	// answer: CPU on both ends to save bandwidth a sink next to its cluster
	// does not lack (an audit's _mget answers are the documents themselves).
	transport.DisableCompression = true
	p := &pool{}
	for _, u := range urls {
		if _, err := url.Parse(u); err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		client, err := opensearchgo.NewClient(opensearchgo.Config{
			Addresses:      []string{u},
			Username:       cfg.Username,
			Password:       cfg.Password,
			Transport:      transport,
			RequestTimeout: cfg.Timeout,
			// Retries are the sink's own: it knows which requests are safe to
			// repeat and retries items of a bulk request, not just requests.
			DisableRetry:          true,
			HealthCheckMaxRetries: -1,
		})
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		p.nodes = append(p.nodes, &node{url: u, client: client})
	}
	return p, nil
}

// pick is the node for the next request: the next in turn that answers,
// or the next in turn when none does.
func (p *pool) pick(bulk bool) *node {
	turn := &p.other
	if bulk {
		turn = &p.bulk
	}
	start, now := turn.Add(1), time.Now().UnixNano()
	for i := range uint64(len(p.nodes)) {
		if n := p.nodes[(start+i)%uint64(len(p.nodes))]; n.downUntil.Load() <= now {
			return n
		}
	}
	return p.nodes[start%uint64(len(p.nodes))]
}

// answered records whether n answered a request at all.
func (p *pool) answered(n *node, ok bool) {
	if ok {
		n.downUntil.Store(0)
	} else if len(p.nodes) > 1 {
		n.downUntil.Store(time.Now().Add(passOver).UnixNano())
	}
}

func (p *pool) close() error {
	var errs []error
	for _, n := range p.nodes {
		errs = append(errs, n.client.Close())
	}
	return errors.Join(errs...)
}
