package sched

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a test clock that moves only when told.
type clock struct{ ns atomic.Int64 }

var clockBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *clock) Now() time.Time               { return clockBase.Add(time.Duration(c.ns.Load())) }
func (c *clock) Advance(d time.Duration)      { c.ns.Add(int64(d)) }
func (c *clock) At(d time.Duration) time.Time { return clockBase.Add(d) }

func newSched(t testing.TB, cfg Config, ms ...Member) (*Scheduler, *clock) {
	t.Helper()
	c := &clock{}
	if cfg.Now == nil {
		cfg.Now = c.Now
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	if err := s.SetMembers(ms); err != nil {
		t.Fatalf("SetMembers: %v", err)
	}
	return s, c
}

// members returns equal-weight members of the default pool.
func members(ids ...string) []Member {
	ms := make([]Member, len(ids))
	for i, id := range ids {
		ms[i] = Member{ID: id}
	}
	return ms
}

// run picks n times for tenant, ending each request at once with the latency lat gives its
// target, and returns the sequence of IDs picked.
func run(t testing.TB, s *Scheduler, tenant string, n int, lat func(id string) time.Duration) []string {
	t.Helper()
	seq := make([]string, n)
	for i := range n {
		tg, err := s.Pick(tenant)
		if err != nil {
			t.Fatalf("pick %d: %v", i, err)
		}
		seq[i] = tg.ID()
		tg.Done(lat(tg.ID()), true)
	}
	return seq
}

func same(time.Duration) func(string) time.Duration {
	return func(string) time.Duration { return time.Millisecond }
}

func count(seq []string) map[string]int {
	n := map[string]int{}
	for _, id := range seq {
		n[id]++
	}
	return n
}

func share(seq []string, id string) float64 {
	return float64(count(seq)[id]) / float64(len(seq))
}

func statsOf(t testing.TB, s *Scheduler, id string) TargetStats {
	t.Helper()
	for _, st := range s.Stats() {
		if st.ID == id {
			return st
		}
	}
	t.Fatalf("no stats for %q", id)
	return TargetStats{}
}

func TestSmoothSequence(t *testing.T) {
	s, _ := newSched(t, Config{}, Member{ID: "a", Weight: 5}, Member{ID: "b", Weight: 1}, Member{ID: "c"})
	got := strings.Join(run(t, s, "t", 14, same(time.Millisecond)), "")
	if want := "aabacaa" + "aabacaa"; got != want {
		t.Errorf("got %s; want %s (nginx's smooth weighted round robin)", got, want)
	}
}

func TestStaticProportions(t *testing.T) {
	s, _ := newSched(t, Config{}, Member{ID: "a", Weight: 3}, Member{ID: "b", Weight: 1})
	seq := run(t, s, "t", 4000, same(time.Millisecond))
	if n := count(seq); n["a"] != 3000 || n["b"] != 1000 {
		t.Errorf("got %v; want a:3000 b:1000", n)
	}
	// Smooth: b never waits more than 4 picks.
	last := -1
	for i, id := range seq {
		if id == "b" {
			if i-last > 4 {
				t.Fatalf("b not picked between %d and %d", last, i)
			}
			last = i
		}
	}
}

func TestLatencyFeedback(t *testing.T) {
	for _, tc := range []struct {
		name     string
		advance  time.Duration // before the slow target becomes fast again
		from, to int           // the picks after that where b is back to half
	}{
		{name: "recovers by samples", from: 5000, to: 10000},
		{name: "recovers by decay at once", advance: time.Minute, from: 0, to: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := newSched(t, Config{}, members("a", "b")...)
			slowB := func(id string) time.Duration {
				if id == "b" {
					return 10 * time.Millisecond
				}
				return time.Millisecond
			}
			seq := run(t, s, "t", 10000, slowB)
			// Effective weights 1 and 0.15 (10× slower, 1.5× tolerated): b gets about 1/8.
			if got := share(seq, "b"); got <= 0.02 || got >= 0.2 {
				t.Errorf("slow b got share %.3f; want small but above 0 (about 0.13)", got)
			}
			c.Advance(tc.advance)
			seq = run(t, s, "t", 10000, same(time.Millisecond))
			if got := share(seq[tc.from:tc.to], "b"); got < 0.45 || got > 0.55 {
				t.Errorf("recovered b got share %.3f of picks %d to %d; want about 0.5", got, tc.from, tc.to)
			}
		})
	}
}

