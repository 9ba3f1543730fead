// Package server serves flusso's two HTTP surfaces over a running pipeline.
//
// The public surface is read-only and unauthenticated: /healthz, /readyz,
// /status and /metrics. The private surface controls the pipeline (GET
// /indexes, POST /reindex) behind HTTP Basic auth. Both read the pipeline
// through Source.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/flusso/flusso/pkg/config"
)

// Default control-surface credentials; a warning is logged at startup while
// they are in use.
const (
	DefaultAdminUser     = "admin"
	DefaultAdminPassword = "flusso"
)

// shutdownTimeout bounds how long in-flight requests may finish once the
// context ends.
const shutdownTimeout = 5 * time.Second

// Config says where and what to serve.
type Config struct {
	// PublicAddress and PrivateAddress are host:port bind addresses; empty
	// means the default (127.0.0.1:9464 and 127.0.0.1:9465).
	PublicAddress  string
	PrivateAddress string
	// AdminUser and AdminPassword guard the private surface; empty means
	// the default admin/flusso.
	AdminUser     string
	AdminPassword string
	Source        Source
	// Metrics serves /metrics; nil answers 404.
	Metrics http.Handler
	Log     *slog.Logger
}

// Server is the two surfaces, bound and ready to serve.
type Server struct {
	public, private *http.Server
	publicLn        net.Listener
	privateLn       net.Listener
	log             *slog.Logger
}

// Serve binds both surfaces and serves them until ctx ends, then shuts
// them down gracefully.
func Serve(ctx context.Context, cfg Config) error {
	s, err := Listen(cfg)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Listen binds both surfaces without serving yet, so a bind error is known
// before the pipeline starts.
func Listen(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, errors.New("server: no Source")
	}
	if cfg.PublicAddress == "" {
		cfg.PublicAddress = config.DefaultPublicAddress
	}
	if cfg.PrivateAddress == "" {
		cfg.PrivateAddress = config.DefaultPrivateAddress
	}
	if cfg.AdminUser == "" {
		cfg.AdminUser = DefaultAdminUser
	}
	if cfg.AdminPassword == "" {
		cfg.AdminPassword = DefaultAdminPassword
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "server")

	publicLn, err := listen("public", cfg.PublicAddress, "--public-address")
	if err != nil {
		return nil, err
	}
	privateLn, err := listen("private", cfg.PrivateAddress, "--private-address")
	if err != nil {
		publicLn.Close()
		return nil, err
	}
	if cfg.AdminUser == DefaultAdminUser && cfg.AdminPassword == DefaultAdminPassword {
		log.Warn("the control surface uses the default credentials admin/flusso: set --admin-user and --admin-password (FLUSSO_ADMIN_USER, FLUSSO_ADMIN_PASSWORD) before exposing it",
			"address", privateLn.Addr().String())
	}
	return &Server{
		public:    newHTTPServer(publicHandler(cfg.Source, cfg.Metrics, log), log),
		private:   newHTTPServer(privateHandler(cfg.Source, cfg.AdminUser, cfg.AdminPassword, log), log),
		publicLn:  publicLn,
		privateLn: privateLn,
		log:       log,
	}, nil
}

func listen(surface, addr, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("%s surface: %s already in use: set %s", surface, addr, flag)
	case err != nil:
		return nil, fmt.Errorf("%s surface: listening on %s (set %s): %w", surface, addr, flag, err)
	}
	return ln, nil
}

// Connection timeouts: a client that sends its headers slowly, or keeps an
// idle connection open, holds a goroutine and a socket until they pass.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
)

func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// PublicAddr is the bound address of the public surface.
func (s *Server) PublicAddr() net.Addr { return s.publicLn.Addr() }

// PrivateAddr is the bound address of the private surface.
func (s *Server) PrivateAddr() net.Addr { return s.privateLn.Addr() }

// Serve serves both surfaces until ctx ends or one of them fails.
func (s *Server) Serve(ctx context.Context) error {
	s.log.Info("serving the HTTP surfaces",
		"public", s.publicLn.Addr().String(), "private", s.privateLn.Addr().String())
	errs := make(chan error, 2)
	serve := func(name string, srv *http.Server, ln net.Listener) {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("%s surface: %w", name, err)
			return
		}
		errs <- nil
	}
	go serve("public", s.public, s.publicLn)
	go serve("private", s.private, s.privateLn)

	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	// Shut down with a fresh context: ctx is already done.
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := errors.Join(s.public.Shutdown(shutCtx), s.private.Shutdown(shutCtx))
	if first == nil {
		// Both goroutines report; wait for them so none outlives Serve.
		first = errors.Join(<-errs, <-errs)
	} else {
		<-errs
	}
	if err != nil {
		err = fmt.Errorf("shutting down the HTTP surfaces: %w", err)
	}
	return errors.Join(first, err)
}
