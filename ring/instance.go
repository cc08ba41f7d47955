package ring

import (
	"context"
	"sync/atomic"

	"github.com/wispfn/wisp/ring/internal/queue"
)

// Instance is the ring state of one wasm instance: its completion ring and the events of the
// request it is serving. The pool creates one per wasm instance and brackets every request with
// Begin and End. Begin, End, Close and the guest-side methods (Submit, Poll, Wait, Read) must be
// called from one goroutine at a time (the one running the guest); providers finish calls from
// any goroutine.
//
// Ownership of an event: the guest's Submit copies the payload into a Call owned by the provider;
// the provider's Complete pushes it onto the instance's completion ring; Poll or Wait pops it
// (the guest learns its id and size); Read copies the result into guest memory and frees it.
// End frees every completion the guest did not read; a call still at a provider when its request
// ends is freed when it completes.
type Instance struct {
	fn  *Function
	lim Limits

	// Shared with provider goroutines.
	cq          *queue.Queue[*Call] // completions, pushed by providers, popped by the guest
	parked      atomic.Bool         // the guest is parked in Wait, or about to be
	bell        chan struct{}       // a token wakes the parked guest
	outstanding atomic.Int32        // submitted with an id and not yet popped, any request
	detached    atomic.Int32        // detached calls not finished by their provider

	// Guest goroutine only.
	ctx       context.Context // the request's, from Begin to End; handed to every Call
	active    bool
	closed    bool
	gen       uint32           // request generation; Calls of older generations are stale
	hostcalls int              // submissions in this request
	pending   int              // this request's calls submitted with an id and not yet popped
	events    map[uint32]*Call // this request's calls with an id, until read
	sinceWake int              // completions popped since the last wake-up
	woke      bool             // the guest has been woken at least once this request
}

// NewInstance returns the ring state of a new wasm instance of f.
func (f *Function) NewInstance() *Instance {
	return &Instance{fn: f, lim: f.limits}
}

// Begin starts a request on the instance and returns the context to pass to the guest calls of
// the request (wazero hands it to the host functions, which find the instance in it): ctx with
// the instance attached, one small allocation. The calls the guest submits carry ctx itself: they
// end with it.
func (in *Instance) Begin(ctx context.Context) context.Context {
	if in.active {
		in.End()
	}
	in.active = !in.closed
	in.ctx = ctx
	// A new context per request, never a reused one: wazero reads the context of a call from a
	// goroutine of its own that may run after the call has returned.
	return &requestContext{Context: ctx, in: in, gen: in.gen}
}

// End finishes the request: completions the guest did not read are freed, calls still at their
// providers will be freed when they complete, and the next request starts with a fresh quota.
func (in *Instance) End() {
	if !in.active {
		return
	}
	in.active = false
	in.ctx = nil
	in.gen++
	if in.woke && in.sinceWake > 0 {
		completionsPerWakeup.Update(float64(in.sinceWake))
	}
	in.woke, in.sinceWake = false, 0
	in.hostcalls, in.pending = 0, 0
	if in.events == nil {
		return
	}
	for _, c := range in.events {
		if c.popped {
			recycle(c)
		}
		// Not popped: the provider still owns it, or it sits in cq and is freed just below
		// or later, as stale, by the next pop.
	}
	clear(in.events)
	for {
		c, ok := in.cq.Pop()
		if !ok {
			break
		}
		in.outstanding.Add(-1)
		recycle(c)
	}
}

// Close ends the request in progress, if any, and refuses hostcalls from then on. Calls still at
// providers are freed when they complete. Call it when the wasm instance is discarded.
func (in *Instance) Close() {
	in.End()
	in.closed = true
}

// init allocates what an instance needs only once its guest makes a hostcall.
func (in *Instance) init() {
	in.cq = queue.New[*Call](in.lim.MaxInFlight)
	in.bell = make(chan struct{}, 1)
	in.events = make(map[uint32]*Call, min(in.lim.MaxInFlight, 64))
}

// Submit is the Go form of the submit import: it queues payload (copied) for provider under
// eventID, or as a detached call if eventID is 0. It returns the request's sequence number
// (0..2^31-1; it changes from one request of the instance to the next) or a negated Code.
func (in *Instance) Submit(eventID, provider uint32, payload []byte) int32 {
	if !in.active {
		return CodeNoRequest.ret()
	}
	h := in.fn.host
	if h.closing.Load() {
		return refuse(CodeClosed)
	}
	if in.hostcalls >= in.lim.MaxHostcalls {
		return refuse(CodeLimit)
	}
	in.hostcalls++
	var d *dispatcher
	if provider <= MaxProviderID {
		d = h.providers[provider]
	}
	if d == nil {
		return refuse(CodeUnknownProvider)
	}
	if len(payload) > in.lim.MaxPayload || len(payload) > d.info.MaxPayload {
		return refuse(CodeTooLarge)
	}
	if in.cq == nil {
		in.init()
	}
	if eventID == 0 {
		if in.detached.Add(1) > int32(in.lim.MaxDetached) {
			in.detached.Add(-1)
			return refuse(CodeBusy)
		}
	} else {
		if _, dup := in.events[eventID]; dup {
			return refuse(CodeDuplicateEvent)
		}
		if in.outstanding.Add(1) > int32(in.lim.MaxInFlight) || len(in.events) >= in.lim.MaxInFlight {
			in.outstanding.Add(-1)
			return refuse(CodeBusy)
		}
	}
	c := callPool.Get().(*Call)
	c.in, c.fn, c.ctx = in, in.fn, in.ctx
	c.gen, c.id, c.provider = in.gen, eventID, provider
	c.payload = append(c.payload[:0], payload...)
	if eventID != 0 {
		in.events[eventID] = c
		in.pending++
	}
	if !d.push(c) {
		if eventID == 0 {
			in.detached.Add(-1)
		} else {
			delete(in.events, eventID)
			in.pending--
			in.outstanding.Add(-1)
		}
		recycle(c)
		return refuse(CodeBusy)
	}
	return int32(in.gen & 0x7fffffff)
}