// Latencies within the tolerance of the best are noise: the static weights hold. Past it, or
// with no tolerance, traffic moves.
func TestTolerance(t *testing.T) {
	slowerB := func(id string) time.Duration {
		if id == "b" {
			return 1300 * time.Microsecond
		}
		return time.Millisecond
	}
	for _, tc := range []struct {
		name     string
		tol      float64
		min, max float64
	}{
		{"default", 0, 0.49, 0.51},
		{"none", -1, 0.40, 0.47}, // weights 1 and 1/1.3: b about 0.435
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newSched(t, Config{Tolerance: tc.tol}, members("a", "b")...)
			if got := share(run(t, s, "t", 10000, slowerB), "b"); got < tc.min || got > tc.max {
				t.Errorf("b, 1.3× slower, got share %.3f; want %.2f to %.2f", got, tc.min, tc.max)
			}
		})
	}
}

// One slow answer among fast ones (a pause) barely moves a target's share.
func TestSpike(t *testing.T) {
	s, _ := newSched(t, Config{}, members("a", "b")...)
	run(t, s, "t", 100, same(time.Millisecond))
	spiked := false
	run(t, s, "t", 2, func(id string) time.Duration {
		if id == "b" && !spiked {
			spiked = true
			return time.Second
		}
		return time.Millisecond
	})
	if got := share(run(t, s, "t", 200, same(time.Millisecond)), "b"); got < 0.45 || got > 0.55 {
		t.Errorf("b got share %.3f of the 200 picks after one 1s answer; want about 0.5", got)
	}
}

func TestFloor(t *testing.T) {
	s, _ := newSched(t, Config{FloorShare: 0.1}, members("a", "b")...)
	seq := run(t, s, "t", 10000, func(id string) time.Duration {
		if id == "b" {
			return time.Second
		}
		return time.Millisecond
	})
	// 1000 times slower would weigh 0.001; the floor keeps 0.1 of its weight: 1/11 of the picks.
	if got := share(seq, "b"); got < 0.08 || got > 0.1 {
		t.Errorf("very slow b got share %.4f; want the floor's, about 0.09", got)
	}
}

func TestDecay(t *testing.T) {
	s, c := newSched(t, Config{DecayHalfLife: time.Second}, members("a", "b")...)
	run(t, s, "t", 1000, func(id string) time.Duration {
		return map[string]time.Duration{"a": time.Millisecond, "b": 9 * time.Millisecond}[id]
	})
	if st := statsOf(t, s, "b"); st.EffectiveWeight > 0.2 {
		t.Fatalf("slow b has effective weight %.3f; want about 0.11", st.EffectiveWeight)
	}
	// No requests: each half-life halves b's distance to the best (1 ms).
	for _, want := range []time.Duration{5 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond} {
		c.Advance(time.Second)
		if got := statsOf(t, s, "b").EWMA; got < want-want/50 || got > want+want/50 {
			t.Errorf("b's EWMA after %s idle: got %s; want about %s", time.Duration(c.ns.Load()), got, want)
		}
	}
	c.Advance(time.Minute)
	if got := statsOf(t, s, "b").EffectiveWeight; got < 0.99 {
		t.Errorf("b idle for a minute has effective weight %.3f; want 1", got)
	}
}

