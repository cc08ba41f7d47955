package gateway

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wispfn/wisp/kv/registry"
)

// MaxTTL bounds the lifetime of a temporary function (deploy ?ttl=).
const MaxTTL = 30 * 24 * time.Hour

// expireEvery is how often a gateway looks for expired functions: a temporary function may
// answer for up to this long past its expiry.
var expireEvery = time.Second

var expiredTotal = metrics.NewCounter(`wisp_gateway_functions_expired_total`)

// expire deletes the functions whose Expires has passed, until ctx ends. Every gateway runs it
// over the functions it routes, so temporary functions go away while any node is up; the
// deletes of two nodes racing for one function end in one delete and one not-found, ignored.
func (s *Server) expire(ctx context.Context) {
	t := time.NewTicker(expireEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for name, e := range s.cat.table().byName {
				if !expired(e.meta, now) {
					continue
				}
				// The table may lag a redeploy made elsewhere that moved the expiry: ask the
				// registry for the current version first.
				cur, err := s.cfg.Registry.Get(ctx, name)
				if err != nil {
					if !errors.Is(err, registry.ErrNotFound) && ctx.Err() == nil {
						s.log.Warn("cannot check an expired function", "function", name, "error", err)
					}
					continue
				}
				if !expired(cur, now) {
					continue
				}
				if err := s.cat.remove(ctx, name); err != nil {
					if !errors.Is(err, registry.ErrNotFound) && ctx.Err() == nil {
						s.log.Warn("cannot delete an expired function", "function", name, "error", err)
					}
					continue
				}
				expiredTotal.Inc()
				s.log.LogAttrs(ctx, slog.LevelInfo, "function expired", slog.String("function", name),
					slog.Uint64("version", cur.Version), slog.Time("expires", cur.Expires))
			}
		}
	}
}

func expired(f registry.Function, now time.Time) bool {
	return !f.Expires.IsZero() && !now.Before(f.Expires)
}
