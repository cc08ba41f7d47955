// Package sched picks the runtime target that serves a request: smooth weighted round robin
// over the targets of the tenant's pool, with weights recomputed from live feedback, passive
// ejection of failing targets, and admission control.
//
// # Algorithm
//
// Each Pick runs nginx's smooth weighted round robin over the eligible targets of one pool:
// every eligible target's current weight grows by its effective weight, the target with the
// largest current weight wins (the first one on a tie), and the winner's current weight drops
// by the sum of the effective weights. With static weights {5, 1, 1} that yields a, a, b, a, c,
// a, a: proportional, and spread out rather than bunched.
//
// The effective weight closes the loop. It is recomputed at every pick from live feedback:
//
//	effective = Weight / (1 + in flight) × min(1, best EWMA × (1 + Tolerance) / this target's EWMA)
//	            but never below FloorShare × Weight
//
// where EWMA is the exponentially weighted moving average of the latencies reported to
// Target.Done, and best is the lowest EWMA of the pool's members whose last request succeeded. A target without samples counts as the
// pool's best. The floor keeps a slow target probed, so it can show it has recovered; and the
// EWMA of a target that reported nothing for DecayHalfLife moves halfway back towards the
// pool's best for every such period, so a target that was slow once is not starved forever.
// A failure feeds the EWMA a penalised sample (twice the largest of its latency, the target's
// EWMA and the pool's best).
//
// # Ejection and admission
//
// EjectAfter consecutive failures eject a target for EjectFor; after the cooldown it is
// picked again, and a single further failure ejects it for twice as long (up to MaxEjectFor).
// A success forgets the failures and the ejections. A target with MaxInFlight requests in
// flight is skipped. When every member of the pool is skipped Pick returns ErrOverloaded;
// when the pool has no members it returns ErrNoTarget: a tenant never runs outside its pool.
//
// # Concurrency
//
// Scheduler and Target are safe for concurrent use. Each pool has its own mutex: Pick holds it
// for one pass over the pool's members, Done for an update of one target. Neither allocates,
// so tenants in different pools never contend and a pick costs one lock and one clock read.
package sched

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Defaults of the zero Config.
const (
	DefaultPoolName      = "shared"
	DefaultEWMAWeight    = 0.2
	DefaultDecayHalfLife = 2 * time.Second
	DefaultFloorShare    = 0.05
	DefaultTolerance     = 0.5
	DefaultEjectAfter    = 5
	DefaultEjectFor      = 5 * time.Second
	DefaultMaxEjectFor   = time.Minute
)

// ErrNoTarget is returned by Pick when the tenant's pool has no members. Callers answer 503.
var ErrNoTarget = errors.New("no runtime target in the tenant's pool")

// ErrOverloaded is returned by Pick when every member of the tenant's pool is at its
// in-flight limit (Member.MaxInFlight) or ejected after failures. Callers answer 503.
var ErrOverloaded = errors.New("every runtime target of the tenant's pool is at its in-flight limit (Member.MaxInFlight) or ejected after failures")

// Member is one runtime target as the membership source announces it.
type Member struct {
	ID          string // unique node id
	Pool        string // the pool it serves ("" means Config.DefaultPool)
	Weight      int    // static weight (capacity share), >= 1; 0 means 1
	MaxInFlight int    // admission: at most this many requests in flight on it; 0 = unlimited
	Value       any    // the caller's handle for it (e.g. a forwarding client), returned by Target.Value
}

// Config configures New. It is plain data; the zero value of every field means its
// documented default.
type Config struct {
	// DefaultPool is the pool of the tenants not in Isolated; "" means DefaultPoolName.
	DefaultPool string
	// Isolated maps a tenant to its own pool. Such a tenant runs only there, never in the
	// default pool; several tenants may share one isolated pool.
	Isolated map[string]string
	// Now is the clock; nil means time.Now. Tests inject their own.
	Now func() time.Time

	// EWMAWeight is the weight of a new latency sample in a target's EWMA, in (0, 1];
	// 0 means DefaultEWMAWeight.
	EWMAWeight float64
	// DecayHalfLife: a target that reports no latency for this long has the distance of its
	// EWMA to the pool's best halved, and again for every further period; 0 means
	// DefaultDecayHalfLife.
	DecayHalfLife time.Duration
	// FloorShare is the least part of its static weight a slow or busy target keeps, in
	// (0, 1]; 0 means DefaultFloorShare.
	FloorShare float64
	// Tolerance is how much slower than the pool's best a target may be and still count as
	// fast as the best: latencies within best × (1 + Tolerance) are noise (a node that gets
	// fewer requests also has colder caches), not a reason to move traffic; 0 means
	// DefaultTolerance, below 0 none.
	Tolerance float64
	// EjectAfter is the number of consecutive failures that eject a target; 0 means
	// DefaultEjectAfter.
	EjectAfter int
	// EjectFor is how long a first ejection lasts; 0 means DefaultEjectFor. Each ejection
	// that follows without a success in between lasts twice as long as the previous one, up
	// to MaxEjectFor; 0 means the larger of DefaultMaxEjectFor and EjectFor.
	EjectFor    time.Duration
	MaxEjectFor time.Duration
}

