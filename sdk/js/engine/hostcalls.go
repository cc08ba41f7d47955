package engine

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/dop251/goja"

	"github.com/wispfn/wisp/sdk/go/faas/fetch"
	"github.com/wispfn/wisp/sdk/go/faas/http"
	"github.com/wispfn/wisp/sdk/go/faas/kv"
)

// call is a hostcall in flight: the id of its promise in the prelude's table, and wait, which
// blocks until the call has finished and returns the value that fulfils the promise, or the
// error that rejects it.
type call struct {
	id   goja.Value
	wait func() (goja.Value, error)
}

// track adds the call just started under the prelude's id to the calls in flight.
func (e *Engine) track(id goja.Value, wait func() (goja.Value, error)) {
	e.calls = append(e.calls, call{id: id, wait: wait})
}

// complete waits for the oldest call in flight and settles its promise through the prelude's
// settle(id, value, message), message saying why the call failed. Waiting on one call collects
// every completion that is ready (sdk/go/internal/hostcall), so the next calls' waits return at
// once if they have finished too.
func (e *Engine) complete() error {
	c := e.calls[0]
	n := copy(e.calls, e.calls[1:])
	e.calls[n] = call{}
	e.calls = e.calls[:n]
	v, err := c.wait()
	msg := goja.Undefined()
	if err != nil {
		v, msg = goja.Undefined(), e.vm.ToValue(strings.TrimPrefix(err.Error(), "wisp: "))
	}
	_, err = e.settleJS(goja.Undefined(), c.id, v, msg)
	return err
}

// reset forgets the timers and the calls in flight, here and in the prelude: they belong to the
// request that started them. The hostcall package fails the calls themselves once the host
// serves another request (ErrRequestEnded); their promises are dropped, never settled.
func (e *Engine) reset() error {
	clear(e.calls)
	e.calls = e.calls[:0]
	_, err := e.resetJS(goja.Undefined())
	return err
}

// fetch is the native fetch(id, method, url, [name, value, ...], body, offset, length), body
// null, a string or an ArrayBuffer of which [offset, offset+length) is sent: it starts the
// request, and its promise settles with [status, [name, value, ...], ArrayBuffer]. The prelude
// has checked the arguments.
func (e *Engine) fetch(c goja.FunctionCall) goja.Value {
	url := c.Argument(2).String()
	req, err := fetch.NewRequest(c.Argument(1).String(), url, e.payload(c, 4))
	if err != nil {
		panic(e.vm.NewTypeError(fmt.Sprintf("fetch %s: %v", url, err)))
	}
	flat, _ := c.Argument(3).Export().([]any)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		req.Header[k] = append(req.Header[k], v)
	}
	f := fetch.Start(req)
	e.track(c.Argument(0), func() (goja.Value, error) {
		resp, err := f.Wait()
		if err != nil {
			return nil, err
		}
		return e.response(resp)
	})
	return goja.Undefined()
}

// response converts a fetched response to what the prelude makes a Response of. The body is
// the Go SDK's, in memory: the ArrayBuffer shares its bytes.
func (e *Engine) response(resp *http.Response) (goja.Value, error) {
	n := 0
	for _, vs := range resp.Header {
		n += len(vs)
	}
	flat := make([]any, 0, 2*n)
	for k, vs := range resp.Header {
		k = strings.ToLower(k)
		for _, v := range vs {
			flat = append(flat, k, v)
		}
	}
	b, err := bodyBytes(resp.Body)
	if err != nil {
		return nil, err
	}
	return e.vm.NewArray(resp.StatusCode, e.vm.NewArray(flat...), e.vm.NewArrayBuffer(b)), nil
}

// bodyBytes returns what b holds: the bytes of an in-memory body (the Go SDK's, which fetched
// responses have) without copying them, those of another body read to its end.
func bodyBytes(b http.Body) ([]byte, error) {
	switch b := b.(type) {
	case nil:
		return nil, nil
	case interface{ Unread() []byte }:
		return b.Unread(), nil
	default:
		defer b.Close()
		return io.ReadAll(b)
	}
}

// payload returns the bytes of the argument at i, with the offset and length that follow it
// for an ArrayBuffer: nil for null, a string's UTF-8, or the ArrayBuffer's range, not copied
// (the hostcall copies its payload when it is submitted).
func (e *Engine) payload(c goja.FunctionCall, i int) []byte {
	switch v := c.Argument(i).Export().(type) {
	case nil:
		return nil
	case string:
		return []byte(v)
	default:
		return e.bytes(c.Argument(i), c.Argument(i+1), c.Argument(i+2))
	}
}

// kvGet is the native kvGet(id, key): its promise settles with the value, an ArrayBuffer, or
// null if the key does not exist.
func (e *Engine) kvGet(c goja.FunctionCall) goja.Value {
	f := kv.StartGet(c.Argument(1).String())
	e.track(c.Argument(0), func() (goja.Value, error) {
		v, ok, err := f.Wait()
		if err != nil || !ok {
			return goja.Null(), err
		}
		return e.vm.ToValue(e.vm.NewArrayBuffer(v)), nil
	})
	return goja.Undefined()
}

// kvPut is the native kvPut(id, key, value, offset, length, ttl): value a string or an
// ArrayBuffer, ttl in milliseconds (0: none).
func (e *Engine) kvPut(c goja.FunctionCall) goja.Value {
	ttl := time.Duration(min(c.Argument(5).ToInteger(), math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	f := kv.StartPut(c.Argument(1).String(), e.payload(c, 2), ttl)
	e.track(c.Argument(0), func() (goja.Value, error) { return goja.Undefined(), f.Wait() })
	return goja.Undefined()
}

// kvDelete is the native kvDelete(id, key).
func (e *Engine) kvDelete(c goja.FunctionCall) goja.Value {
	f := kv.StartDelete(c.Argument(1).String())
	e.track(c.Argument(0), func() (goja.Value, error) { return goja.Undefined(), f.Wait() })
	return goja.Undefined()
}

// kvList is the native kvList(id, prefix, limit): its promise settles with [[key, ...], more].
func (e *Engine) kvList(c goja.FunctionCall) goja.Value {
	f := kv.StartList(c.Argument(1).String(), int(c.Argument(2).ToInteger()))
	e.track(c.Argument(0), func() (goja.Value, error) {
		keys, more, err := f.Wait()
		if err != nil {
			return nil, err
		}
		names := make([]any, len(keys))
		for i, k := range keys {
			names[i] = k
		}
		return e.vm.NewArray(e.vm.NewArray(names...), more), nil
	})
	return goja.Undefined()
}
