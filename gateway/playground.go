package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cloudwego/hertz/pkg/app"

	"github.com/wispfn/wisp/gateway/playground"
	"github.com/wispfn/wisp/kv/registry"
)

// Playground configures the playground (Config.Playground): a page at /_wisp/playground/ where
// whoever reaches the gateway writes a function in Go or JavaScript, deploys it to a temporary
// URL with one click, sends it requests and follows its log live. It needs no admin token:
// turn it on only where that is wanted (a developer's machine, a staging node).
//
// Each deploy answers a key (shown once, kept by the page) without which the function cannot
// be redeployed, deleted or have its log read; the function itself is public at its URL, as
// any function is. Playground functions belong to tenant "playground" (isolate it to a pool of
// its own with --isolate playground=POOL), have their own KV namespace, the limits below, and
// are deleted TTL after their last deploy.
type Playground struct {
	// Build compiles source, the whole main.go of a Go function (lang "go") or index.js of a
	// JavaScript one (lang "js"), into a module. An error wrapping ErrBuild is the source's
	// fault and its message is shown to the user; any other is the node's. Required.
	Build func(ctx context.Context, lang string, source []byte) ([]byte, error)
	// TTL is how long a playground function lives after its last deploy. Default 1 h.
	TTL time.Duration
	// MaxFunctions bounds the playground functions alive at once. Default 32.
	MaxFunctions int
	// MaxSourceBytes bounds one function's source. Default 256 KiB.
	MaxSourceBytes int
	// Limits are the playground functions' limits; zero fields are PlaygroundLimits'.
	Limits registry.Limits
}

// ErrBuild marks a build that failed because of the source (Playground.Build).
var ErrBuild = errors.New("the function does not build")

// PlaygroundLimits are the default limits of playground functions.
var PlaygroundLimits = registry.Limits{MemoryMiB: 128, TimeoutMs: 10_000, MaxInstances: 4, MaxRequestBytes: 1 << 20, MaxResponseBytes: 4 << 20}

// playgroundTenant owns the playground's functions.
const playgroundTenant = "playground"

// playgroundKeyHeader carries a playground function's key (or ?key=).
const playgroundKeyHeader = "X-Wisp-Playground-Key"

// maxBuildQueue bounds the deploys waiting for the builder: builds run one at a time (a Go
// build takes both cores for a second or more), and past this many waiting the playground
// answers 429 at once.
const maxBuildQueue = 4

var (
	playgroundDeploys  = metrics.NewCounter(`wisp_playground_deploys_total{outcome="deployed"}`)
	playgroundRefused  = metrics.NewCounter(`wisp_playground_deploys_total{outcome="refused"}`)
	playgroundBuildErr = metrics.NewCounter(`wisp_playground_deploys_total{outcome="build_error"}`)
	playgroundFailed   = metrics.NewCounter(`wisp_playground_deploys_total{outcome="failed"}`)
	playgroundBuild    = metrics.NewPrometheusHistogramExt(`wisp_playground_build_seconds`, metrics.ExponentialBuckets(0.05, 2, 12))
)

// playgroundState is the Server's playground: its settings and its builder's queue.
type playgroundState struct {
	cfg     Playground
	waiting chan struct{} // deploys queued or building; capacity maxBuildQueue+1
	builder chan struct{} // the one build running
}

func newPlayground(cfg Playground) (*playgroundState, error) {
	if cfg.Build == nil {
		return nil, errors.New("gateway: the playground needs a Build function")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = time.Hour
	}
	if cfg.TTL > MaxTTL {
		return nil, errors.New("gateway: playground TTL longer than MaxTTL")
	}
	if cfg.MaxFunctions <= 0 {
		cfg.MaxFunctions = 32
	}
	if cfg.MaxSourceBytes <= 0 {
		cfg.MaxSourceBytes = 256 << 10
	}
	l, d := &cfg.Limits, PlaygroundLimits
	if l.MemoryMiB == 0 {
		l.MemoryMiB = d.MemoryMiB
	}
	if l.TimeoutMs == 0 {
		l.TimeoutMs = d.TimeoutMs
	}
	if l.MaxInstances == 0 {
		l.MaxInstances = d.MaxInstances
	}
	if l.MaxRequestBytes == 0 {
		l.MaxRequestBytes = d.MaxRequestBytes
	}
	if l.MaxResponseBytes == 0 {
		l.MaxResponseBytes = d.MaxResponseBytes
	}
	return &playgroundState{cfg: cfg, waiting: make(chan struct{}, maxBuildQueue+1), builder: make(chan struct{}, 1)}, nil
}