// Scheduler picks runtime targets for tenants' requests. It is safe for concurrent use.
type Scheduler struct {
	cfg      Config
	epoch    time.Time // times are kept as nanoseconds since epoch
	shared   *pool
	isolated map[string]*pool // tenant → its pool; read-only after New
	set      *metrics.Set

	mu      sync.Mutex       // serialises SetMembers and Stats
	pools   map[string]*pool // by name: the configured pools, and the pools members announce
	targets map[string]*Target
}

// pool is the set of targets that serve the same tenants. Pool objects live as long as a
// name refers to them, so a Target's pool never changes.
type pool struct {
	name string
	s    *Scheduler

	// Configured pools only (the others are never picked from).
	configured               bool
	noTarget, overloaded     *metrics.Counter
	errNoTarget, errOverload error

	mu      sync.Mutex
	members []*Target // in announcement order, which breaks ties
	best    float64   // the lowest EWMA seen by the last pick, for failure penalties
}

// New returns a scheduler without members. It registers the scheduler's metrics with the
// default VictoriaMetrics set; Close drops them:
//
//	wisp_sched_picks_total{pool="…",target="…"}              picks of a target
//	wisp_sched_rejected_total{pool="…",reason="no_target"}   picks refused: the pool had no members
//	wisp_sched_rejected_total{pool="…",reason="overloaded"}  picks refused: every member full or ejected
//
// Only one scheduler should be open at a time in a process: their metrics would share names.
func New(cfg Config) (*Scheduler, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Scheduler{
		cfg:      cfg,
		isolated: make(map[string]*pool, len(cfg.Isolated)),
		set:      metrics.NewSet(),
		pools:    map[string]*pool{},
		targets:  map[string]*Target{},
	}
	s.epoch = cfg.Now()
	s.shared = s.configuredPool(cfg.DefaultPool)
	for tenant, name := range cfg.Isolated {
		s.isolated[tenant] = s.configuredPool(name)
	}
	s.cfg.Isolated = nil // copied into s.isolated
	metrics.RegisterSet(s.set)
	return s, nil
}