// complete is Complete's and Fail's end for a call with an id: it pushes c onto the completion
// ring and wakes the guest if it is parked. The ring never overflows: it holds MaxInFlight calls
// and at most that many are outstanding.
func (in *Instance) complete(c *Call) {
	if !in.cq.Push(c) {
		panic("ring: completion ring overflow: more calls outstanding than MaxInFlight")
	}
	if in.parked.Load() {
		select {
		case in.bell <- struct{}{}:
		default:
		}
	}
}

// pop returns this request's next completion, freeing stale ones, or nil.
func (in *Instance) pop() *Call {
	for {
		c, ok := in.cq.Pop()
		if !ok {
			return nil
		}
		in.outstanding.Add(-1)
		if c.gen != in.gen {
			recycle(c) // from an earlier request of this instance
			continue
		}
		c.popped = true
		in.pending--
		in.sinceWake++
		completionsTotal.Inc()
		return c
	}
}

// Poll is the Go form of the poll import: it returns a ready completion's event id and result
// size, and the number of further completions ready at that moment (a hint), or CodeNotReady.
func (in *Instance) Poll() (eventID, size uint32, ret int32) {
	if !in.active {
		return 0, 0, CodeNoRequest.ret()
	}
	if in.cq == nil {
		return 0, 0, CodeNotReady.ret()
	}
	c := in.pop()
	if c == nil {
		return 0, 0, CodeNotReady.ret()
	}
	return c.id, uint32(len(c.out)), int32(in.cq.Len())
}

// Wait is the Go form of the wait import: Poll, but if nothing is ready it parks the guest until
// a completion arrives or the request's context ends (CodeCanceled). With nothing in flight it
// returns CodeNothingPending at once.
func (in *Instance) Wait() (eventID, size uint32, ret int32) {
	if !in.active {
		return 0, 0, CodeNoRequest.ret()
	}
	for {
		if in.pending == 0 {
			return 0, 0, refuse(CodeNothingPending)
		}
		if c := in.pop(); c != nil {
			return c.id, uint32(len(c.out)), int32(in.cq.Len())
		}
		// Drop a token left by a ring that raced with an earlier look, then announce the park
		// before the last look: a provider that pushes after that look sees parked and rings;
		// one that pushed before it is seen by the look.
		select {
		case <-in.bell:
		default:
		}
		in.parked.Store(true)
		if c := in.pop(); c != nil {
			in.parked.Store(false)
			return c.id, uint32(len(c.out)), int32(in.cq.Len())
		}
		select {
		case <-in.bell:
		case <-in.ctx.Done():
			in.parked.Store(false)
			return 0, 0, refuse(CodeCanceled)
		}
		in.parked.Store(false)
		if in.woke && in.sinceWake > 0 {
			completionsPerWakeup.Update(float64(in.sinceWake))
		}
		in.woke, in.sinceWake = true, 0
		wakeupsTotal.Inc()
	}
}

// take finds the popped, unread call eventID of provider for Read.
func (in *Instance) take(eventID, provider uint32) (*Call, Code) {
	if !in.active {
		return nil, CodeNoRequest
	}
	c := in.events[eventID]
	switch {
	case c == nil:
		return nil, CodeUnknownEvent
	case !c.popped:
		return nil, CodeNotReady
	case c.provider != provider:
		return nil, CodeInvalid
	}
	return c, CodeOK
}

// release frees a call the guest has read.
func (in *Instance) release(c *Call) {
	delete(in.events, c.id)
	recycle(c)
}

// Read is the Go form of the read import: it copies the result of eventID, which Poll or Wait
// returned and which provider served, into dst (at least the size they reported) and frees the
// event. It returns 0 or a negated Code; on failure the event stays readable.
func (in *Instance) Read(eventID, provider uint32, dst []byte) int32 {
	c, code := in.take(eventID, provider)
	if code != CodeOK {
		return refuse(code)
	}
	if len(dst) < len(c.out) {
		return refuse(CodeBadAddress)
	}
	copy(dst, c.out)
	in.release(c)
	return 0
}
