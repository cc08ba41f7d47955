//go:build !wasip1

// Package fakehost plays the Wisp host's four hostcall imports in Go, for unit tests of the SDK,
// which is a zero-dependency module and cannot link the real host. The real host (package ring
// of the wisp module) runs the SDK inside wasm in its own end-to-end tests.
package fakehost

import (
	"encoding/binary"

	"github.com/wispfn/wisp/sdk/go/internal/hostcall"
)

// Handler answers a submission with a result (its payload after the u32 code 0), or fails it
// with an error code and message.
type Handler func(payload []byte) (result []byte, code hostcall.Code, msg string)

// Host is a fake host. Completions become ready when Release is called, or at once if Auto is
// set; they are delivered in the order they became ready.
type Host struct {
	Handlers    map[uint32]Handler
	Auto        bool
	MaxInFlight int // 0: no limit
	Seq         int32

	Submitted [][]byte // every payload submitted, with its provider prepended as one byte
	Waits     int      // calls to Wait
	Polls     int
	Detached  int

	held   []*event // submitted, not ready
	ready  []*event // ready, not yet returned by Poll or Wait
	popped map[uint32]*event
	ids    map[uint32]bool // in flight or unread
}

type event struct {
	id, provider uint32
	out          []byte
}

// New returns a fake host with the given handlers, installed as hostcall.Host until the test's
// cleanup runs.
func New(t interface{ Cleanup(func()) }, handlers map[uint32]Handler) *Host {
	h := &Host{Handlers: handlers, popped: map[uint32]*event{}, ids: map[uint32]bool{}}
	hostcall.Reset()
	hostcall.Host = h
	t.Cleanup(func() {
		hostcall.Host = nil
		hostcall.Reset()
	})
	return h
}

// NextRequest starts a new request: everything in flight is dropped, as the real host does.
func (h *Host) NextRequest() {
	h.Seq++
	h.held, h.ready = nil, nil
	clear(h.popped)
	clear(h.ids)
}

// Release makes every held completion ready, in submission order or reversed.
func (h *Host) Release(reverse bool) {
	if reverse {
		for i := len(h.held) - 1; i >= 0; i-- {
			h.ready = append(h.ready, h.held[i])
		}
	} else {
		h.ready = append(h.ready, h.held...)
	}
	h.held = nil
}

func (h *Host) Submit(id, provider uint32, payload []byte) int32 {
	handler := h.Handlers[provider]
	if handler == nil {
		return -int32(hostcall.CodeUnknownProvider)
	}
	if id != 0 {
		if h.ids[id] {
			return -int32(hostcall.CodeDuplicateEvent)
		}
		if h.MaxInFlight > 0 && len(h.ids) >= h.MaxInFlight {
			return -int32(hostcall.CodeBusy)
		}
	}
	h.Submitted = append(h.Submitted, append([]byte{byte(provider)}, payload...))
	res, code, msg := handler(append([]byte(nil), payload...))
	if id == 0 {
		h.Detached++
		return h.Seq
	}
	out := binary.LittleEndian.AppendUint32(nil, uint32(code))
	if code == hostcall.CodeOK {
		out = append(out, res...)
	} else {
		out = hostcall.AppendString(out, msg)
		out = hostcall.AppendString(out, "e1d")
	}
	h.ids[id] = true
	e := &event{id: id, provider: provider, out: out}
	if h.Auto {
		h.ready = append(h.ready, e)
	} else {
		h.held = append(h.held, e)
	}
	return h.Seq
}

func (h *Host) Poll() (uint32, uint32, int32) {
	h.Polls++
	if len(h.ready) == 0 {
		return 0, 0, -int32(hostcall.CodeNotReady)
	}
	return h.pop()
}

func (h *Host) Wait() (uint32, uint32, int32) {
	h.Waits++
	if len(h.ready) == 0 && len(h.held) > 0 {
		h.Release(false) // the fake's "time passes"
	}
	if len(h.ready) == 0 {
		return 0, 0, -int32(hostcall.CodeNothingPending)
	}
	return h.pop()
}

func (h *Host) pop() (uint32, uint32, int32) {
	e := h.ready[0]
	h.ready = h.ready[1:]
	h.popped[e.id] = e
	return e.id, uint32(len(e.out)), int32(len(h.ready))
}

func (h *Host) Read(id, provider uint32, buf []byte) int32 {
	e := h.popped[id]
	switch {
	case e == nil:
		return -int32(hostcall.CodeUnknownEvent)
	case e.provider != provider:
		return -int32(hostcall.CodeInvalid)
	case len(buf) < len(e.out):
		return -int32(hostcall.CodeBadAddress)
	}
	copy(buf, e.out)
	delete(h.popped, id)
	delete(h.ids, id)
	return 0
}
