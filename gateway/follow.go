package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wispfn/wisp/kv/registry"
	"github.com/wispfn/wisp/pool"
)

var (
	// followed counts registry changes by what this node did with them: "routed" (compiled and
	// now served), "removed", "current" (already routed here: this node made the change) or
	// "stale" (superseded before it was applied; a later change follows), "failed".
	followedRouted  = metrics.NewCounter(`wisp_gateway_registry_changes_total{outcome="routed"}`)
	followedRemoved = metrics.NewCounter(`wisp_gateway_registry_changes_total{outcome="removed"}`)
	followedCurrent = metrics.NewCounter(`wisp_gateway_registry_changes_total{outcome="current"}`)
	followedStale   = metrics.NewCounter(`wisp_gateway_registry_changes_total{outcome="stale"}`)
	followedFailed  = metrics.NewCounter(`wisp_gateway_registry_changes_total{outcome="failed"}`)
	// propagation is the time from a version's creation in the registry (by any node) to this
	// node routing it, compile and pre-initialization included. Only changes made elsewhere
	// (and the node's own start) are observed.
	propagation = metrics.NewPrometheusHistogramExt(`wisp_gateway_propagation_seconds`, metrics.ExponentialBuckets(1e-3, 2, 16))
)

// codeRetries bounds how often a change whose code cannot be fetched (NATS unreachable) is
// tried again before the node logs it as failed and waits for the next change.
var codeRetries = []time.Duration{100 * time.Millisecond, time.Second, 5 * time.Second}

// follow keeps the routing table in step with the registry, whichever node changes it. It
// routes the registry's current state first (compiling and pre-initializing every function)
// and returns once that is done; then, in the background until ctx ends, it applies every
// deploy, rollback and delete as the registry reports it. A new version is compiled before it
// is routed, so no request waits for a compile and none reaches a half-installed version.
// done is closed when the background part ends.
func (c *catalog) follow(ctx context.Context, log *slog.Logger, done chan<- struct{}) error {
	events, err := c.reg.Watch(ctx)
	if err != nil {
		close(done)
		return err
	}
	for ev := range events {
		if ev.Ready {
			go func() {
				defer close(done)
				for ev := range events {
					c.apply(ctx, log, ev)
				}
			}()
			return nil
		}
		c.apply(ctx, log, ev)
	}
	close(done)
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("the registry watch ended before the registry's state was read")
}

// apply brings the table in line with one registry change.
func (c *catalog) apply(ctx context.Context, log *slog.Logger, ev registry.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	cur := c.table().byName[ev.Name]
	if ev.Function == nil {
		if cur == nil {
			followedCurrent.Inc()
			return
		}
		// A delete can arrive after this node deployed the name again; the registry says which
		// is current.
		if _, err := c.reg.Get(ctx, ev.Name); err == nil {
			followedStale.Inc()
			return
		}
		c.unroute(ev.Name)
		followedRemoved.Inc()
		log.Info("function removed through another node", "function", ev.Name)
		return
	}
	f := *ev.Function
	if cur != nil && sameVersion(cur.meta, f) {
		followedCurrent.Inc()
		return
	}
	// This node may have made a later change itself (its own deploy routes before the
	// registry's report of it arrives); an event the registry has moved past is followed
	// by the one that moved it.
	now, err := c.reg.Get(ctx, f.Name)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		followedStale.Inc()
		return
	case err == nil && !sameVersion(now, f):
		followedStale.Inc()
		return
	}
	if err := c.table().conflict(f.Name, f.Route, f.Host); err != nil {
		followedFailed.Inc()
		log.Error("cannot route function version", "function", f.Name, "version", f.Version, "error", err)
		return
	}
	start := time.Now()
	if !c.runsHere(f) { // another pool's: routed to its nodes, never compiled here
		c.install(f, nil)
		followedRouted.Inc()
		log.Info("function routed to its pool", "function", f.Name, "version", f.Version, "tenant", f.Tenant)
		return
	}
	fn, err := c.compileVersion(ctx, f)
	if err == nil && ctx.Err() != nil {
		fn.Close() // the gateway is shutting down
		err = ctx.Err()
	}
	if err != nil {
		followedFailed.Inc()
		log.Error("cannot route function version", "function", f.Name, "version", f.Version, "error", err)
		return
	}
	c.install(f, fn)
	followedRouted.Inc()
	lag := time.Since(f.Created)
	propagation.Update(lag.Seconds())
	log.Info("function routed", "function", f.Name, "version", f.Version,
		"compile", time.Since(start).Round(time.Microsecond), "since_deploy", lag.Round(time.Microsecond))
}

// compileVersion fetches a version's code, retrying while the store is unreachable, and
// compiles it.
func (c *catalog) compileVersion(ctx context.Context, f registry.Function) (*pool.Function, error) {
	var wasm []byte
	var err error
	for i := 0; ; i++ {
		wasm, err = c.reg.Code(ctx, f.Digest)
		if err == nil || errors.Is(err, registry.ErrNotFound) || i == len(codeRetries) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(codeRetries[i]):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot load code of %q version %d: %w", f.Name, f.Version, err)
	}
	return c.rt.Compile(ctx, pool.Spec{Name: f.Name, Wasm: wasm, Env: f.Env, Limits: poolLimits(f.Limits), WarmUp: f.WarmUp, FetchAllow: f.FetchAllow, KVNamespace: f.KVNamespace})
}

// sameVersion reports whether a and b are the same version of a function: a name deleted and
// deployed again starts its versions over, so the creation time tells them apart.
func sameVersion(a, b registry.Function) bool {
	return a.Version == b.Version && a.Created.Equal(b.Created)
}
