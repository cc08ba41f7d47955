package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cloudwego/hertz/pkg/app"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/wispfn/wisp/kv/registry"
	"github.com/wispfn/wisp/kv/tenants"
	"github.com/wispfn/wisp/ring"
)

// tenantKey is where authorize leaves the tenant an admin request acts for.
const tenantKey = "wisp.tenant"

// authorize guards the admin API: the operator's token (WISP_TOKEN) opens all of it, a
// tenant's token (Config.Tenants) that tenant's functions only.
func (s *Server) authorize(_ context.Context, rc *app.RequestContext) {
	auth := rc.Request.Header.Peek("Authorization")
	tok, ok := bytes.CutPrefix(auth, []byte("Bearer "))
	tok = bytes.TrimSpace(tok)
	if ok && subtle.ConstantTimeCompare(tok, []byte(s.cfg.Token)) == 1 {
		return
	}
	if ok && s.cfg.Tenants != nil {
		if tenant, found := s.cfg.Tenants.Tenant(tok); found {
			rc.Set(tenantKey, tenant)
			return
		}
	}
	rc.Response.Header.Set("WWW-Authenticate", `Bearer realm="wisp"`)
	msg := "admin API needs Authorization: Bearer TOKEN (the server's WISP_TOKEN, or a tenant's token)"
	if ok {
		msg = "admin token does not match"
	}
	writeError(rc, errorf(http.StatusUnauthorized, "%s", msg))
	rc.Abort()
}

// callerTenant is the tenant an admin request acts for; "" for the operator.
func callerTenant(rc *app.RequestContext) string {
	return rc.GetString(tenantKey)
}

// scope keeps a tenant's admin requests to its own functions: a function of another tenant
// is "not found" to it (its existence is not told), and its name cannot be deployed over.
// The operator's requests pass.
func (s *Server) scope(ctx context.Context, rc *app.RequestContext) {
	tenant, name := callerTenant(rc), rc.Param("name")
	if tenant == "" || name == "" || registry.ValidName(name) != nil {
		return // the handler refuses a bad name itself
	}
	f, err := s.cfg.Registry.Get(ctx, name)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return
	case err != nil:
		s.requestError(rc, err)
	case f.Tenant == tenant:
		return
	case rc.FullPath() == adminPrefix+"/functions/:name" && (rc.Request.Header.IsPut() || rc.Request.Header.IsPost()):
		s.requestError(rc, errorf(http.StatusConflict, "function name %q is taken", name))
	default:
		s.requestError(rc, errorf(http.StatusNotFound, "no function named %q", name))
	}
	rc.Abort()
}

// operatorOnly refuses tenants' tokens.
func (s *Server) operatorOnly(_ context.Context, rc *app.RequestContext) {
	if callerTenant(rc) != "" {
		writeError(rc, errorf(http.StatusForbidden, "only the operator's token manages tenants"))
		rc.Abort()
	}
}