func (s *Server) playgroundRoutes() {
	h := s.h
	const base = adminPrefix + "/playground"
	h.GET(base, func(_ context.Context, rc *app.RequestContext) {
		rc.Redirect(http.StatusMovedPermanently, []byte(base+"/"))
	})
	h.GET(base+"/", s.servePlaygroundPage)
	h.POST(base+"/functions", s.servePlaygroundCreate)
	h.PUT(base+"/functions/:name", s.playgroundOwner, s.servePlaygroundUpdate)
	h.DELETE(base+"/functions/:name", s.playgroundOwner, s.servePlaygroundDelete)
	h.GET(base+"/functions/:name/logs", s.playgroundOwner, s.servePlaygroundLogs)
}

func (s *Server) servePlaygroundPage(_ context.Context, rc *app.RequestContext) {
	rc.Response.Header.Set("Content-Type", "text/html; charset=utf-8")
	rc.Response.Header.Set("Cache-Control", "no-cache")
	rc.Response.Header.Set("X-Content-Type-Options", "nosniff")
	rc.Response.Header.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:")
	rc.Response.SetBody(playground.Page)
}

// playgroundSource is the body of a playground deploy.
type playgroundSource struct {
	Lang   string `json:"lang"`
	Source string `json:"source"`
}

// playgroundInfo is the answer to a playground deploy.
type playgroundInfo struct {
	Name    string    `json:"name"`
	Version uint64    `json:"version"`
	URL     string    `json:"url"`  // absolute, on this node
	Path    string    `json:"path"` // the function's path prefix, for a page on any host
	Key     string    `json:"key,omitempty"`
	Expires time.Time `json:"expires"`
	BuildMs int64     `json:"build_ms"`
	TookMs  int64     `json:"took_ms"`
}