func TestInFlightFeedback(t *testing.T) {
	s, _ := newSched(t, Config{}, members("a", "b")...)
	var held []*Target
	for len(held) < 9 {
		tg, err := s.Pick("t")
		if err != nil {
			t.Fatal(err)
		}
		if tg.ID() == "a" {
			held = append(held, tg)
		} else {
			tg.Done(time.Millisecond, true)
		}
	}
	// a weighs 1/(1+9) of b.
	if got := share(run(t, s, "t", 1000, same(time.Millisecond)), "a"); got <= 0 || got >= 0.2 {
		t.Errorf("a with 9 in flight got share %.3f; want about 0.09", got)
	}
	if st := statsOf(t, s, "a"); st.InFlight != 9 {
		t.Errorf("a has %d in flight; want 9", st.InFlight)
	}
	for _, tg := range held {
		tg.Done(time.Millisecond, true)
	}
	if got := share(run(t, s, "t", 1000, same(time.Millisecond)), "a"); got < 0.45 || got > 0.55 {
		t.Errorf("a with nothing in flight got share %.3f; want 0.5", got)
	}
}

func TestAdmission(t *testing.T) {
	s, _ := newSched(t, Config{}, Member{ID: "a", MaxInFlight: 2}, Member{ID: "b", MaxInFlight: 1})
	var held []*Target
	for range 3 {
		tg, err := s.Pick("t")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tg)
	}
	if n := count([]string{held[0].ID(), held[1].ID(), held[2].ID()}); n["a"] != 2 || n["b"] != 1 {
		t.Fatalf("picked %v; want a twice and b once", n)
	}
	if _, err := s.Pick("t"); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("got %v; want ErrOverloaded", err)
	}
	held[2].Done(time.Millisecond, true)
	tg, err := s.Pick("t")
	if err != nil {
		t.Fatalf("after Done: %v", err)
	}
	if tg.ID() != held[2].ID() {
		t.Errorf("picked %s; want %s, the one with a free slot", tg.ID(), held[2].ID())
	}
	if _, err := s.Pick("t"); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("got %v; want ErrOverloaded", err)
	}
}

func TestEjection(t *testing.T) {
	fail := func(t *testing.T, s *Scheduler, n int) {
		t.Helper()
		for i := range n {
			tg, err := s.Pick("t")
			if err != nil {
				t.Fatalf("failure %d: %v", i, err)
			}
			tg.Done(time.Millisecond, false)
		}
	}
	succeed := func(t *testing.T, s *Scheduler) {
		t.Helper()
		tg, err := s.Pick("t")
		if err != nil {
			t.Fatal(err)
		}
		tg.Done(time.Millisecond, true)
	}
	overloaded := func(t *testing.T, s *Scheduler, want bool) {
		t.Helper()
		tg, err := s.Pick("t")
		if got := errors.Is(err, ErrOverloaded); got != want {
			t.Fatalf("overloaded: got %v (%v); want %v", got, err, want)
		}
		if err == nil {
			tg.Done(time.Millisecond, true)
		}
	}

	t.Run("eject and re-admit", func(t *testing.T) {
		s, c := newSched(t, Config{}, members("a")...)
		fail(t, s, 5)
		overloaded(t, s, true)
		if got, want := statsOf(t, s, "a").EjectedUntil, c.At(5*time.Second); !got.Equal(want) {
			t.Errorf("ejected until %s; want %s", got, want)
		}
		c.Advance(5*time.Second - time.Nanosecond)
		overloaded(t, s, true)
		c.Advance(time.Nanosecond)
		if st := statsOf(t, s, "a"); !st.EjectedUntil.IsZero() || st.EffectiveWeight == 0 {
			t.Errorf("after the cooldown: %+v; want eligible", st)
		}
		// Still failing: a single failure ejects it for twice as long.
		fail(t, s, 1)
		if got, want := statsOf(t, s, "a").EjectedUntil, c.At(15*time.Second); !got.Equal(want) {
			t.Errorf("ejected again until %s; want %s", got, want)
		}
		c.Advance(10 * time.Second)
		succeed(t, s)
		// The success forgot the ejections: the next ejection needs 5 failures and lasts 5 s.
		fail(t, s, 4)
		overloaded(t, s, false)
	})

	t.Run("success resets the streak", func(t *testing.T) {
		s, _ := newSched(t, Config{EjectAfter: 3}, members("a")...)
		fail(t, s, 2)
		succeed(t, s)
		fail(t, s, 2)
		if st := statsOf(t, s, "a"); st.Streak != 2 || st.Failures != 4 || !st.EjectedUntil.IsZero() {
			t.Errorf("got %+v; want streak 2, 4 failures, not ejected", st)
		}
		fail(t, s, 1)
		overloaded(t, s, true)
	})

	t.Run("cooldown is capped", func(t *testing.T) {
		s, c := newSched(t, Config{EjectAfter: 1, EjectFor: time.Second, MaxEjectFor: 3 * time.Second}, members("a")...)
		for _, want := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second} {
			fail(t, s, 1)
			st := statsOf(t, s, "a")
			if got := st.EjectedUntil.Sub(c.Now()); got != want {
				t.Errorf("cooldown %s; want %s", got, want)
			}
			c.Advance(want)
		}
	})

	t.Run("ejected target gets no picks", func(t *testing.T) {
		s, _ := newSched(t, Config{}, members("a", "b")...)
		for failed := 0; failed < 5; {
			tg, err := s.Pick("t")
			if err != nil {
				t.Fatal(err)
			}
			ok := tg.ID() == "b"
			if !ok {
				failed++
			}
			tg.Done(time.Millisecond, ok)
		}
		if n := count(run(t, s, "t", 100, same(time.Millisecond))); n["b"] != 100 {
			t.Errorf("got %v; want all 100 on b", n)
		}
	})

	t.Run("late failures do not extend an ejection", func(t *testing.T) {
		s, c := newSched(t, Config{EjectAfter: 1}, members("a")...)
		t1, _ := s.Pick("t")
		t2, _ := s.Pick("t")
		t1.Done(time.Millisecond, false)
		c.Advance(time.Second)
		t2.Done(time.Millisecond, false)
		if got, want := statsOf(t, s, "a").EjectedUntil, c.At(5*time.Second); !got.Equal(want) {
			t.Errorf("ejected until %s; want %s", got, want)
		}
	})
}