// serveCreateToken: POST /_wisp/tenants/TENANT/tokens makes a token for the tenant and returns
// it, once: only its hash is kept.
func (s *Server) serveCreateToken(ctx context.Context, rc *app.RequestContext) {
	if s.cfg.Tenants == nil {
		writeError(rc, errorf(http.StatusNotImplemented, "this node keeps no tenant tokens"))
		return
	}
	tenant := rc.Param("tenant")
	tok, err := s.cfg.Tenants.Create(ctx, tenant)
	if errors.Is(err, tenants.ErrInvalid) {
		err = errorf(http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		s.requestError(rc, err)
		return
	}
	s.log.Info("tenant token created", "tenant", tenant)
	writeJSON(rc, http.StatusCreated, map[string]string{"tenant": tenant, "token": tok})
}

// serveRevokeTokens: DELETE /_wisp/tenants/TENANT/tokens revokes every token of the tenant.
func (s *Server) serveRevokeTokens(ctx context.Context, rc *app.RequestContext) {
	if s.cfg.Tenants == nil {
		writeError(rc, errorf(http.StatusNotImplemented, "this node keeps no tenant tokens"))
		return
	}
	tenant := rc.Param("tenant")
	n, err := s.cfg.Tenants.Revoke(ctx, tenant)
	if errors.Is(err, tenants.ErrInvalid) {
		err = errorf(http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		s.requestError(rc, err)
		return
	}
	s.log.Info("tenant tokens revoked", "tenant", tenant, "tokens", n)
	writeJSON(rc, http.StatusOK, map[string]any{"tenant": tenant, "revoked": n})
}

// functionInfo is a function as the admin API shows it.
type functionInfo struct {
	registry.Function
	URL           string `json:"url,omitempty"`
	LiveInstances int    `json:"live_instances"`
	// RoutedVersion is the version this node serves: behind Version for the moments after
	// another node changed the function, while this one compiles the new version.
	RoutedVersion uint64 `json:"routed_version,omitempty"`
}

func (s *Server) info(meta registry.Function) functionInfo {
	fi := functionInfo{Function: meta}
	if e := s.cat.table().byName[meta.Name]; e != nil {
		if e.fn != nil {
			fi.LiveInstances = e.fn.Live()
		}
		fi.RoutedVersion = e.meta.Version
		fi.URL = s.URL() + e.prefix + "/"
	}
	return fi
}

func (s *Server) serveList(ctx context.Context, rc *app.RequestContext) {
	fns, err := s.cfg.Registry.List(ctx)
	if err != nil {
		s.requestError(rc, err)
		return
	}
	out := make([]functionInfo, 0, len(fns))
	tenant := callerTenant(rc)
	for _, f := range fns {
		if tenant == "" || f.Tenant == tenant {
			out = append(out, s.info(f))
		}
	}
	writeJSON(rc, http.StatusOK, map[string]any{"functions": out})
}

func (s *Server) serveGet(ctx context.Context, rc *app.RequestContext) {
	name := rc.Param("name")
	if err := registry.ValidName(name); err != nil {
		s.requestError(rc, errorf(http.StatusBadRequest, "%v", err))
		return
	}
	f, err := s.cfg.Registry.Get(ctx, name)
	if err != nil {
		s.requestError(rc, err)
		return
	}
	writeJSON(rc, http.StatusOK, s.info(f))
}

func (s *Server) serveRemove(ctx context.Context, rc *app.RequestContext) {
	name := rc.Param("name")
	if err := s.cat.remove(ctx, name); err != nil {
		s.requestError(rc, err)
		return
	}
	s.log.Info("function removed", "function", name)
	writeJSON(rc, http.StatusOK, map[string]string{"removed": name})
}

// serveDeploy takes a module as the request body (optionally zstd- or gzip-encoded) and the
// function's settings as query parameters: route, host, memory_mib, timeout_ms, max_instances,
// max_request_bytes, max_response_bytes, env (repeated, KEY=VALUE), warmup (true: run one
// synthetic request before the snapshot), fetch_allow (repeated: the hosts the function may
// fetch from, "api.example.com" or "*.example.com", optionally with ":port"; none: any public
// host), kv_namespace (the Global KV namespace of the function's kv hostcalls, shared by the
// functions of one tenant; default: the function's own), tenant (the tenant the function
// belongs to; an isolated tenant's functions run only on its pool's nodes), ttl (a duration:
// the function is deleted that long after this deploy; none: it stays).
func (s *Server) serveDeploy(ctx context.Context, rc *app.RequestContext) {
	start := time.Now()
	d, err := s.parseDeploy(rc)
	if err == nil && s.forwardDeploy(ctx, rc, d) {
		return
	}
	if err == nil {
		var meta registry.Function
		meta, err = s.cat.deploy(ctx, d)
		if err == nil {
			deploysTotal.Inc()
			s.log.Info("function deployed", "function", meta.Name, "version", meta.Version,
				"bytes", meta.Size, "route", meta.Route, "host", meta.Host, "took", time.Since(start).Round(time.Microsecond))
			writeJSON(rc, http.StatusCreated, s.info(meta))
			return
		}
	}
	deployFailures.Inc()
	s.log.Warn("deploy refused", "function", rc.Param("name"), "error", err)
	s.requestError(rc, err)
}

func (s *Server) parseDeploy(rc *app.RequestContext) (deployRequest, error) {
	d := deployRequest{Name: rc.Param("name")}
	if err := registry.ValidName(d.Name); err != nil {
		return d, errorf(http.StatusBadRequest, "%v", err)
	}
	args := rc.QueryArgs()
	d.Route = string(args.Peek("route"))
	d.Host = string(args.Peek("host"))
	var err error
	intArg := func(key string, max int64) int64 {
		v := args.Peek(key)
		if len(v) == 0 || err != nil {
			return 0
		}
		n, perr := strconv.ParseInt(string(v), 10, 64)
		if perr != nil || n < 0 || n > max {
			err = errorf(http.StatusBadRequest, "query parameter %s=%q must be an integer in [0, %d]", key, v, max)
		}
		return n
	}
	d.Limits = registry.Limits{
		MemoryMiB:        int(intArg("memory_mib", 4096)),
		TimeoutMs:        int(intArg("timeout_ms", int64(time.Hour/time.Millisecond))),
		MaxInstances:     int(intArg("max_instances", 1<<16)),
		MaxRequestBytes:  intArg("max_request_bytes", 1<<30),
		MaxResponseBytes: intArg("max_response_bytes", 1<<30),
	}
	if err != nil {
		return d, err
	}
	switch w := string(args.Peek("warmup")); w {
	case "", "0", "false":
	case "1", "true":
		d.WarmUp = true
	default:
		return d, errorf(http.StatusBadRequest, "query parameter warmup=%q must be true or false", w)
	}
	for _, kv := range args.PeekAll("env") {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok || k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return d, errorf(http.StatusBadRequest, "env %q must be KEY=VALUE with a non-empty key", kv)
		}
		if d.Env == nil {
			d.Env = map[string]string{}
		}
		d.Env[k] = v
	}
	for _, pat := range args.PeekAll("fetch_allow") {
		if err := ring.ValidHostPattern(string(pat)); err != nil {
			return d, errorf(http.StatusBadRequest, "fetch_allow: %v", err)
		}
		d.FetchAllow = append(d.FetchAllow, string(pat))
	}
	if ns := string(args.Peek("kv_namespace")); ns != "" {
		if err := registry.ValidName(ns); err != nil {
			return d, errorf(http.StatusBadRequest, "kv_namespace: %v", err)
		}
		d.KVNamespace = ns
	}
	if t := string(args.Peek("tenant")); t != "" {
		if err := registry.ValidName(t); err != nil {
			return d, errorf(http.StatusBadRequest, "tenant: %v", err)
		}
		d.Tenant = t
	}
	if v := args.Peek("ttl"); len(v) > 0 {
		ttl, perr := time.ParseDuration(string(v))
		if perr != nil || ttl < time.Second || ttl > MaxTTL {
			return d, errorf(http.StatusBadRequest, "query parameter ttl=%q must be a duration from 1s to %s, such as 30m", v, MaxTTL)
		}
		d.TTL = ttl
	}
	if caller := callerTenant(rc); caller != "" { // a tenant deploys as itself, into its namespaces
		if d.Tenant != "" && d.Tenant != caller {
			return d, errorf(http.StatusForbidden, "tenant %q cannot deploy as tenant %q", caller, d.Tenant)
		}
		d.Tenant = caller
		// A tenant's functions share the namespace named after it: tenants' names are distinct,
		// so no tenant can name another's keys.
		if d.KVNamespace != "" && d.KVNamespace != caller {
			return d, errorf(http.StatusForbidden, "kv_namespace %q: a function of tenant %q uses namespace %q", d.KVNamespace, caller, caller)
		}
		d.KVNamespace = caller
	}
	wasm, err := decodeUpload(rc.Request.Header.Peek("Content-Encoding"), rc.Request.Body(), s.cfg.MaxModuleBytes)
	if err != nil {
		return d, err
	}
	d.Wasm = wasm
	return d, nil
}

// decodeUpload undoes a Content-Encoding of zstd or gzip, refusing output larger than max.
func decodeUpload(encoding, body []byte, max int) ([]byte, error) {
	var r io.Reader
	switch strings.ToLower(strings.TrimSpace(string(encoding))) {
	case "", "identity":
		if len(body) > max {
			return nil, errorf(http.StatusRequestEntityTooLarge, "module of %d bytes exceeds the limit of %d", len(body), max)
		}
		return body, nil
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(max)+1))
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "cannot read zstd upload: %v", err)
		}
		defer zr.Close()
		r = zr
	case "gzip", "x-gzip":
		gr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "cannot read gzip upload: %v", err)
		}
		r = gr
	default:
		return nil, errorf(http.StatusUnsupportedMediaType, "Content-Encoding %q is not supported; send identity, zstd or gzip", encoding)
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "cannot decompress upload (%s): %v", encoding, err)
	}
	if len(out) > max {
		return nil, errorf(http.StatusRequestEntityTooLarge, "decompressed module exceeds the limit of %d bytes", max)
	}
	return out, nil
}