func (s *Server) servePlaygroundCreate(ctx context.Context, rc *app.RequestContext) {
	n := 0
	for _, e := range s.cat.table().byName {
		if e.meta.PlaygroundKey != "" {
			n++
		}
	}
	if n >= s.play.cfg.MaxFunctions {
		playgroundRefused.Inc()
		writeError(rc, errorf(http.StatusTooManyRequests, "the playground holds %d functions, as many as it keeps; try again when one expires", n))
		rc.Response.Header.Set("Retry-After", "60")
		return
	}
	var name string
	for name == "" || s.cat.table().byName[name] != nil {
		var b [6]byte
		_, _ = rand.Read(b[:])
		name = "play-" + hex.EncodeToString(b[:])
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	s.playgroundDeploy(ctx, rc, name, hex.EncodeToString(key[:]), http.StatusCreated)
}

func (s *Server) servePlaygroundUpdate(ctx context.Context, rc *app.RequestContext) {
	s.playgroundDeploy(ctx, rc, rc.Param("name"), "", http.StatusOK)
}

// playgroundDeploy builds the source in the request body and deploys it as name. key is the
// new function's key (returned once); "" for a redeploy, which keeps the key it was given.
func (s *Server) playgroundDeploy(ctx context.Context, rc *app.RequestContext, name, key string, status int) {
	start := time.Now()
	var src playgroundSource
	body := rc.Request.Body()
	var err error
	switch {
	case len(body) > s.play.cfg.MaxSourceBytes+4<<10:
		err = errorf(http.StatusRequestEntityTooLarge, "source of %d bytes exceeds the playground's limit of %d", len(body), s.play.cfg.MaxSourceBytes)
	case json.Unmarshal(body, &src) != nil:
		err = errorf(http.StatusBadRequest, `the body must be JSON: {"lang": "go" or "js", "source": "..."}`)
	case src.Lang != "go" && src.Lang != "js":
		err = errorf(http.StatusBadRequest, `lang %q: the playground builds "go" (a main.go) or "js" (an index.js)`, src.Lang)
	case strings.TrimSpace(src.Source) == "":
		err = errorf(http.StatusBadRequest, "the source is empty")
	case len(src.Source) > s.play.cfg.MaxSourceBytes:
		err = errorf(http.StatusRequestEntityTooLarge, "source of %d bytes exceeds the playground's limit of %d", len(src.Source), s.play.cfg.MaxSourceBytes)
	}
	if err != nil {
		playgroundRefused.Inc()
		writeError(rc, err)
		return
	}
	if c := s.cfg.Cluster; c != nil && !c.runsHere(registry.Function{Tenant: playgroundTenant}) {
		// This node would run the function itself (a deploy runs where it is made), against
		// the isolation of the playground's tenant.
		writeError(rc, errorf(http.StatusMisdirectedRequest, "the playground's functions run in pool %q (--isolate %s=%s) and this node is in pool %q: open the playground on a node of pool %q",
			c.Sched.PoolOf(playgroundTenant), playgroundTenant, c.Sched.PoolOf(playgroundTenant), c.Pool, c.Sched.PoolOf(playgroundTenant)))
		return
	}
	select {
	case s.play.waiting <- struct{}{}:
		defer func() { <-s.play.waiting }()
	default:
		playgroundRefused.Inc()
		writeError(rc, errorf(http.StatusTooManyRequests, "the playground is building %d functions already; try again in a few seconds", maxBuildQueue))
		rc.Response.Header.Set("Retry-After", "5")
		return
	}
	select {
	case s.play.builder <- struct{}{}:
	case <-ctx.Done():
		writeError(rc, errorf(http.StatusServiceUnavailable, "the playground is shutting down"))
		return
	}
	buildStart := time.Now()
	wasm, err := s.play.cfg.Build(ctx, src.Lang, []byte(src.Source))
	<-s.play.builder
	buildTook := time.Since(buildStart)
	if err != nil {
		if errors.Is(err, ErrBuild) {
			playgroundBuildErr.Inc()
			writeError(rc, &httpError{status: http.StatusUnprocessableEntity, msg: err.Error()})
			return
		}
		playgroundFailed.Inc()
		s.requestError(rc, errorf(http.StatusServiceUnavailable, "the playground cannot build: %v", err))
		return
	}
	playgroundBuild.Update(buildTook.Seconds())
	d := deployRequest{Name: name, Tenant: playgroundTenant, Limits: s.play.cfg.Limits, TTL: s.play.cfg.TTL, Wasm: wasm}
	if key != "" {
		d.PlaygroundKey = hashKey(key)
	} else if e := s.cat.table().byName[name]; e != nil && e.meta.PlaygroundKey != "" {
		d.PlaygroundKey = e.meta.PlaygroundKey // playgroundOwner checked the key against it
	} else { // it expired or was deleted while it built
		writeError(rc, errorf(http.StatusNotFound, "playground function %q is gone: it expired or was deleted", name))
		return
	}
	meta, err := s.cat.deploy(ctx, d)
	if err != nil {
		playgroundFailed.Inc()
		s.log.Warn("playground deploy refused", "function", name, "error", err)
		s.requestError(rc, err)
		return
	}
	playgroundDeploys.Inc()
	s.log.Info("playground function deployed", "function", name, "version", meta.Version, "lang", src.Lang,
		"build", buildTook.Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond))
	writeJSON(rc, status, playgroundInfo{
		Name: name, Version: meta.Version, URL: s.URL() + meta.Route + "/", Path: meta.Route + "/", Key: key,
		Expires: meta.Expires, BuildMs: buildTook.Milliseconds(), TookMs: time.Since(start).Milliseconds(),
	})
}

func (s *Server) servePlaygroundDelete(ctx context.Context, rc *app.RequestContext) {
	if err := s.cat.remove(ctx, rc.Param("name")); err != nil && !errors.Is(err, registry.ErrNotFound) {
		s.requestError(rc, err)
		return
	}
	rc.SetStatusCode(http.StatusNoContent)
}

func (s *Server) servePlaygroundLogs(ctx context.Context, rc *app.RequestContext) {
	s.streamLogs(rc, rc.Param("name"), true)
}

// playgroundOwner lets a request through only with the key of the playground function it
// names. Any failure is the same 404, so the endpoints tell nothing of functions whose key the
// caller lacks.
func (s *Server) playgroundOwner(ctx context.Context, rc *app.RequestContext) {
	key := rc.Request.Header.Peek(playgroundKeyHeader)
	if len(key) == 0 {
		key = rc.QueryArgs().Peek("key")
	}
	e := s.cat.table().byName[rc.Param("name")]
	if e == nil || e.meta.PlaygroundKey == "" || len(key) == 0 ||
		subtle.ConstantTimeCompare([]byte(hashKey(string(key))), []byte(e.meta.PlaygroundKey)) != 1 {
		rc.Abort()
		writeError(rc, errorf(http.StatusNotFound, "no playground function %q with that key", rc.Param("name")))
		return
	}
	rc.Next(ctx)
}

func hashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}
