// Package loadtest generates HTTP/1.1 load against one URL and measures it
// with HdrHistogram: open loop (a constant arrival rate, latency counted from
// each request's intended send time, so a stall is never hidden) or closed
// loop (every connection as fast as it can, for maximum throughput).
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"
)

// connectBackoff is how long a closed-loop worker waits after a failed
// connect, so a target that is down is not hammered with dials.
const connectBackoff = 10 * time.Millisecond

// maxBacklog bounds the open-loop arrivals waiting for a free connection;
// past it the pacer waits too, and the arrivals it then hands out late keep
// their intended send times.
const maxBacklog = 1 << 16

// Run loads cfg.URL as cfg says and returns what it measured. It returns
// once Warmup+Duration has passed (plus at most Timeout for the requests in
// flight), once Requests have completed, or once ctx is done; in the last
// case the Result holds what was measured until then, along with ctx.Err().
//
// In open loop arrivals come 1/Rate apart and go to whichever connection
// is free (ClientEpoll: each event loop paces its share of the rate over
// its share of the connections); when none is, arrivals queue and their
// latency counts the wait. Connections should therefore exceed Rate times
// the expected latency: Result.Lag shows when they do not.
//
// Run may be called concurrently; each call uses its own connections.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	t, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	r := &run{t: t, rec: newRecorder(t.Requests), stop: make(chan struct{})}
	err = r.prepare()
	defer r.release()
	if err != nil {
		return nil, err
	}

	r.start = time.Now()
	r.from = r.start.Add(t.Warmup)
	r.end = r.from.Add(t.Duration)
	user0, sys0 := cpuTimes()

	finished := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-ctx.Done():
			r.halt()
		case <-finished:
		}
	})
	var workers sync.WaitGroup
	loopErrs := make([]error, len(r.loops))
	switch {
	case r.loops != nil:
		for i, l := range r.loops {
			workers.Go(func() { loopErrs[i] = l.run() })
		}
	case t.open:
		arrivals := make(chan time.Time, min(maxBacklog, int(t.Rate*t.Duration.Seconds())+t.Connections))
		workers.Go(func() { r.pace(arrivals) })
		for _, c := range r.callers {
			workers.Go(func() { r.openLoop(c, arrivals) })
		}
	default:
		for _, c := range r.callers {
			workers.Go(func() { r.closedLoop(c) })
		}
	}
	workers.Wait()
	close(finished)
	watch.Wait()
	if err := errors.Join(loopErrs...); err != nil {
		return nil, err
	}

	user1, sys1 := cpuTimes()
	res := r.rec.result(t, r.from, CPU{
		User:           (user1 - user0).Seconds(),
		System:         (sys1 - sys0).Seconds(),
		wallSecondsRun: time.Since(r.start).Seconds(),
	}, r.all())
	res.GOMAXPROCS = runtime.GOMAXPROCS(0)
	return res, ctx.Err()
}

// run is the state of one Run, shared by its workers.
type run struct {
	t       *target
	rec     *recorder
	callers []caller // ClientNetConn and ClientHertz
	pacer   *pacer   // and in open loop, their pacer
	loops   []*loop  // ClientEpoll
	release func()

	start, from, end time.Time

	stop     chan struct{} // closed by halt
	haltOnce sync.Once

	mu       sync.Mutex
	requests int64 // responses and failures, warm-up included, for CPU per request
}

// prepare builds the event loops, or one caller per connection and, in
// open loop, their pacer.
func (r *run) prepare() error {
	t := r.t
	var releases []func()
	r.release = func() {
		for _, f := range releases {
			f()
		}
	}
	switch t.Client {
	case ClientEpoll:
		loops, err := newLoops(r)
		if err != nil {
			return err
		}
		r.loops = loops
		for _, l := range loops {
			releases = append(releases, l.close)
		}
		return nil
	case ClientNetConn:
		req := buildRequest(t)
		for range t.Connections {
			c := newConnCaller(t, req)
			r.callers = append(r.callers, c)
			releases = append(releases, c.drop)
		}
	case ClientHertz:
		cli, err := newHertzClient(t)
		if err != nil {
			return fmt.Errorf("cannot create Hertz client: %w", err)
		}
		for range t.Connections {
			c := newHertzCaller(cli, t)
			r.callers = append(r.callers, c)
			releases = append(releases, c.release)
		}
		releases = append(releases, cli.CloseIdleConnections)
	}
	if t.open {
		p, err := newPacer()
		if err != nil {
			return err
		}
		r.pacer = p
		releases = append(releases, p.close)
	}
	return nil
}

// halt stops every worker: no new request is sent, and requests in
// progress on the raw client are interrupted.
func (r *run) halt() {
	r.haltOnce.Do(func() {
		close(r.stop)
		for _, l := range r.loops {
			l.wakeUp()
		}
		for _, c := range r.callers {
			c.close()
		}
		if r.pacer != nil {
			r.pacer.close()
		}
	})
}

func (r *run) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

func (r *run) all() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// note records one finished request and reports whether the worker goes
// on. Requests intended before the end of the warm-up are only counted.
func (r *run) note(intended, sent, done time.Time, status int, err error) bool {
	if err != nil && r.stopped() {
		return false // interrupted by halt: not the target's failure
	}
	r.mu.Lock()
	r.requests++
	r.mu.Unlock()
	if intended.Before(r.from) {
		return true
	}
	if !r.rec.add(intended, sent, done, status, err) {
		r.halt() // request limit reached
		return false
	}
	return true
}

func (r *run) closedLoop(c caller) {
	for !r.stopped() {
		sent := time.Now()
		if !sent.Before(r.end) {
			return
		}
		status, err := c.do(sent)
		if !r.note(sent, sent, time.Now(), status, err) {
			return
		}
		if err != nil && kindOf(err) == kindConnect {
			select {
			case <-r.stop:
			case <-time.After(connectBackoff):
			}
		}
	}
}

// minPeriod is the shortest pacer period: above 100k arrivals/s a wake
// hands out every arrival due by then, several at a time.
const minPeriod = 10 * time.Microsecond

// pace sends the intended send times start, start+1/Rate, … before end on
// arrivals, each once it is due, then closes arrivals.
func (r *run) pace(arrivals chan<- time.Time) {
	defer close(arrivals)
	interval := float64(time.Second) / r.t.Rate
	span := r.end.Sub(r.start)
	if err := r.pacer.start(max(time.Duration(interval), minPeriod)); err != nil {
		r.halt()
		return
	}
	for k := int64(0); ; {
		now := time.Now()
		for ; ; k++ {
			offset := time.Duration(math.Round(float64(k) * interval))
			if offset >= span {
				return
			}
			next := r.start.Add(offset)
			if next.After(now) {
				break
			}
			select {
			case arrivals <- next:
			case <-r.stop:
				return
			}
		}
		if err := r.pacer.wait(); err != nil {
			r.halt() // closed by halt, or the timer failed: stop rather than send off schedule
			return
		}
	}
}

// openLoop sends one request per arrival it takes. Arrivals it takes after
// the end were never sent in time: they count as unsent.
func (r *run) openLoop(c caller, arrivals <-chan time.Time) {
	for {
		var intended time.Time
		select {
		case <-r.stop:
			return
		case a, ok := <-arrivals:
			if !ok {
				return
			}
			intended = a
		}
		sent := time.Now()
		if !sent.Before(r.end) {
			if !intended.Before(r.from) {
				r.rec.addUnsent(1)
			}
			continue
		}
		status, err := c.do(sent)
		if !r.note(intended, sent, time.Now(), status, err) {
			return
		}
	}
}
