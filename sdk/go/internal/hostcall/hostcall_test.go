//go:build !wasip1

package hostcall_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/wispfn/wisp/sdk/go/internal/hostcall"
	"github.com/wispfn/wisp/sdk/go/internal/hostcall/fakehost"
)

const echo = 9

func echoHost(t *testing.T) *fakehost.Host {
	return fakehost.New(t, map[uint32]fakehost.Handler{
		echo: func(p []byte) ([]byte, hostcall.Code, string) {
			if string(p) == "fail" {
				return nil, hostcall.CodeDenied, "not today"
			}
			return p, hostcall.CodeOK, ""
		},
	})
}

func TestFuturesCompleteOutOfOrder(t *testing.T) {
	h := echoHost(t)
	a := hostcall.Start(echo, []byte("a"))
	b := hostcall.Start(echo, []byte("b"))
	c := hostcall.Start(echo, []byte("c"))
	h.Release(true) // c, b, a
	if res, err := a.Wait(); err != nil || string(res) != "a" {
		t.Fatalf("a = %q %v", res, err)
	}
	// Waiting on a collected the whole burst: one wait, then polls.
	if h.Waits != 1 || h.Polls != 2 {
		t.Errorf("waits %d polls %d; want 1 and 2", h.Waits, h.Polls)
	}
	for name, f := range map[string]*hostcall.Call{"b": b, "c": c} {
		if res, err := f.Wait(); err != nil || string(res) != name {
			t.Errorf("%s = %q %v", name, res, err)
		}
	}
	if h.Waits != 1 {
		t.Errorf("waiting on finished calls made %d more waits", h.Waits-1)
	}
}

func TestProviderError(t *testing.T) {
	echoHost(t)
	_, err := hostcall.Start(echo, []byte("fail")).Wait()
	var e *hostcall.Error
	if !errors.As(err, &e) || e.Code != hostcall.CodeDenied || e.Message != "not today" || e.ErrorID != "e1d" {
		t.Fatalf("err = %#v", err)
	}
	if !errors.Is(err, hostcall.ErrDenied) || errors.Is(err, hostcall.ErrInvalid) {
		t.Errorf("errors.Is does not match on the code")
	}
	if want := "wisp: denied: not today (error id e1d)"; err.Error() != want {
		t.Errorf("Error() = %q; want %q", err, want)
	}
}

func TestRefused(t *testing.T) {
	echoHost(t)
	_, err := hostcall.Start(77, nil).Wait()
	if e, ok := err.(*hostcall.Error); !ok || e.Code != hostcall.CodeUnknownProvider {
		t.Fatalf("unknown provider: err = %v", err)
	}
}

// TestBusyWaitsForACall checks that Start, finding the host full, waits for a call in flight and
// submits again instead of failing.
func TestBusyWaitsForACall(t *testing.T) {
	h := echoHost(t)
	h.MaxInFlight = 2
	calls := []*hostcall.Call{}
	for _, p := range []string{"1", "2", "3", "4", "5"} {
		calls = append(calls, hostcall.Start(echo, []byte(p)))
	}
	for i, c := range calls {
		if res, err := c.Wait(); err != nil || string(res) != string(rune('1'+i)) {
			t.Errorf("call %d = %q %v", i, res, err)
		}
	}
}

func TestCallsOfAnEndedRequestFail(t *testing.T) {
	h := echoHost(t)
	old := hostcall.Start(echo, []byte("old"))
	h.NextRequest()
	fresh := hostcall.Start(echo, []byte("new"))
	if _, err := old.Wait(); err != hostcall.ErrRequestEnded {
		t.Errorf("call of the previous request: %v; want ErrRequestEnded", err)
	}
	if res, err := fresh.Wait(); err != nil || string(res) != "new" {
		t.Errorf("call of this request: %q %v", res, err)
	}
	// The host says nothing is pending: calls it no longer knows fail rather than hang.
	lost := hostcall.Start(echo, []byte("lost"))
	h.NextRequest()
	if _, err := lost.Wait(); err != hostcall.ErrRequestEnded {
		t.Errorf("call the host dropped: %v; want ErrRequestEnded", err)
	}
}

func TestDetached(t *testing.T) {
	h := echoHost(t)
	if err := hostcall.Send(echo, []byte("x")); err != nil || h.Detached != 1 {
		t.Fatalf("Send = %v, detached %d", err, h.Detached)
	}
}

func TestNoHost(t *testing.T) {
	hostcall.Host = nil
	_, err := hostcall.Start(echo, nil).Wait()
	if err != hostcall.ErrNoHost || !strings.Contains(err.Error(), "wisp build") {
		t.Fatalf("err = %v; want ErrNoHost", err)
	}
	if err := hostcall.Send(echo, nil); err != hostcall.ErrNoHost {
		t.Fatalf("Send err = %v; want ErrNoHost", err)
	}
}

func TestDecoder(t *testing.T) {
	b := hostcall.AppendU8(nil, 7)
	b = hostcall.AppendU32(b, 2)
	b = hostcall.AppendString(b, "ab")
	b = hostcall.AppendU64(b, 1<<40)
	d := hostcall.NewDecoder(b)
	if d.U8() != 7 || d.Count(1) != 2 || d.Str() != "ab" || d.U32() != 0 || d.U32() != 1<<8 || d.Err() != nil {
		t.Fatal("decoding what was encoded")
	}
	for _, bad := range [][]byte{{1, 0, 0}, {5, 0, 0, 0, 'a'}, {0, 0, 0, 0, 9}} {
		d := hostcall.NewDecoder(bad)
		d.Bytes()
		if d.Err() == nil {
			t.Errorf("%v decoded without error", bad)
		}
	}
	d = hostcall.NewDecoder([]byte{0xff, 0xff, 0xff, 0xff})
	if d.Count(8) != 0 || d.Err() == nil {
		t.Error("a count past the end was accepted")
	}
}

// TestDoAmongFutures runs a blocking call while futures are in flight: completions of the
// futures that arrive first are kept for them, and Do returns its own result.
func TestDoAmongFutures(t *testing.T) {
	h := echoHost(t)
	a := hostcall.Start(echo, []byte("a"))
	b := hostcall.Start(echo, []byte("b"))
	h.Release(true) // b, a become ready before Do's own completion
	res, err := hostcall.Do(echo, []byte("do"))
	if err != nil || string(res) != "do" {
		t.Fatalf("Do = %q %v", res, err)
	}
	for name, f := range map[string]*hostcall.Call{"a": a, "b": b} {
		if res, err := f.Wait(); err != nil || string(res) != name {
			t.Errorf("%s = %q %v", name, res, err)
		}
	}
	if _, err := hostcall.Do(echo, []byte("fail")); !errors.Is(err, hostcall.ErrDenied) {
		t.Errorf("failing Do: %v", err)
	}
	if _, err := hostcall.Do(77, nil); err == nil {
		t.Error("Do to an unknown provider succeeded")
	}
}

func TestDoAllocations(t *testing.T) {
	h := echoHost(t)
	h.Auto = true
	payload := []byte("x")
	hostcall.Do(echo, payload)
	// The fake host allocates for its own bookkeeping; compare with the future form.
	do := testing.AllocsPerRun(100, func() { hostcall.Do(echo, payload) })
	future := testing.AllocsPerRun(100, func() { hostcall.Start(echo, payload).Wait() })
	if do >= future {
		t.Errorf("Do made %v allocations, Start and Wait %v; want Do to make fewer", do, future)
	}
}
