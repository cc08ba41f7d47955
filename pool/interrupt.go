package pool

import (
	"context"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/wispfn/wisp/pool/snapshot"
)

// sweepInterval is how often overdue calls are interrupted: a deadline fires at most this late.
const sweepInterval = 5 * time.Millisecond

// runningSet holds the live instances that have an interrupt flag, for the sweeper. Instances
// join when created and leave when discarded, never per request.
type runningSet struct {
	mu sync.Mutex
	m  map[*instance]struct{}
}

func (s *runningSet) add(in *instance) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*instance]struct{}{}
	}
	s.m[in] = struct{}{}
	s.mu.Unlock()
}

func (s *runningSet) remove(in *instance) {
	s.mu.Lock()
	delete(s.m, in)
	s.mu.Unlock()
}

// interruptOverdue sets the interrupt flag of every instance whose call is past its deadline; the
// guest traps within 1,024 loop iterations or calls (pool/snapshot.InstrumentInterrupt). It runs until ctx ends.
func (r *Runtime) interruptOverdue(ctx context.Context) {
	defer close(r.sweeperDone)
	tick := time.NewTicker(sweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := nanotime()
		r.running.mu.Lock()
		for in := range r.running.m {
			// Claim the deadline before firing: a call that ends meanwhile finds it gone
			// and knows its instance was interrupted.
			if d := in.deadline.Load(); d != 0 && now > d && in.deadline.CompareAndSwap(d, 0) {
				in.interrupted.Store(true)
				in.intr.Set(1)
			}
		}
		r.running.mu.Unlock()
	}
}

// interruptFlag returns mod's interrupt flag, or nil if the module has none.
func interruptFlag(mod api.Module) api.MutableGlobal {
	g, _ := mod.ExportedGlobal(snapshot.ExportInterrupt).(api.MutableGlobal)
	return g
}