func TestIsolation(t *testing.T) {
	cfg := Config{Isolated: map[string]string{"acme": "acme", "globex": "acme", "solo": "solo"}}
	s, _ := newSched(t, cfg,
		Member{ID: "a"}, Member{ID: "b", Pool: DefaultPoolName},
		Member{ID: "x", Pool: "acme"}, Member{ID: "y", Pool: "acme"},
		Member{ID: "z", Pool: "nobody"})

	for tenant, want := range map[string]string{"acme": "acme", "globex": "acme", "solo": "solo", "bob": DefaultPoolName, "": DefaultPoolName} {
		if got := s.PoolOf(tenant); got != want {
			t.Errorf("PoolOf(%q) = %q; want %q", tenant, got, want)
		}
	}
	for tenant, want := range map[string]string{"acme": "x y", "globex": "x y", "bob": "a b", "": "a b"} {
		n := count(run(t, s, tenant, 100, same(time.Millisecond)))
		var got []string
		for _, id := range []string{"a", "b", "x", "y", "z"} {
			if n[id] > 0 {
				got = append(got, id)
			}
		}
		if strings.Join(got, " ") != want {
			t.Errorf("tenant %q picked %v; want only %s", tenant, n, want)
		}
	}
	if _, err := s.Pick("solo"); !errors.Is(err, ErrNoTarget) {
		t.Errorf("tenant with an empty pool: got %v; want ErrNoTarget", err)
	}
	if err := s.SetMembers([]Member{{ID: "x", Pool: "acme"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pick("bob"); !errors.Is(err, ErrNoTarget) || !strings.Contains(err.Error(), `"shared"`) {
		t.Errorf("empty default pool: got %v; want ErrNoTarget naming the pool", err)
	}
}

func TestSetMembersKeepsStats(t *testing.T) {
	s, c := newSched(t, Config{}, Member{ID: "a", Value: 1}, Member{ID: "b", Value: 2})
	// a: ejected; b: 3 ms EWMA and one request in flight.
	for failed := 0; failed < 5; {
		tg, _ := s.Pick("t")
		if tg.ID() == "a" {
			tg.Done(time.Millisecond, false)
			failed++
		} else {
			tg.Done(3*time.Millisecond, true)
		}
	}
	b, _ := s.Pick("t")
	if b.ID() != "b" {
		t.Fatalf("picked %s; want b (a is ejected)", b.ID())
	}
	before := map[string]TargetStats{"a": statsOf(t, s, "a"), "b": statsOf(t, s, "b")}

	if err := s.SetMembers([]Member{{ID: "c"}, {ID: "b", Weight: 3, Value: 20}, {ID: "a", Value: 10}}); err != nil {
		t.Fatal(err)
	}
	a := statsOf(t, s, "a")
	if a.Failures != before["a"].Failures || !a.EjectedUntil.Equal(before["a"].EjectedUntil) || a.EWMA != before["a"].EWMA {
		t.Errorf("a after SetMembers: %+v; want its stats kept: %+v", a, before["a"])
	}
	bs := statsOf(t, s, "b")
	if bs.InFlight != 1 || bs.EWMA != 3*time.Millisecond || bs.Picks != before["b"].Picks || bs.Weight != 3 {
		t.Errorf("b after SetMembers: %+v; want 1 in flight, EWMA 3ms, %d picks, weight 3", bs, before["b"].Picks)
	}
	if got := b.Value(); got != 20 {
		t.Errorf("b's Value is %v; want the new one, 20", got)
	}
	if cs := statsOf(t, s, "c"); cs.Picks != 0 || cs.EWMA != 0 {
		t.Errorf("new c: %+v; want fresh", cs)
	}
	b.Done(3*time.Millisecond, true)
	if got := statsOf(t, s, "b").InFlight; got != 0 {
		t.Errorf("b has %d in flight after Done; want 0", got)
	}

	// Leaving drops the stats; coming back starts afresh. So does moving to another pool.
	if err := s.SetMembers([]Member{{ID: "b", Pool: "other"}}); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats(); len(got) != 1 || got[0].ID != "b" || got[0].Pool != "other" || got[0].Picks != 0 || got[0].EWMA != 0 {
		t.Errorf("after a left and b moved: %+v; want b alone, fresh, in pool other", got)
	}
	c.Advance(time.Second)
	if err := s.SetMembers(members("a")); err != nil {
		t.Fatal(err)
	}
	if a := statsOf(t, s, "a"); a.Failures != 0 || !a.EjectedUntil.IsZero() {
		t.Errorf("a back: %+v; want fresh", a)
	}
}

func TestDoneOnRemovedTarget(t *testing.T) {
	s, _ := newSched(t, Config{EjectAfter: 1}, members("a")...)
	old, err := s.Pick("t")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMembers(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMembers(members("a")); err != nil {
		t.Fatal(err)
	}
	cur, err := s.Pick("t")
	if err != nil {
		t.Fatal(err)
	}
	if cur == old {
		t.Fatal("a that came back is the removed target")
	}
	old.Done(time.Hour, false) // would eject a and raise its EWMA, were it the same
	old.Done(time.Hour, false) // a second Done must not drive anything negative
	st := statsOf(t, s, "a")
	if st.InFlight != 1 || st.Failures != 0 || st.EWMA != 0 || !st.EjectedUntil.IsZero() {
		t.Errorf("a after Done on the removed a: %+v; want 1 in flight and nothing else", st)
	}
	cur.Done(time.Millisecond, true)
	if st := statsOf(t, s, "a"); st.InFlight != 0 {
		t.Errorf("a has %d in flight; want 0", st.InFlight)
	}
}

func TestSetMembersRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		ms   []Member
		want string
	}{
		{"duplicate ID", []Member{{ID: "a"}, {ID: "b"}, {ID: "a", Pool: "p"}}, `ID "a" is repeated (members 0 and 2)`},
		{"empty ID", []Member{{ID: "a"}, {Pool: "p"}}, "member 1 has an empty ID"},
		{"negative weight", []Member{{ID: "a", Weight: -1}}, `member "a": negative weight -1`},
		{"negative MaxInFlight", []Member{{ID: "a", MaxInFlight: -2}}, `member "a": negative MaxInFlight -2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newSched(t, Config{}, Member{ID: "a", Weight: 2}, Member{ID: "c"})
			run(t, s, "t", 3, same(time.Millisecond))
			before := s.Stats()
			err := s.SetMembers(tc.ms)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want an error with %q", err, tc.want)
			}
			if after := s.Stats(); !reflect.DeepEqual(after, before) {
				t.Errorf("membership changed:\n got %+v\nwant %+v", after, before)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"isolated into the default pool", Config{Isolated: map[string]string{"t": "shared"}}, `tenant "t" into pool "shared": it is the default pool`},
		{"isolated into a renamed default pool", Config{DefaultPool: "main", Isolated: map[string]string{"t": "main"}}, "it is the default pool"},
		{"empty tenant", Config{Isolated: map[string]string{"": "p"}}, "empty tenant name"},
		{"empty pool", Config{Isolated: map[string]string{"t": ""}}, `tenant "t": empty pool name`},
		{"EWMA weight above 1", Config{EWMAWeight: 1.5}, "EWMA weight 1.5"},
		{"negative floor", Config{FloorShare: -0.1}, "floor share -0.1"},
		{"negative half-life", Config{DecayHalfLife: -time.Second}, "decay half-life -1s"},
		{"negative eject after", Config{EjectAfter: -1}, "eject after -1 failures"},
		{"cap below cooldown", Config{EjectFor: time.Minute, MaxEjectFor: time.Second}, "cap is below"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("got %v; want an error with %q", err, tc.want)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	s, _ := newSched(t, Config{Isolated: map[string]string{"acme": "acme"}}, Member{ID: "a", MaxInFlight: 1})
	held, err := s.Pick("t")
	if err != nil {
		t.Fatal(err)
	}
	s.Pick("t")    // overloaded
	s.Pick("acme") // no target
	s.Pick("acme")
	held.Done(time.Millisecond, true)
	var b bytes.Buffer
	s.set.WritePrometheus(&b)
	for _, want := range []string{
		`wisp_sched_picks_total{pool="shared",target="a"} 1`,
		`wisp_sched_rejected_total{pool="shared",reason="overloaded"} 1`,
		`wisp_sched_rejected_total{pool="acme",reason="no_target"} 2`,
		`wisp_sched_rejected_total{pool="acme",reason="overloaded"} 0`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, b.String())
		}
	}
	if err := s.SetMembers(members("b")); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	s.set.WritePrometheus(&b)
	if strings.Contains(b.String(), `target="a"`) || !strings.Contains(b.String(), `wisp_sched_picks_total{pool="shared",target="b"} 0`) {
		t.Errorf("after a left, want a's counter gone and b's there:\n%s", b.String())
	}
}

// TestHammer runs picks and Dones against membership changes; run it with -race.
func TestHammer(t *testing.T) {
	s, _ := newSched(t, Config{Isolated: map[string]string{"iso": "iso"}, EjectAfter: 3, Now: time.Now}, members("a", "b", "c")...)
	memberships := [][]Member{
		{{ID: "a"}, {ID: "b", Weight: 2}, {ID: "c", MaxInFlight: 2}, {ID: "i1", Pool: "iso"}},
		{{ID: "b"}, {ID: "d", MaxInFlight: 1}, {ID: "i1", Pool: "iso"}, {ID: "i2", Pool: "iso", Weight: 3}},
		{{ID: "a", Weight: 4}, {ID: "c"}, {ID: "i2"}}, // i2 moves to the default pool, iso empties
		{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}, {ID: "i1", Pool: "iso"}, {ID: "x", Pool: "unused"}},
	}

	const workers, picks = 8, 3000
	var (
		wg, setters sync.WaitGroup
		stop        atomic.Bool
		mu          sync.Mutex
		seen        = map[*Target]bool{}
	)
	var sets atomic.Int64
	setters.Go(func() {
		for i := 0; !stop.Load(); i++ {
			sets.Add(1)
			if err := s.SetMembers(memberships[i%len(memberships)]); err != nil {
				t.Error(err)
				return
			}
			if i%5 == 0 {
				s.Stats()
			}
		}
	})
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			mine := map[*Target]bool{}
			var held []*Target
			tenant := "t"
			if w%3 == 0 {
				tenant = "iso"
			}
			for i := 0; i < picks || sets.Load() < 300; i++ {
				if tg, err := s.Pick(tenant); err == nil {
					mine[tg] = true
					_ = tg.Value()
					held = append(held, tg)
				} else if !errors.Is(err, ErrNoTarget) && !errors.Is(err, ErrOverloaded) {
					t.Errorf("Pick: %v", err)
					return
				}
				for len(held) > 0 && (len(held) > 4 || r.IntN(2) == 0) {
					held[0].Done(time.Duration(r.IntN(1000))*time.Microsecond, r.IntN(20) != 0)
					held = held[1:]
				}
			}
			for _, tg := range held {
				tg.Done(time.Millisecond, true)
			}
			mu.Lock()
			for tg := range mine {
				seen[tg] = true
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	stop.Store(true)
	setters.Wait()

	if len(seen) < 4 {
		t.Errorf("only %d targets were picked; want the membership changes to show", len(seen))
	}
	for tg := range seen {
		tg.pool.mu.Lock()
		n := tg.inFlight
		tg.pool.mu.Unlock()
		if n != 0 {
			t.Errorf("target %s (pool %s) has %d in flight after every request ended", tg.id, tg.pool.name, n)
		}
	}
	for _, st := range s.Stats() {
		if st.InFlight != 0 {
			t.Errorf("member %s has %d in flight after every request ended", st.ID, st.InFlight)
		}
	}
}

// TestPickDoesNotAllocate is the correctness twin of the benchmarks.
func TestPickDoesNotAllocate(t *testing.T) {
	s, _ := newSched(t, Config{Isolated: map[string]string{"iso": "iso"}, Now: time.Now}, benchMembers(16)...)
	for name, f := range map[string]func(){
		"pick and done": func() {
			tg, err := s.Pick("t")
			if err != nil {
				panic(err)
			}
			tg.Done(time.Millisecond, true)
		},
		"no target": func() {
			if _, err := s.Pick("iso"); !errors.Is(err, ErrNoTarget) {
				panic(err)
			}
		},
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per run; want 0", name, n)
		}
	}
}

func benchMembers(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("node-%d", i), Weight: 1 + i%3, Value: i}
	}
	return ms
}

// Release ends a pick without a latency sample; its failures count as Done's do.
func TestRelease(t *testing.T) {
	s, _ := newSched(t, Config{}, members("a")...)
	tg, err := s.Pick("t")
	if err != nil {
		t.Fatal(err)
	}
	tg.Release(true)
	if st := statsOf(t, s, "a"); st.InFlight != 0 || st.EWMA != 0 {
		t.Fatalf("after Release: in flight %d, EWMA %v; want 0 and no sample", st.InFlight, st.EWMA)
	}
	for range DefaultEjectAfter {
		tg, err := s.Pick("t")
		if err != nil {
			t.Fatal(err)
		}
		tg.Release(false)
	}
	if _, err := s.Pick("t"); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("Pick after %d failed releases: %v; want ErrOverloaded (ejected)", DefaultEjectAfter, err)
	}
	if st := statsOf(t, s, "a"); st.EWMA != 0 || st.Failures != DefaultEjectAfter {
		t.Fatalf("EWMA %v, failures %d; want no sample and %d", st.EWMA, st.Failures, DefaultEjectAfter)
	}
}
