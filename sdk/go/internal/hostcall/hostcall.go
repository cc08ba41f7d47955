// Package hostcall is the guest side of the Wisp hostcall ring (docs/hostcalls.md): it submits
// calls to the host's providers, and collects their completions for the futures waiting on them.
//
// A Call is a future: Start submits it and returns at once; Wait blocks until it has finished.
// Waiting on one call collects every completion that is ready, whichever call it belongs to, so
// waiting on several calls in turn costs about one wake-up for a burst of completions. A Go guest
// runs on one thread and a hostcall blocks it, so nothing here needs a lock; calls from several
// goroutines interleave only between hostcalls.
//
// Calls belong to the request that started them: once the host serves another request, Wait on
// an older call fails with ErrRequestEnded.
package hostcall

import (
	"errors"
	"strconv"
)

// Provider ids (docs/hostcalls.md).
const (
	ProviderLog   uint32 = 1
	ProviderKV    uint32 = 2
	ProviderFetch uint32 = 3
	ProviderRPC   uint32 = 4
)

// Code is a hostcall result code (docs/hostcalls.md).
type Code uint32

// Codes the host returns, and codeNoHost, the guest's own for "not running inside Wisp".
const (
	CodeOK              Code = 0
	CodeBadAddress      Code = 1
	CodeUnknownProvider Code = 2
	CodeUnknownEvent    Code = 3
	CodeDuplicateEvent  Code = 4
	CodeTooLarge        Code = 5
	CodeBusy            Code = 6
	CodeLimit           Code = 7
	CodeNotReady        Code = 8
	CodeNoRequest       Code = 9
	CodeNothingPending  Code = 10
	CodeCanceled        Code = 11
	CodeInvalid         Code = 12
	CodeDenied          Code = 13
	CodeNotFound        Code = 14
	CodeUnavailable     Code = 15
	CodeTimeout         Code = 16
	CodeDepth           Code = 17
	CodeClosed          Code = 18

	codeNoHost Code = 0xffff
)

var codeNames = [...]string{
	"ok", "bad address", "unknown provider", "unknown event", "duplicate event", "too large",
	"busy", "hostcall limit reached", "not ready", "no request", "nothing pending", "canceled",
	"invalid", "denied", "not found", "unavailable", "timeout", "call depth limit reached",
	"host closing",
}

// String returns a short description of c.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	if c == codeNoHost {
		return "not running inside Wisp"
	}
	return "code " + strconv.FormatUint(uint64(c), 10)
}

// Error is a failed hostcall: refused by the host (Message empty) or failed by its provider
// (Message says why, ErrorID names the host's log line about it).
type Error struct {
	Code    Code
	Message string
	ErrorID string
}

func (e *Error) Error() string {
	s := "wisp: " + e.Code.String()
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.ErrorID != "" {
		s += " (error id " + e.ErrorID + ")"
	}
	return s
}

// Is reports whether target is the sentinel of e's code (an *Error with only Code set), so that
// errors.Is(err, fetch.ErrDenied) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.ErrorID == "" && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrTooLarge    = &Error{Code: CodeTooLarge}
	ErrBusy        = &Error{Code: CodeBusy}
	ErrLimit       = &Error{Code: CodeLimit}
	ErrCanceled    = &Error{Code: CodeCanceled}
	ErrInvalid     = &Error{Code: CodeInvalid}
	ErrDenied      = &Error{Code: CodeDenied}
	ErrNotFound    = &Error{Code: CodeNotFound}
	ErrUnavailable = &Error{Code: CodeUnavailable}
	ErrTimeout     = &Error{Code: CodeTimeout}
	ErrDepth       = &Error{Code: CodeDepth}
	// ErrNoHost: the program is not running inside Wisp (it was not built with `wisp build`,
	// or runs outside GOOS=wasip1).
	ErrNoHost = &Error{Code: codeNoHost, Message: "hostcalls work only inside Wisp: build the function with `wisp build`"}
)

// ErrRequestEnded is returned by Wait on a call started by an earlier request of the instance.
var ErrRequestEnded = errors.New("wisp: the call belongs to a request that has ended")

func codeError(c Code) error {
	if c == codeNoHost {
		return ErrNoHost
	}
	return &Error{Code: c}
}

// Call is one hostcall: in flight until Wait returns.
type Call struct {
	id       uint32
	provider uint32
	done     bool
	result   []byte
	err      error
}

