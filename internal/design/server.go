// Package design is the server of `flusso design`: a web app, embedded in
// the binary, to compose an index schema from the live database. It reads
// the catalog, runs the schema loader and the checks of `flusso check` on
// every edit, derives the mapping and the index name, builds real documents
// with the pipeline's builder, and saves the schema file and its [[index]]
// entry. It only ever reads the database, in read-only transactions.
package design

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flusso/flusso/pkg/scaffold"
)

//go:embed web
var webFS embed.FS

// maxBody bounds a request: a schema is at most 1 MiB (schema.MaxFileSize),
// and its model is about as large.
const maxBody = 4 << 20

// Server answers the designer's requests for one deployment.
type Server struct {
	configPath string
	db         *pgxpool.Pool
	// saving serializes saves: two at once would interleave their edits
	// of flusso.toml.
	saving sync.Mutex
}

// New returns the server of the deployment whose config is at configPath,
// reading the source database through db.
func New(configPath string, db *pgxpool.Pool) *Server {
	return &Server{configPath: configPath, db: db}
}

// Handler serves the app and its API. addr is the address listened on: a
// request must name it (or its loopback equivalents) as Host, and a write
// must come from that origin, so that neither another site open in the
// browser nor a DNS name rebound to loopback can drive the designer.
func (s *Server) Handler(addr string) http.Handler {
	mux := http.NewServeMux()
	web, _ := fs.Sub(webFS, "web")
	mux.Handle("GET /", http.FileServerFS(web))
	mux.HandleFunc("GET /api/state", s.api(s.state))
	mux.HandleFunc("POST /api/scaffold", s.api(s.scaffold))
	mux.HandleFunc("POST /api/evaluate", s.api(s.evaluate))
	mux.HandleFunc("POST /api/preview", s.api(s.preview))
	mux.HandleFunc("POST /api/save", s.api(s.save))
	return guard(hostCheck(addr), mux)
}

// hostCheck says which Host values a request may carry: the address itself
// and its loopback spellings; listening on every interface, also any IP
// address with its port. Never another name: a name is what a DNS
// rebinding attack controls.
func hostCheck(addr string) func(string) bool {
	hosts := []string{addr}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return func(h string) bool { return h == addr }
	}
	ip := net.ParseIP(host)
	if host == "localhost" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		for _, h := range []string{"127.0.0.1", "localhost", "::1"} {
			hosts = append(hosts, net.JoinHostPort(h, port))
		}
	}
	anyIP := host == "" || ip != nil && ip.IsUnspecified()
	return func(h string) bool {
		if slices.Contains(hosts, h) {
			return true
		}
		hh, hp, err := net.SplitHostPort(h)
		return anyIP && err == nil && hp == port && net.ParseIP(hh) != nil
	}
}

func guard(allowed func(string) bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed(r.Host) {
			http.Error(w, fmt.Sprintf("host %q is not the designer's address", r.Host), http.StatusMisdirectedRequest)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			origin := r.Header.Get("Origin")
			u, err := url.Parse(origin)
			if origin == "" || err != nil || u.Host != r.Host {
				http.Error(w, fmt.Sprintf("cross-origin request refused (Origin %q)", origin), http.StatusForbidden)
				return
			}
			if r.Header.Get("Content-Type") != "application/json" {
				http.Error(w, "requests must be application/json", http.StatusUnsupportedMediaType)
				return
			}
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}

// badRequest is an error in what the user asked: 400 with its message.
type badRequest struct{ error }

// api adapts a handler taking a decoded request and returning a response.
func (s *Server) api(h func(ctx context.Context, req request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req request
		if r.Method == http.MethodPost {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err == nil {
				err = json.Unmarshal(body, &req)
			}
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading the request: " + err.Error()})
				return
			}
		}
		resp, err := h(r.Context(), req)
		var bad badRequest
		switch {
		case errors.As(err, &bad):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": bad.Error()})
		case err != nil:
			slog.Error("designer request failed", "path", r.URL.Path, "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, resp)
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // documents are shown as the builder made them
	if err := enc.Encode(v); err != nil {
		slog.Debug("writing a designer response", "err", err)
	}
}

// request is every API request's body; each endpoint reads its part.
type request struct {
	Name       string          `json:"name"`        // index name
	SchemaPath string          `json:"schema_path"` // as in [[index]].schema
	Model      json.RawMessage `json:"model,omitempty"`
	YAML       *string         `json:"yaml,omitempty"`
	// scaffold
	Schema string `json:"schema"`
	Table  string `json:"table"`
	Depth  int    `json:"depth"`
	// preview
	Keys   []string `json:"keys,omitempty"`
	Sample int      `json:"sample"`
}

// tableView is a catalog table with the joins its keys allow, and the
// field each column and each join starts as (the same as `flusso init`
// writes).
type tableView struct {
	*scaffold.Table
	Relations []relationView             `json:"relations"`
	Fields    map[string]json.RawMessage `json:"fields"` // by column
}

type relationView struct {
	scaffold.Relation
	Field json.RawMessage `json:"field"`
}
