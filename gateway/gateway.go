// Package gateway is Wisp's HTTP front door: a Hertz server on netpoll that routes each request
// to its function's runtime, serves the admin API, /metrics, and compresses responses.
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/cloudwego/hertz/pkg/common/hlog"

	"github.com/wispfn/wisp/kv/registry"
	"github.com/wispfn/wisp/kv/tenants"
	"github.com/wispfn/wisp/pool"
)

// adminPrefix is the reserved path prefix of the admin API; no function can route under it.
const adminPrefix = "/_wisp"

// DefaultMaxModuleBytes bounds a deployed module, after decompression.
const DefaultMaxModuleBytes = 64 << 20

// Config configures a Server.
type Config struct {
	// Listener is where the server accepts connections. Required: the caller picks the
	// address (127.0.0.1:0 in tests) and can read it back before serving.
	Listener net.Listener
	// Token guards the admin API (Authorization: Bearer TOKEN). Required.
	Token string
	// Registry stores function metadata and code. Required.
	Registry *registry.Registry
	// Runtime compiles and runs functions. Required.
	Runtime *pool.Runtime
	// Logger receives request errors and lifecycle events. Default slog.Default().
	Logger *slog.Logger
	// MaxModuleBytes bounds a module upload after decompression. Default DefaultMaxModuleBytes.
	MaxModuleBytes int
	// Logs is the per-function log stream behind GET /_wisp/logs/NAME. Nil: no logs endpoint.
	Logs LogSource
	// Tenants holds the tenants' admin tokens: each opens the admin API to its tenant's
	// functions only. Nil: only the operator's Token.
	Tenants *tenants.Tokens
	// Cluster spreads requests over the nodes of each function's pool. Nil: every request
	// runs in this process.
	Cluster *Cluster
	// Playground, when set, serves the playground at /_wisp/playground/ (see Playground).
	Playground *Playground
}

// Server is the gateway. Start it once, Shutdown it once.
type Server struct {
	cfg    Config
	token  []byte
	log    *slog.Logger
	cat    *catalog
	play   *playgroundState // nil: no playground
	h      *server.Hertz
	runErr chan error

	stopFollow context.CancelFunc // ends the registry watch and the expiry Load started
	followDone chan struct{}
	expireDone chan struct{}
	closing    chan struct{} // closed when Shutdown starts: ends the log followers
}

var hlogOnce sync.Once

// New builds a Server; it does not accept connections until Start.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Listener == nil:
		return nil, errors.New("gateway: no listener")
	case cfg.Token == "":
		return nil, errors.New("gateway: no admin token")
	case cfg.Registry == nil || cfg.Runtime == nil:
		return nil, errors.New("gateway: registry and runtime are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxModuleBytes <= 0 {
		cfg.MaxModuleBytes = DefaultMaxModuleBytes
	}
	hlogOnce.Do(func() { hlog.SetLevel(hlog.LevelWarn) })
	if cfg.Cluster != nil {
		if err := cfg.Cluster.init(); err != nil {
			return nil, err
		}
	}
	s := &Server{cfg: cfg, token: []byte(cfg.Token), log: cfg.Logger, cat: newCatalog(cfg.Registry, cfg.Runtime), runErr: make(chan error, 1), followDone: make(chan struct{}), expireDone: make(chan struct{}), closing: make(chan struct{})}
	s.h = server.New(
		server.WithListener(cfg.Listener),
		server.WithMaxRequestBodySize(cfg.MaxModuleBytes+1<<20),
		server.WithRedirectTrailingSlash(false),
		server.WithRedirectFixedPath(false),
		server.WithDisablePrintRoute(true),
		server.WithExitWaitTime(time.Second),
		server.WithIdleTimeout(90*time.Second),
	)
	if cfg.Cluster != nil {
		s.cat.runsHere = cfg.Cluster.runsHere
	}
	if cfg.Playground != nil {
		var err error
		if s.play, err = newPlayground(*cfg.Playground); err != nil {
			return nil, err
		}
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	h := s.h
	h.GET("/metrics", s.serveMetrics)
	h.GET(adminPrefix+"/healthz", s.serveHealth)
	if s.play != nil {
		s.playgroundRoutes()
	}
	admin := h.Group(adminPrefix, s.authorize, s.scope)
	admin.POST("/tenants/:tenant/tokens", s.operatorOnly, s.serveCreateToken)
	admin.DELETE("/tenants/:tenant/tokens", s.operatorOnly, s.serveRevokeTokens)
	admin.GET("/functions", s.serveList)
	admin.GET("/functions/:name", s.serveGet)
	admin.PUT("/functions/:name", s.serveDeploy)
	admin.POST("/functions/:name", s.serveDeploy)
	admin.DELETE("/functions/:name", s.serveRemove)
	admin.POST("/functions/:name/rollback", s.serveRollback)
	admin.GET("/functions/:name/versions", s.serveVersions)
	admin.GET("/logs/:name", s.serveLogs)
	admin.GET("/profile/:name", s.serveProfile)
	admin.Any("/invoke/:name", s.serveAdminInvoke)
	admin.Any("/invoke/:name/*path", s.serveAdminInvoke)
	h.NoRoute(s.serveFunction)
}

// Load routes every function in the registry, compiled, and then keeps following the
// registry: deploys, rollbacks and deletes made through other nodes sharing it are routed here
// too, each compiled before it takes traffic. Call it once, before Start; the following ends
// with ctx or Shutdown.
func (s *Server) Load(ctx context.Context) error {
	ctx, s.stopFollow = context.WithCancel(ctx)
	if err := s.cat.follow(ctx, s.log, s.followDone); err != nil {
		close(s.expireDone)
		return err
	}
	go func() {
		defer close(s.expireDone)
		s.expire(ctx)
	}()
	return nil
}

// Start begins serving in the background.
func (s *Server) Start() {
	go func() { s.runErr <- s.h.Run() }()
}

// URL is the base URL clients use.
func (s *Server) URL() string { return "http://" + s.cfg.Listener.Addr().String() }

// Shutdown stops accepting connections, waits for in-flight requests until ctx ends, then
// retires every function version.
func (s *Server) Shutdown(ctx context.Context) error {
	close(s.closing)
	err := s.h.Shutdown(ctx)
	if s.stopFollow != nil {
		s.stopFollow()
		select {
		case <-s.followDone:
		case <-ctx.Done():
		}
		select {
		case <-s.expireDone:
		case <-ctx.Done():
		}
	}
	s.cat.close()
	return err
}

// Functions returns the number of routed functions.
func (s *Server) Functions() int { return len(s.cat.table().byName) }

func (s *Server) serveHealth(_ context.Context, rc *app.RequestContext) {
	writeJSON(rc, http.StatusOK, map[string]any{"status": "ok", "functions": s.Functions()})
}

func (s *Server) serveMetrics(_ context.Context, rc *app.RequestContext) {
	rc.Response.Header.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	w := rc.Response.BodyWriter()
	writePrometheus(w)
	if c := s.cfg.Cluster; c != nil {
		c.writeMetrics(w)
	}
}

// requestError logs an error the client caused or a server error, with the request it belongs to.
func (s *Server) requestError(rc *app.RequestContext, err error) {
	status, _ := statusOf(err)
	if status >= 500 {
		s.log.Error("request failed", "method", string(rc.Method()), "path", string(rc.Request.URI().PathOriginal()), "status", status, "error", err)
	}
	writeError(rc, err)
}