// Per-instance state; see the package comment for why there is no lock.
var (
	pending = map[uint32]*Call{} // futures in flight, by event id
	nextID  uint32
	seq     int32 = -1 // the host's sequence number of the request being served

	// blocking is the call of Do, reused: a Do ends before anything else can start, since the
	// guest has one thread and does not yield inside Do. Its result is read into scratch.
	blocking   Call
	inBlocking bool
	scratch    []byte
)

// Do submits payload to provider and waits for the result. The result is valid only until the
// next hostcall: copy what you keep. Do allocates nothing once scratch has grown.
func Do(provider uint32, payload []byte) ([]byte, error) {
	c := &blocking
	*c = Call{provider: provider, id: newID()}
	if !c.submit(payload) {
		return nil, c.err
	}
	inBlocking = true
	for !c.done {
		waitOne()
	}
	inBlocking = false
	return c.result, c.err
}

// Start submits payload to provider and returns the call in flight. payload is copied by the
// host before Start returns. If too many calls are in flight, Start first waits for one of them.
// A refused call is returned finished, with its error.
func Start(provider uint32, payload []byte) *Call {
	c := &Call{provider: provider, id: newID()}
	if c.submit(payload) {
		pending[c.id] = c
	}
	return c
}

// submit submits c, waiting for futures while the host is full, and reports whether c is in
// flight; if not, c is finished with the host's refusal.
func (c *Call) submit(payload []byte) bool {
	for {
		r := submit(c.id, c.provider, payload)
		if r >= 0 {
			observe(r)
			return true
		}
		if Code(-r) == CodeBusy && len(pending) > 0 {
			waitOne()
			continue
		}
		c.finish(nil, codeError(Code(-r)))
		return false
	}
}

// Send submits payload to provider as a detached call: the host serves it but sends no
// completion, so there is nothing to wait for. An error says the host refused it (ErrBusy when
// too many detached calls are queued).
func Send(provider uint32, payload []byte) error {
	r := submit(0, provider, payload)
	if r < 0 {
		return codeError(Code(-r))
	}
	observe(r)
	return nil
}

// Wait blocks until c has finished and returns its result (which the caller owns) or its error.
func (c *Call) Wait() ([]byte, error) {
	for !c.done {
		waitOne()
	}
	return c.result, c.err
}

// observe notes the host's request sequence number: a new one means every call still pending
// belongs to an earlier request and will never complete.
func observe(r int32) {
	if r != seq {
		failAll(ErrRequestEnded)
		seq = r
	}
}

// waitOne waits for one completion, then collects those the host says are ready as well.
func waitOne() {
	id, size, r := wait()
	if r < 0 {
		// Nothing the host holds will complete for us in this request (the deadline passed,
		// or the pending calls belong to an earlier request).
		err := codeError(Code(-r))
		if Code(-r) == CodeNothingPending {
			err = ErrRequestEnded
		}
		failAll(err)
		return
	}
	deliver(id, size)
	for more := r; more > 0; {
		if id, size, more = poll(); more < 0 {
			return
		}
		deliver(id, size)
	}
}

func deliver(id, size uint32) {
	var buf []byte
	c := &blocking
	if inBlocking && id == c.id {
		if cap(scratch) < int(size) {
			scratch = make([]byte, size)
		}
		buf = scratch[:size]
	} else {
		if c = pending[id]; c == nil {
			return // not ours to read; the host frees it when the request ends
		}
		delete(pending, id)
		buf = make([]byte, size)
	}
	if r := read(id, c.provider, buf); r < 0 {
		c.finish(nil, codeError(Code(-r)))
		return
	}
	d := NewDecoder(buf)
	code := Code(d.U32())
	if code == CodeOK {
		c.finish(buf[4:], nil)
		return
	}
	e := &Error{Code: code, Message: d.Str(), ErrorID: d.Str()}
	c.finish(nil, e)
}

func (c *Call) finish(result []byte, err error) {
	c.done, c.result, c.err = true, result, err
}

func failAll(err error) {
	for id, c := range pending {
		c.finish(nil, err)
		delete(pending, id)
	}
	if inBlocking && !blocking.done {
		blocking.finish(nil, err)
	}
}

func newID() uint32 {
	for {
		nextID++
		if nextID == 0 {
			continue
		}
		if _, taken := pending[nextID]; !taken && (!inBlocking || nextID != blocking.id) {
			return nextID
		}
	}
}
