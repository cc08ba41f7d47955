package sched

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// unit is the fixed-point scale of weights: a static weight w counts w×unit in the round
// robin, so feedback can lower it in small steps while static weights stay exact.
const unit = 1024

const (
	// failurePenalty multiplies the latency sample of a failed request.
	failurePenalty = 2
	// minSample is the least latency a sample counts as, so that no EWMA is 0.
	minSample = time.Microsecond
)

// Target is one member of a pool as Pick hands it out. The same *Target is returned for every
// pick of that member; its methods are safe for concurrent use.
type Target struct {
	id         string
	pool       *pool // never changes: a member that moves to another pool is a new Target
	value      atomic.Pointer[any]
	picksName  string
	picksTotal *metrics.Counter

	// Guarded by pool.mu.
	weight, maxInFlight int
	inFlight            int
	current             int64   // smooth round robin position
	ewma                float64 // latency average in ns, as of sampledAt
	sampled             bool    // ewma holds at least one sample
	sampledAt           int64   // ns since the scheduler's epoch
	streak              int     // consecutive failures
	ejections           uint    // ejections since the last success
	ejectedUntil        int64   // ns since the scheduler's epoch
	picks, failures     uint64
}

func newTarget(p *pool, id string) *Target {
	t := &Target{id: id, pool: p}
	t.picksName = fmt.Sprintf(`wisp_sched_picks_total{pool=%q,target=%q}`, p.name, id)
	t.picksTotal = p.s.set.GetOrCreateCounter(t.picksName)
	return t
}

// ID returns the member's ID.
func (t *Target) ID() string { return t.id }

// Value returns the member's Value, as last announced by SetMembers.
func (t *Target) Value() any { return *t.value.Load() }

// spikeCap bounds a successful sample at this multiple of the target's average (or the
// pool's best, before its first sample).
const spikeCap = 4

// Done ends a request that Pick started on t: it is no longer in flight, and its latency
// feeds t's EWMA. ok=false reports a failure: it counts towards ejection and feeds the EWMA a
// penalised latency. Call Done exactly once per pick, also after t left the membership (it
// then affects t alone). Done does not allocate.
func (t *Target) Done(latency time.Duration, ok bool) {
	p := t.pool
	cfg := &p.s.cfg
	now := p.s.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	t.end(ok, now, cfg)
	cur := t.latency(now, p.best, cfg.DecayHalfLife)
	sample := float64(max(latency, minSample))
	if ok {
		// One slow answer (a pause, a node busy compiling) moves the average by a bounded
		// step: a target that stays slow still gets there, a few samples later.
		if ref := max(cur, p.best); ref > 0 {
			sample = min(sample, ref*spikeCap)
		}
	} else {
		sample = max(sample, cur, p.best) * failurePenalty
	}
	if t.sampled {
		t.ewma = cur + cfg.EWMAWeight*(sample-cur)
	} else {
		t.ewma, t.sampled = sample, true
	}
	t.sampledAt = now
}

// Release ends a request that Pick started on t, like Done, but without a latency sample: for
// work whose duration says nothing of the target's speed (a deploy that compiles). ok=false
// counts as a failure, as for Done, with no penalty sample.
func (t *Target) Release(ok bool) {
	p := t.pool
	cfg := &p.s.cfg
	now := p.s.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	t.end(ok, now, cfg)
}

// end takes a request off t and counts its success or failure: a success forgets the failures
// before it; enough failures in a row eject t. Caller holds pool.mu.
func (t *Target) end(ok bool, now int64, cfg *Config) {
	if t.inFlight > 0 {
		t.inFlight--
	}
	if ok {
		t.streak, t.ejections = 0, 0
		return
	}
	t.failures++
	t.streak++
	if t.streak >= cfg.EjectAfter && now >= t.ejectedUntil {
		t.ejectedUntil = now + int64(ejectFor(cfg, t.ejections))
		t.ejections++
	}
}

// ejectFor is the cooldown of an ejection that follows n others without a success between.
func ejectFor(cfg *Config, n uint) time.Duration {
	d := cfg.EjectFor
	for ; n > 0 && d < cfg.MaxEjectFor; n-- {
		d *= 2
	}
	return min(d, cfg.MaxEjectFor)
}

// eligible says whether t may be picked now. Caller holds pool.mu.
func (t *Target) eligible(now int64) bool {
	return now >= t.ejectedUntil && (t.maxInFlight == 0 || t.inFlight < t.maxInFlight)
}

// latency returns t's EWMA decayed towards best: halfway for every halfLife since its last
// sample. Caller holds pool.mu.
func (t *Target) latency(now int64, best float64, halfLife time.Duration) float64 {
	if !t.sampled || t.ewma <= best {
		return t.ewma
	}
	idle := (now - t.sampledAt) / int64(halfLife)
	if idle <= 0 {
		return t.ewma
	}
	return best + math.Ldexp(t.ewma-best, -int(min(idle, 1<<20)))
}

// effective returns t's weight for the next round, in units of 1/unit of a static weight.
// Caller holds pool.mu.
func (t *Target) effective(now int64, best float64, cfg *Config) int64 {
	static := float64(t.weight) * unit
	w := static / float64(1+t.inFlight)
	if l, bound := t.latency(now, best, cfg.DecayHalfLife), best*(1+cfg.Tolerance); l > bound {
		w *= bound / l
	}
	return int64(max(w, static*cfg.FloorShare, 1))
}
