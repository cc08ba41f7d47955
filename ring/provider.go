package ring

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strconv"
	"sync"

	"github.com/wispfn/wisp/ring/internal/wire"
)

// Provider serves one kind of hostcall. The Host drains the provider's submission ring on
// ProviderInfo.Workers goroutines and hands each drained batch to Serve.
//
// A provider may also implement Provisioner, Validator and CleanerUpper; New calls Provision,
// then Validate, and Close calls Cleanup once the provider's dispatchers have stopped.
type Provider interface {
	// Info describes the provider. It is called once, by New.
	Info() ProviderInfo

	// Serve handles calls drained from the submission ring together, oldest first. It must
	// finish every call exactly once, with Complete or Fail, now or later from any goroutine;
	// work that waits on I/O belongs on goroutines the provider owns (and waits for in Cleanup),
	// so that Serve returns quickly. batch is reused after Serve returns: keep the *Calls, not
	// the slice.
	Serve(batch []*Call)
}

// ProviderInfo describes a provider. Zero fields take their defaults.
type ProviderInfo struct {
	// ID is the provider's id in submit and read, 1..MaxProviderID.
	ID uint32
	// Name names the provider in logs and metrics ("kv").
	Name string
	// MaxPayload caps a submission's payload in bytes, under the function's Limits.MaxPayload.
	// Default: the function's limit only.
	MaxPayload int
	// Workers is the number of goroutines that drain the submission ring and call Serve.
	// Default 1: batches are then served in submission order.
	Workers int
	// QueueSize is the capacity of the submission ring, shared by every instance; a submit
	// that finds it full is refused with CodeBusy. Default 4096.
	QueueSize int
	// BatchSize caps the calls handed to one Serve. Default 256.
	BatchSize int
}

func (i ProviderInfo) withDefaults(lim Limits) ProviderInfo {
	if i.Name == "" {
		i.Name = "provider-" + strconv.FormatUint(uint64(i.ID), 10)
	}
	if i.MaxPayload <= 0 {
		i.MaxPayload = 1 << 30
	}
	if i.Workers <= 0 {
		i.Workers = 1
	}
	if i.QueueSize <= 0 {
		i.QueueSize = 4096
	}
	if i.BatchSize <= 0 {
		i.BatchSize = 256
	}
	return i
}

// Env is what a provider gets to provision itself.
type Env struct {
	// Logger is the host's logger, with the provider's name attached.
	Logger *slog.Logger
}

// Provisioner is a Provider that sets its defaults and acquires resources before it serves.
type Provisioner interface {
	Provision(env Env) error
}

// Validator is a Provider that checks its configuration after Provision.
type Validator interface {
	Validate() error
}

// CleanerUpper is a Provider that releases resources and waits for its goroutines when the host
// closes. Every call it still holds must be finished before Cleanup returns.
type CleanerUpper interface {
	Cleanup() error
}

// Call is one submitted event on its way through a provider. A provider owns it from Serve until
// it calls Complete or Fail; after that it must not touch the Call, its Payload, or a buffer
// obtained from Result.
type Call struct {
	in       *Instance
	fn       *Function
	ctx      context.Context
	gen      uint32 // the instance's request generation at submit
	id       uint32 // the guest's event id; 0 for a detached call
	provider uint32
	payload  []byte
	out      []byte // the completion payload: u32 code, then result or error
	popped   bool   // returned by poll or wait; touched only on the guest's goroutine
}

// maxKeptBuffer is the largest buffer a recycled Call keeps.
const maxKeptBuffer = 64 << 10

var callPool = sync.Pool{New: func() any { return new(Call) }}

func recycle(c *Call) {
	payload, out := c.payload, c.out
	if cap(payload) > maxKeptBuffer {
		payload = nil
	}
	if cap(out) > maxKeptBuffer {
		out = nil
	}
	*c = Call{payload: payload[:0], out: out[:0]}
	callPool.Put(c)
}

// Function returns the function that submitted the call.
func (c *Call) Function() *Function { return c.fn }

// Context returns the context of the request that submitted the call: it carries the request's
// deadline and values (rpc depth), and is canceled when the request ends.
func (c *Call) Context() context.Context { return c.ctx }

// Payload returns the guest's submission, copied out of guest memory. It is valid until the call
// is finished.
func (c *Call) Payload() []byte { return c.payload }

// Detached reports whether the guest asked for no completion (event id 0): the result is then
// dropped and only failures are logged.
func (c *Call) Detached() bool { return c.id == 0 }

// Result returns an empty result buffer owned by the call: append the result to it and pass it
// to Complete. It starts with the CodeOK header that every completion carries.
func (c *Call) Result() []byte {
	return wire.AppendU32(c.out[:0], uint32(CodeOK))
}

// Complete finishes the call with result, a buffer from Result with the result appended.
func (c *Call) Complete(result []byte) {
	c.out = result
	c.finish()
}

// Fail finishes the call with code, err's message and a new error id. The same id goes into the
// log line about the failure, so an operator can join what the guest reports with the log.
func (c *Call) Fail(code Code, err error) {
	id := newErrorID()
	msg := err.Error()
	c.fn.host.log.Warn("hostcall failed", "function", c.fn.name, "provider", c.fn.host.providerName(c.provider),
		"code", code.String(), "error_id", id, "error", msg)
	out := wire.AppendU32(c.out[:0], uint32(code))
	out = wire.AppendStr(out, msg)
	c.out = wire.AppendStr(out, id)
	c.finish()
}

func (c *Call) finish() {
	in := c.in
	if c.id == 0 {
		in.detached.Add(-1)
		recycle(c)
		return
	}
	in.complete(c)
}

func (h *Host) providerName(id uint32) string {
	if id <= MaxProviderID && h.providers[id] != nil {
		return h.providers[id].info.Name
	}
	return "provider-" + strconv.FormatUint(uint64(id), 10)
}

// newErrorID returns a short random id for a failure. Only called on failure paths.
func newErrorID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
