// Package kv reads and writes the function's keys in the Wisp KV store: the node's Local Cache in
// front of the Global KV. Every function has its own namespace (functions of a tenant may be
// configured to share one): keys name keys in it, never in another.
//
// Keys are 1 to 512 bytes of letters, digits and "-/_=.", with '.' only between other
// characters ("user.42.visits"). Values are up to 1 MiB by default. Writes are eventually
// consistent across regions.
//
// Each operation has a blocking form (Get) and a future form (StartGet) for running several at
// once: gets started together reach the store as one multi-get. Calls a function has not waited
// for may be served in any order: wait for a Put before relying on it.
package kv

import (
	"time"

	"github.com/wispfn/wisp/sdk/go/internal/hostcall"
)

// Error is the error type of failed calls; errors.Is matches it against the sentinels below.
type Error = hostcall.Error

// Errors to test for with errors.Is.
var (
	// ErrInvalid: a malformed key, a value over the size limit, or a ttl under a second.
	ErrInvalid = hostcall.ErrInvalid
	// ErrUnavailable: the store did not answer; retrying later may succeed.
	ErrUnavailable = hostcall.ErrUnavailable
	// ErrNoHost: the program is not running inside Wisp.
	ErrNoHost = hostcall.ErrNoHost
)

// Operations on the wire (docs/hostcalls.md).
const (
	opGet    = 1
	opPut    = 2
	opDelete = 3
	opList   = 4
)

// buf is reused for every submission: the host copies it before Start returns.
var buf []byte

func start(b []byte) *hostcall.Call {
	buf = b
	return hostcall.Start(hostcall.ProviderKV, b)
}

// do is start, waiting for the result, which is valid until the next hostcall.
func do(b []byte) ([]byte, error) {
	buf = b
	return hostcall.Do(hostcall.ProviderKV, b)
}

// Get returns key's value and true, or false if the key does not exist. The caller owns value.
func Get(key string) (value []byte, ok bool, err error) {
	b := hostcall.AppendU8(buf[:0], opGet)
	res, err := do(hostcall.AppendString(b, key))
	if err != nil {
		return nil, false, err
	}
	v, ok, err := decodeGet(res)
	if !ok {
		return nil, ok, err
	}
	return append([]byte(nil), v...), true, nil
}

// GetFuture is a get in flight.
type GetFuture struct{ c *hostcall.Call }

// StartGet starts a get.
func StartGet(key string) *GetFuture {
	b := hostcall.AppendU8(buf[:0], opGet)
	return &GetFuture{c: start(hostcall.AppendString(b, key))}
}

// Wait returns the value and true, or false if the key does not exist. The caller owns value.
func (f *GetFuture) Wait() (value []byte, ok bool, err error) {
	res, err := f.c.Wait()
	if err != nil {
		return nil, false, err
	}
	return decodeGet(res)
}

// decodeGet decodes a get's result: u8 found, str value. value aliases res.
func decodeGet(res []byte) (value []byte, ok bool, err error) {
	d := hostcall.NewDecoder(res)
	found := d.U8() == 1
	v := d.Bytes()
	if err := d.Err(); err != nil {
		return nil, false, err
	}
	if !found {
		return nil, false, nil
	}
	return v, true, nil
}

// Put writes key. A ttl of at least a second deletes the key that long after this write (the
// store counts whole seconds); zero keeps it until deleted.
func Put(key string, value []byte, ttl time.Duration) error {
	_, err := do(encodePut(key, value, ttl))
	return err
}

// StartPut starts a put.
func StartPut(key string, value []byte, ttl time.Duration) *Future {
	return &Future{c: start(encodePut(key, value, ttl))}
}

func encodePut(key string, value []byte, ttl time.Duration) []byte {
	b := hostcall.AppendU8(buf[:0], opPut)
	b = hostcall.AppendString(b, key)
	b = hostcall.AppendBytes(b, value)
	return hostcall.AppendU64(b, uint64(max(ttl, 0)/time.Millisecond))
}

// Delete deletes key; deleting a key that does not exist succeeds.
func Delete(key string) error {
	b := hostcall.AppendU8(buf[:0], opDelete)
	_, err := do(hostcall.AppendString(b, key))
	return err
}

// StartDelete starts a delete.
func StartDelete(key string) *Future {
	b := hostcall.AppendU8(buf[:0], opDelete)
	return &Future{c: start(hostcall.AppendString(b, key))}
}

// Future is a put or delete in flight.
type Future struct{ c *hostcall.Call }

// Wait returns the operation's error, if any.
func (f *Future) Wait() error {
	_, err := f.c.Wait()
	return err
}

// List returns the keys that start with prefix ("" for all), sorted, at most limit of them
// (0: the host's cap, 1000 by default), and whether there were more.
func List(prefix string, limit int) (keys []string, more bool, err error) {
	return StartList(prefix, limit).Wait()
}

// ListFuture is a list in flight.
type ListFuture struct{ c *hostcall.Call }

// StartList starts a list.
func StartList(prefix string, limit int) *ListFuture {
	b := hostcall.AppendU8(buf[:0], opList)
	b = hostcall.AppendString(b, prefix)
	return &ListFuture{c: start(hostcall.AppendU32(b, uint32(max(min(limit, 1<<31), 0))))}
}

// Wait returns the keys and whether there were more than the limit.
func (f *ListFuture) Wait() (keys []string, more bool, err error) {
	res, err := f.c.Wait()
	if err != nil {
		return nil, false, err
	}
	d := hostcall.NewDecoder(res)
	keys = make([]string, d.Count(4))
	for i := range keys {
		keys[i] = d.Str()
	}
	more = d.U8() == 1
	if err := d.Err(); err != nil {
		return nil, false, err
	}
	return keys, more, nil
}
