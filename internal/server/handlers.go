package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/flusso/flusso/pkg/redact"
)

func publicHandler(src Source, metrics http.Handler, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	// A GET pattern also answers HEAD; other methods get 405 with Allow.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		st := src.Status(r.Context())
		if len(st.Unready) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, unready(st), log)
			return
		}
		if !st.Phase.Ready() {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+string(st.Phase))
			return
		}
		writeText(w, http.StatusOK, "ready")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, src.Status(r.Context()), log)
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}

func privateHandler(src Source, user, password string, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /indexes", func(w http.ResponseWriter, r *http.Request) {
		list, err := src.Indexes(r.Context())
		if err != nil {
			log.Error("listing indexes", "err", err)
			writeError(w, http.StatusInternalServerError, "listing indexes: "+err.Error(), log)
			return
		}
		if list == nil {
			list = []IndexInfo{}
		}
		writeJSON(w, http.StatusOK, list, log)
	})
	mux.HandleFunc("POST /reindex", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("index")
		if !identRE.MatchString(name) {
			msg := "missing ?index=NAME"
			if name != "" {
				msg = "invalid index name " + jsonQuote(name) + ": a lowercase Postgres identifier is expected"
			}
			writeError(w, http.StatusBadRequest, msg, log)
			return
		}
		err := src.Reindex(r.Context(), name)
		switch {
		case err == nil:
			log.Info("reindex queued", "index", name)
			writeJSON(w, http.StatusAccepted, map[string]string{"index": name, "status": "queued"}, log)
		case errors.Is(err, ErrUnknownIndex):
			writeError(w, http.StatusNotFound, "unknown index "+jsonQuote(name), log)
		case errors.Is(err, ErrReindexRunning):
			writeError(w, http.StatusConflict, "a reindex of "+name+" is already running", log)
		case errors.Is(err, ErrNothingToRebuild):
			writeError(w, http.StatusConflict, "cannot reindex "+name+": "+err.Error(), log)
		default:
			log.Error("queueing a reindex", "index", name, "err", err)
			writeError(w, http.StatusInternalServerError, "queueing a reindex of "+name+": "+err.Error(), log)
		}
	})
	return basicAuth(mux, user, password, log)
}

// identRE is a Postgres identifier as index names are written.
var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// refusalWarnEvery is how often a refused login from one remote host is
// logged at most: someone guessing passwords must not flood the log.
const refusalWarnEvery = 10 * time.Second

// basicAuth admits requests carrying the credentials. Both sides are
// hashed first so the comparison takes the same time whatever the length
// or content of the attempt, and user and password are both compared
// before deciding, so a right user name is not revealed either.
func basicAuth(next http.Handler, user, password string, log *slog.Logger) http.Handler {
	wantUser := sha256.Sum256([]byte(user))
	wantPassword := sha256.Sum256([]byte(password))
	warns := newWarnLimiter(refusalWarnEvery, time.Now)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser := sha256.Sum256([]byte(u))
		gotPassword := sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passwordOK := subtle.ConstantTimeCompare(gotPassword[:], wantPassword[:])
		if !ok || userOK&passwordOK != 1 {
			if warn, suppressed := warns.allow(remoteHost(r.RemoteAddr)); warn {
				log.Warn("control surface: request refused: bad or missing credentials",
					"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "unlogged_refusals", suppressed)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="flusso control", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, "authentication required", log)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(text + "\n"))
}

// writeJSON answers v as JSON without the secrets its strings may quote: an
// error naming a connection string, wherever in the answer it sits.
func writeJSON(w http.ResponseWriter, code int, v any, log *slog.Logger) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		log.Error("encoding an answer", "err", err)
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	b = redactJSON(b)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// writeError answers {"error": msg}, the shape the flusso client reads.
func writeError(w http.ResponseWriter, code int, msg string, log *slog.Logger) {
	writeJSON(w, code, map[string]string{"error": msg}, log)
}

// redactJSON runs redact.String on every string of the valid JSON text b.
// It works on decoded strings, so a secret is hidden whatever its escaping,
// and the result stays valid JSON.
func redactJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '"' {
			out = append(out, b[i])
			continue
		}
		end := i + 1
		for ; b[end] != '"'; end++ {
			if b[end] == '\\' {
				end++ // an escaped character, maybe a quote
			}
		}
		lit := b[i : end+1]
		var s string
		if json.Unmarshal(lit, &s) == nil {
			if r := redact.String(s); r != s {
				lit, _ = json.Marshal(r)
			}
		}
		out = append(out, lit...)
		i = end
	}
	return out
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// warnLimiter lets one warning per key through every interval and counts
// the ones it holds back, for the next warning to report.
type warnLimiter struct {
	mu    sync.Mutex
	every time.Duration
	now   func() time.Time
	keys  map[string]*warnState
}

type warnState struct {
	last       time.Time // of the last warning let through
	suppressed int       // held back since
}

// warnLimiterKeys bounds the keys remembered: past it, keys whose interval
// has passed are forgotten (their next warning is let through anyway).
const warnLimiterKeys = 1024

func newWarnLimiter(every time.Duration, now func() time.Time) *warnLimiter {
	return &warnLimiter{every: every, now: now, keys: map[string]*warnState{}}
}

// allow reports whether a warning for key may be logged now and, if so,
// how many were held back since the last one.
func (l *warnLimiter) allow(key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st := l.keys[key]
	if st == nil {
		if len(l.keys) >= warnLimiterKeys {
			l.forget(now)
		}
		// Still full: warn without remembering; memory stays bounded.
		if len(l.keys) < warnLimiterKeys {
			l.keys[key] = &warnState{last: now}
		}
		return true, 0
	}
	if now.Sub(st.last) < l.every {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	return true, n
}

// forget drops the keys whose interval has passed.
func (l *warnLimiter) forget(now time.Time) {
	for k, st := range l.keys {
		if now.Sub(st.last) >= l.every {
			delete(l.keys, k)
		}
	}
}

// remoteHost is the host of a request's remote address: each connection
// of one client has a port of its own.
func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