func (c *Config) setDefaults() error {
	if c.DefaultPool == "" {
		c.DefaultPool = DefaultPoolName
	}
	for tenant, name := range c.Isolated {
		switch {
		case tenant == "":
			return fmt.Errorf("cannot isolate tenant %q into pool %q: empty tenant name", tenant, name)
		case name == "":
			return fmt.Errorf("cannot isolate tenant %q: empty pool name", tenant)
		case name == c.DefaultPool:
			return fmt.Errorf("cannot isolate tenant %q into pool %q: it is the default pool", tenant, name)
		}
	}
	switch {
	case c.EWMAWeight < 0 || c.EWMAWeight > 1:
		return fmt.Errorf("cannot use EWMA weight %g: must be in (0, 1] (0 means %g)", c.EWMAWeight, DefaultEWMAWeight)
	case c.FloorShare < 0 || c.FloorShare > 1:
		return fmt.Errorf("cannot use floor share %g: must be in (0, 1] (0 means %g)", c.FloorShare, DefaultFloorShare)
	case c.DecayHalfLife < 0:
		return fmt.Errorf("cannot use decay half-life %s: must not be negative (0 means %s)", c.DecayHalfLife, DefaultDecayHalfLife)
	case c.EjectAfter < 0:
		return fmt.Errorf("cannot eject after %d failures: must not be negative (0 means %d)", c.EjectAfter, DefaultEjectAfter)
	case c.EjectFor < 0 || c.MaxEjectFor < 0:
		return fmt.Errorf("cannot eject for %s up to %s: must not be negative (0 means %s up to %s)", c.EjectFor, c.MaxEjectFor, DefaultEjectFor, DefaultMaxEjectFor)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.EWMAWeight == 0 {
		c.EWMAWeight = DefaultEWMAWeight
	}
	if c.FloorShare == 0 {
		c.FloorShare = DefaultFloorShare
	}
	switch {
	case c.Tolerance == 0:
		c.Tolerance = DefaultTolerance
	case c.Tolerance < 0:
		c.Tolerance = 0
	}
	if c.DecayHalfLife == 0 {
		c.DecayHalfLife = DefaultDecayHalfLife
	}
	if c.EjectAfter == 0 {
		c.EjectAfter = DefaultEjectAfter
	}
	if c.EjectFor == 0 {
		c.EjectFor = DefaultEjectFor
	}
	if c.MaxEjectFor == 0 {
		c.MaxEjectFor = max(DefaultMaxEjectFor, c.EjectFor)
	}
	if c.MaxEjectFor < c.EjectFor {
		return fmt.Errorf("cannot eject for %s up to %s: the cap is below the first cooldown", c.EjectFor, c.MaxEjectFor)
	}
	return nil
}

// configuredPool returns the pool named name, creating it with its metrics. Called by New.
func (s *Scheduler) configuredPool(name string) *pool {
	if p, ok := s.pools[name]; ok {
		return p
	}
	p := &pool{
		name:        name,
		s:           s,
		configured:  true,
		noTarget:    s.set.NewCounter(fmt.Sprintf(`wisp_sched_rejected_total{pool=%q,reason="no_target"}`, name)),
		overloaded:  s.set.NewCounter(fmt.Sprintf(`wisp_sched_rejected_total{pool=%q,reason="overloaded"}`, name)),
		errNoTarget: fmt.Errorf("pool %q: %w", name, ErrNoTarget),
		errOverload: fmt.Errorf("pool %q: %w", name, ErrOverloaded),
	}
	s.pools[name] = p
	return p
}

// Close drops the scheduler's metrics. The scheduler keeps working without them.
func (s *Scheduler) Close() {
	metrics.UnregisterSet(s.set, true)
}

// PoolOf returns the name of the pool a tenant's requests run in.
func (s *Scheduler) PoolOf(tenant string) string {
	return s.poolOf(tenant).name
}

func (s *Scheduler) poolOf(tenant string) *pool {
	if p, ok := s.isolated[tenant]; ok {
		return p
	}
	return s.shared
}

// now returns the clock in nanoseconds since New.
func (s *Scheduler) now() int64 {
	return int64(s.cfg.Now().Sub(s.epoch))
}

// SetMembers replaces the membership. A member whose ID was already a member of the same
// pool keeps its live state (EWMA, in flight, failures, ejection, round-robin position) and
// takes the new Weight, MaxInFlight and Value; any other member starts afresh. Requests in
// flight on a removed target may still call Done: it affects that target alone.
//
// Every pool switches to its new members at once. Members of a pool that no tenant runs in
// are kept (Stats shows them) but never picked. SetMembers returns an error, and changes
// nothing, if an ID is empty or repeated, or a weight or MaxInFlight is negative.
func (s *Scheduler) SetMembers(ms []Member) error {
	seen := make(map[string]int, len(ms))
	for i, m := range ms {
		switch {
		case m.ID == "":
			return fmt.Errorf("cannot set members: member %d has an empty ID", i)
		case m.Weight < 0:
			return fmt.Errorf("cannot set member %q: negative weight %d", m.ID, m.Weight)
		case m.MaxInFlight < 0:
			return fmt.Errorf("cannot set member %q: negative MaxInFlight %d (0 means unlimited)", m.ID, m.MaxInFlight)
		}
		if j, dup := seen[m.ID]; dup {
			return fmt.Errorf("cannot set members: ID %q is repeated (members %d and %d)", m.ID, j, i)
		}
		seen[m.ID] = i
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	// Forget the targets that leave, or move to another pool, first: a target that comes
	// back gets a fresh counter.
	next := make(map[string]*Target, len(ms))
	for id, t := range s.targets {
		if i, ok := seen[id]; ok && t.pool.name == s.poolName(ms[i].Pool) {
			next[id] = t
			continue
		}
		s.set.UnregisterMetric(t.picksName)
	}

	// Assign members to pools; create pools and targets as needed (not yet visible to Pick).
	type placed struct {
		t                   *Target
		weight, maxInFlight int
	}
	byPool := map[*pool][]placed{}
	for _, m := range ms {
		name := s.poolName(m.Pool)
		p := s.pools[name]
		if p == nil {
			p = &pool{name: name, s: s}
			s.pools[name] = p
		}
		t := next[m.ID]
		if t == nil {
			t = newTarget(p, m.ID)
			next[m.ID] = t
		}
		v := m.Value
		t.value.Store(&v)
		byPool[p] = append(byPool[p], placed{t, max(m.Weight, 1), m.MaxInFlight})
	}

	// Switch every pool at once: lock them all (only here is more than one pool locked, and
	// s.mu serialises it), then publish.
	for _, p := range s.pools {
		p.mu.Lock()
	}
	for name, p := range s.pools {
		ps := byPool[p]
		p.members = p.members[:0:0]
		for _, x := range ps {
			x.t.weight, x.t.maxInFlight = x.weight, x.maxInFlight
			p.members = append(p.members, x.t)
		}
		p.mu.Unlock()
		if len(ps) == 0 && !p.configured {
			delete(s.pools, name)
		}
	}
	s.targets = next
	return nil
}

func (s *Scheduler) poolName(name string) string {
	if name == "" {
		return s.cfg.DefaultPool
	}
	return name
}

// Pick returns a target of the tenant's pool and counts a request in flight on it; the
// caller must call the target's Done exactly once when the request ends. It returns an error
// wrapping ErrNoTarget when the pool has no members (it never falls back to another pool),
// and one wrapping ErrOverloaded when every member is at MaxInFlight or ejected. Pick does
// not allocate.
func (s *Scheduler) Pick(tenant string) (*Target, error) {
	p := s.poolOf(tenant)
	now := s.now()
	p.mu.Lock()
	if len(p.members) == 0 {
		p.mu.Unlock()
		p.noTarget.Inc()
		return nil, p.errNoTarget
	}
	t := p.pickLocked(now)
	p.mu.Unlock()
	if t == nil {
		p.overloaded.Inc()
		return nil, p.errOverload
	}
	t.picksTotal.Inc()
	return t, nil
}

// pickLocked is one round of smooth weighted round robin over the eligible members.
func (p *pool) pickLocked(now int64) *Target {
	p.best = p.bestLocked()
	var (
		chosen *Target
		total  int64
	)
	for _, t := range p.members {
		if !t.eligible(now) {
			continue
		}
		w := t.effective(now, p.best, &p.s.cfg)
		t.current += w
		total += w
		if chosen == nil || t.current > chosen.current {
			chosen = t
		}
	}
	if chosen == nil {
		return nil
	}
	chosen.current -= total
	chosen.inFlight++
	chosen.picks++
	return chosen
}

// bestLocked returns the lowest EWMA among the members whose last request succeeded (a
// target that fails fast is no model), 0 if there is none.
func (p *pool) bestLocked() float64 {
	best := 0.0
	for _, t := range p.members {
		if t.sampled && t.streak == 0 && (best == 0 || t.ewma < best) {
			best = t.ewma
		}
	}
	return best
}

// TargetStats is a snapshot of one target, for metrics and debugging.
type TargetStats struct {
	ID              string
	Pool            string
	Weight          int
	MaxInFlight     int     // 0: unlimited
	EffectiveWeight float64 // what the next pick would weigh it at, on Weight's scale; 0 if it would be skipped
	InFlight        int
	EWMA            time.Duration // latency average, decayed; 0 before the first sample
	Picks           uint64
	Failures        uint64
	Streak          int       // consecutive failures
	EjectedUntil    time.Time // zero when not ejected
}

// Stats returns a snapshot of every member, ordered by pool and then as announced.
func (s *Scheduler) Stats() []TargetStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.pools))
	for name := range s.pools {
		names = append(names, name)
	}
	slices.Sort(names)
	now := s.now()
	var out []TargetStats
	for _, name := range names {
		p := s.pools[name]
		p.mu.Lock()
		best := p.bestLocked()
		for _, t := range p.members {
			st := TargetStats{
				ID:          t.id,
				Pool:        p.name,
				Weight:      t.weight,
				MaxInFlight: t.maxInFlight,
				InFlight:    t.inFlight,
				EWMA:        time.Duration(t.latency(now, best, s.cfg.DecayHalfLife)),
				Picks:       t.picks,
				Failures:    t.failures,
				Streak:      t.streak,
			}
			if t.eligible(now) {
				st.EffectiveWeight = float64(t.effective(now, best, &s.cfg)) / unit
			}
			if now < t.ejectedUntil {
				st.EjectedUntil = s.epoch.Add(time.Duration(t.ejectedUntil))
			}
			out = append(out, st)
		}
		p.mu.Unlock()
	}
	return out
}