// serveAdminInvoke runs a function by name, whatever its route or host: the guest sees the path
// after /_wisp/invoke/NAME.
func (s *Server) serveAdminInvoke(ctx context.Context, rc *app.RequestContext) {
	start := time.Now()
	name := rc.Param("name")
	e := s.cat.table().byName[name]
	if e == nil {
		writeError(rc, errorf(http.StatusNotFound, "no function named %q", name))
		return
	}
	path := rc.Request.URI().PathOriginal()
	rest := path[min(len(path), len(adminPrefix)+len("/invoke/")+len(name)):]
	status := s.schedule(ctx, rc, e, rest)
	e.stats.observe(status, start)
}

// writePrometheus writes every registered metric plus process and Go runtime metrics.
func writePrometheus(w io.Writer) {
	metrics.WritePrometheus(w, true)
}

// serveRollback: POST /_wisp/functions/NAME/rollback[?version=N].
func (s *Server) serveRollback(ctx context.Context, rc *app.RequestContext) {
	var version uint64
	if v := rc.QueryArgs().Peek("version"); len(v) > 0 {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil || n == 0 {
			s.requestError(rc, errorf(http.StatusBadRequest, "query parameter version=%q must be a positive integer", v))
			return
		}
		version = n
	}
	meta, err := s.cat.rollback(ctx, rc.Param("name"), version)
	if err != nil {
		s.requestError(rc, err)
		return
	}
	s.log.Info("function rolled back", "function", meta.Name, "version", meta.Version, "copy_of", meta.RollbackOf)
	writeJSON(rc, http.StatusOK, s.info(meta))
}

// serveVersions: GET /_wisp/functions/NAME/versions, oldest first.
func (s *Server) serveVersions(ctx context.Context, rc *app.RequestContext) {
	name := rc.Param("name")
	if err := registry.ValidName(name); err != nil {
		s.requestError(rc, errorf(http.StatusBadRequest, "%v", err))
		return
	}
	vs, err := s.cfg.Registry.Versions(ctx, name)
	if err != nil {
		s.requestError(rc, err)
		return
	}
	writeJSON(rc, http.StatusOK, map[string]any{"versions": vs})
}
