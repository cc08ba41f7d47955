package ring

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/ring/internal/wire"
)

// echoProvider completes every call in Serve with its payload.
type echoProvider struct {
	id      uint32
	mu      sync.Mutex
	batches []int
}

func (p *echoProvider) Info() ProviderInfo {
	return ProviderInfo{ID: p.id, Name: "echo", MaxPayload: 1 << 10}
}

func (p *echoProvider) Serve(batch []*Call) {
	p.mu.Lock()
	p.batches = append(p.batches, len(batch))
	p.mu.Unlock()
	for _, c := range batch {
		c.Complete(append(c.Result(), c.Payload()...))
	}
}

// asyncProvider completes each call from its own goroutine after the delay the payload names
// (a u32 of milliseconds), with the payload as result; a payload "fail" fails the call.
type asyncProvider struct {
	id uint32
	wg sync.WaitGroup
}

func (p *asyncProvider) Info() ProviderInfo {
	return ProviderInfo{ID: p.id, Name: "async", Workers: 2}
}

func (p *asyncProvider) Serve(batch []*Call) {
	for _, c := range batch {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			in := c.Payload()
			if string(in) == "fail" {
				c.Fail(CodeUnavailable, errors.New("asked to fail"))
				return
			}
			if len(in) >= 4 {
				select {
				case <-time.After(time.Duration(binary.LittleEndian.Uint32(in)) * time.Millisecond):
				case <-c.Context().Done():
				}
			}
			c.Complete(append(c.Result(), in...))
		}()
	}
}

func (p *asyncProvider) Cleanup() error {
	p.wg.Wait()
	return nil
}

const (
	idEcho  = 10
	idAsync = 11
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newHost(t testing.TB, lim Limits) (*Host, *echoProvider) {
	t.Helper()
	echo := &echoProvider{id: idEcho}
	h, err := New(Config{Providers: []Provider{echo, &asyncProvider{id: idAsync}}, Logger: quiet, Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	return h, echo
}

func newInstance(t testing.TB, h *Host, cfg FunctionConfig) *Instance {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "fn"
	}
	f, err := h.NewFunction(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f.NewInstance()
}

func ms(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }

// result reads the completion of id and returns its code and the rest.
func result(t testing.TB, in *Instance, id, provider, size uint32) (Code, []byte) {
	t.Helper()
	buf := make([]byte, size)
	if r := in.Read(id, provider, buf); r != 0 {
		t.Fatalf("Read(%d) = %v", id, Code(-r))
	}
	return Code(binary.LittleEndian.Uint32(buf)), buf[4:]
}

func TestRoundTrip(t *testing.T) {
	h, _ := newHost(t, Limits{})
	in := newInstance(t, h, FunctionConfig{})
	in.Begin(context.Background())
	defer in.End()
	if r := in.Submit(7, idEcho, []byte("hello")); r < 0 {
		t.Fatalf("Submit = %v", Code(-r))
	}
	id, size, more := in.Wait()
	if more < 0 || id != 7 || size != 4+5 {
		t.Fatalf("Wait = %d %d %d; want 7 9 and no error", id, size, more)
	}
	code, out := result(t, in, id, idEcho, size)
	if code != CodeOK || string(out) != "hello" {
		t.Fatalf("result %v %q; want ok hello", code, out)
	}
	if _, _, r := in.Poll(); r != CodeNotReady.ret() {
		t.Fatalf("Poll after reading everything = %d; want not-ready", r)
	}
	if _, _, r := in.Wait(); r != CodeNothingPending.ret() {
		t.Fatalf("Wait with nothing in flight = %d; want nothing-pending", r)
	}
}

func TestFailCarriesErrorID(t *testing.T) {
	h, _ := newHost(t, Limits{})
	in := newInstance(t, h, FunctionConfig{})
	in.Begin(context.Background())
	defer in.End()
	in.Submit(1, idAsync, []byte("fail"))
	id, size, _ := in.Wait()
	code, out := result(t, in, id, idAsync, size)
	d := wire.NewDecoder(out)
	msg, errID := d.Str("message"), d.Str("error id")
	if err := d.End(); err != nil || code != CodeUnavailable || msg != "asked to fail" || len(errID) != 16 {
		t.Fatalf("failure = %v %q %q (%v); want unavailable, the message and a 16-digit error id", code, msg, errID, err)
	}
}

func TestRefusals(t *testing.T) {
	h, _ := newHost(t, Limits{MaxHostcalls: 8, MaxInFlight: 2, MaxPayload: 8})
	in := newInstance(t, h, FunctionConfig{})
	if r := in.Submit(1, idEcho, nil); r != CodeNoRequest.ret() {
		t.Fatalf("Submit outside a request = %d; want no-request", r)
	}
	in.Begin(context.Background())
	defer in.End()
	// Refused submissions count against the quota too: a guest cannot spin on them for free.
	for i, tc := range []struct {
		name     string
		id, prov uint32
		payload  []byte
		want     Code
	}{
		{"unknown provider", 1, 99, nil, CodeUnknownProvider},
		{"provider 0", 1, 0, nil, CodeUnknownProvider},
		{"too large for the function", 1, idAsync, []byte("123456789"), CodeTooLarge},
		{"first", 1, idAsync, ms(1000), CodeOK},
		{"duplicate", 1, idAsync, nil, CodeDuplicateEvent},
		{"second", 2, idAsync, ms(1000), CodeOK},
		{"in-flight limit", 3, idAsync, nil, CodeBusy},
		{"last of the quota", 0, idEcho, nil, CodeOK},
		{"quota used up", 0, idEcho, nil, CodeLimit},
	} {
		r := in.Submit(tc.id, tc.prov, tc.payload)
		if tc.want == CodeOK && r < 0 || tc.want != CodeOK && r != tc.want.ret() {
			t.Errorf("%d %s: Submit = %d; want %v", i, tc.name, r, tc.want)
		}
	}
	if r := in.Read(1, idAsync, make([]byte, 64)); r != CodeNotReady.ret() {
		t.Errorf("Read before completion = %d; want not-ready", r)
	}
	if r := in.Read(9, idAsync, nil); r != CodeUnknownEvent.ret() {
		t.Errorf("Read of an unknown event = %d; want unknown-event", r)
	}
	echo := &echoProvider{id: idEcho}
	if r := in.Submit(4, idEcho, make([]byte, echo.Info().MaxPayload+1)); r != CodeLimit.ret() {
		t.Errorf("Submit past the quota = %d; want limit", r)
	}
}

func TestProviderPayloadLimit(t *testing.T) {
	h, echo := newHost(t, Limits{})
	in := newInstance(t, h, FunctionConfig{})
	in.Begin(context.Background())
	defer in.End()
	if r := in.Submit(1, idEcho, make([]byte, echo.Info().MaxPayload+1)); r != CodeTooLarge.ret() {
		t.Errorf("Submit over the provider's payload limit = %d; want too-large", r)
	}
}

func TestReadChecks(t *testing.T) {
	h, _ := newHost(t, Limits{})
	in := newInstance(t, h, FunctionConfig{})
	in.Begin(context.Background())
	defer in.End()
	in.Submit(5, idEcho, []byte("abc"))
	id, size, _ := in.Wait()
	if r := in.Read(id, idAsync, make([]byte, size)); r != CodeInvalid.ret() {
		t.Errorf("Read with the wrong provider = %d; want invalid", r)
	}
	if r := in.Read(id, idEcho, make([]byte, size-1)); r != CodeBadAddress.ret() {
		t.Errorf("Read into a short buffer = %d; want bad-address", r)
	}
	if code, out := result(t, in, id, idEcho, size); code != CodeOK || string(out) != "abc" {
		t.Errorf("Read after refused reads = %v %q; want the result intact", code, out)
	}
	if r := in.Read(id, idEcho, make([]byte, size)); r != CodeUnknownEvent.ret() {
		t.Errorf("second Read = %d; want unknown-event", r)
	}
}

func TestWaitEndsWithRequest(t *testing.T) {
	h, _ := newHost(t, Limits{})
	in := newInstance(t, h, FunctionConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	in.Begin(ctx)
	defer in.End()
	in.Submit(1, idAsync, ms(10_000))
	if _, _, r := in.Wait(); r != CodeCanceled.ret() {
		t.Fatalf("Wait past the deadline = %d; want canceled", r)
	}
}

// TestUnreadCompletionsAreFreed checks that completions a guest never reads, and calls still at a
// provider when the request ends, neither leak nor reach the next request.
func TestUnreadCompletionsAreFreed(t *testing.T) {
	h, _ := newHost(t, Limits{MaxInFlight: 4})
	in := newInstance(t, h, FunctionConfig{})
	for req := 0; req < 50; req++ {
		// As the pool does, the request's context ends with the request: calls left at a
		// provider finish soon after, and are freed as stale.
		ctx, cancel := context.WithCancel(context.Background())
		in.Begin(ctx)
		for _, s := range []struct {
			id, provider uint32
			payload      []byte
		}{
			{1, idEcho, []byte("x")}, // completed, never popped
			{2, idAsync, ms(1000)},   // still at the provider when the request ends
			{3, idEcho, []byte("y")}, // popped, never read
		} {
			r := in.Submit(s.id, s.provider, s.payload)
			for r == CodeBusy.ret() { // stragglers of earlier requests hold the slots
				time.Sleep(100 * time.Microsecond)
				in.Poll()
				r = in.Submit(s.id, s.provider, s.payload)
			}
			if r < 0 {
				t.Fatalf("request %d: Submit(%d) = %v", req, s.id, Code(-r))
			}
		}
		for !in.events[3].popped {
			if _, _, r := in.Wait(); r < 0 {
				t.Fatalf("request %d: Wait = %v", req, Code(-r))
			}
		}
		in.End()
		cancel()
		if len(in.events) != 0 {
			t.Fatalf("request %d: %d events left after End", req, len(in.events))
		}
	}
	// Only stragglers of the last requests may still be outstanding; a new request must never
	// see them and must have its full quota once they are gone.
	in.Begin(context.Background())
	defer in.End()
	if r := in.Submit(9, idEcho, []byte("z")); r < 0 {
		t.Fatalf("Submit = %v", Code(-r))
	}
	id, size, _ := in.Wait()
	if id != 9 {
		t.Fatalf("Wait returned event %d from an earlier request; want 9", id)
	}
	result(t, in, id, idEcho, size)
	deadline := time.Now().Add(5 * time.Second)
	for in.outstanding.Load() != 0 {
		in.Poll() // frees stragglers as they arrive
		if time.Now().After(deadline) {
			t.Fatalf("%d calls still outstanding", in.outstanding.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDetached(t *testing.T) {
	h, echo := newHost(t, Limits{MaxDetached: 3})
	in := newInstance(t, h, FunctionConfig{})
	in.Begin(context.Background())
	defer in.End()
	n := 0
	for i := 0; i < 100; i++ {
		if r := in.Submit(0, idEcho, []byte("line")); r >= 0 {
			n++
		} else if r != CodeBusy.ret() {
			t.Fatalf("detached Submit = %v", Code(-r))
		}
	}
	if _, _, r := in.Poll(); r != CodeNotReady.ret() {
		t.Errorf("Poll after detached submissions = %d; want not-ready (no completions)", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for in.detached.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	echo.mu.Lock()
	served := 0
	for _, b := range echo.batches {
		served += b
	}
	echo.mu.Unlock()
	if served != n || in.detached.Load() != 0 {
		t.Errorf("served %d of %d accepted detached calls; %d unfinished", served, n, in.detached.Load())
	}
}

// gateProvider holds its calls until open is closed, then completes them all from one goroutine:
// a burst of completions.
type gateProvider struct {
	open chan struct{}
	held chan *Call
	wg   sync.WaitGroup
}

const idGate = 12

func (p *gateProvider) Info() ProviderInfo { return ProviderInfo{ID: idGate, Name: "gate"} }

func (p *gateProvider) Provision(Env) error {
	p.held = make(chan *Call, 1024)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		<-p.open
		for {
			select {
			case c := <-p.held:
				c.Complete(append(c.Result(), c.Payload()...))
			default:
				return
			}
		}
	}()
	return nil
}

func (p *gateProvider) Serve(batch []*Call) {
	for _, c := range batch {
		p.held <- c
	}
}

func (p *gateProvider) Cleanup() error { p.wg.Wait(); return nil }

// TestBurstIsOneWakeup completes a burst at once and checks that the parked guest collects it
// with one wake-up and polls.
func TestBurstIsOneWakeup(t *testing.T) {
	gate := &gateProvider{open: make(chan struct{})}
	h, err := New(Config{Providers: []Provider{gate}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	in := newInstance(t, h, FunctionConfig{})
	in.Begin(context.Background())
	defer in.End()
	const n = 16
	for i := uint32(1); i <= n; i++ {
		if r := in.Submit(i, idGate, []byte{byte(i)}); r < 0 {
			t.Fatalf("Submit = %v", Code(-r))
		}
	}
	go func() {
		for len(gate.held) < n { // every call reached the provider
			time.Sleep(time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond) // the guest is parked by now
		close(gate.open)
	}()
	wakeups := wakeupsTotal.Get()
	id, size, more := in.Wait()
	if more < 0 {
		t.Fatalf("Wait = %v", Code(-more))
	}
	seen := map[uint32]bool{id: true}
	result(t, in, id, idGate, size)
	for more > 0 || len(seen) < n {
		id, size, r := in.Poll()
		if r < 0 {
			if len(seen) < n { // completions still being pushed: wait for the rest
				id, size, r = in.Wait()
			}
			if r < 0 {
				t.Fatalf("after %d completions: %v", len(seen), Code(-r))
			}
		}
		more = r
		seen[id] = true
		if _, out := result(t, in, id, idGate, size); len(out) != 1 || uint32(out[0]) != id {
			t.Fatalf("event %d carries %v", id, out)
		}
	}
	if w := wakeupsTotal.Get() - wakeups; w > 2 {
		t.Errorf("a burst of %d completions took %d wake-ups; want 1 (2 if the guest woke mid-burst)", n, w)
	}
}

func TestCloseFinishesQueuedCalls(t *testing.T) {
	async := &asyncProvider{id: idAsync}
	h, err := New(Config{Providers: []Provider{async}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	in := newInstance(t, h, FunctionConfig{})
	in.Begin(context.Background())
	defer in.End()
	in.Submit(1, idAsync, ms(5))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, r := in.Poll(); r < 0 {
		t.Errorf("Poll after Close = %v; want the call finished by Cleanup", Code(-r))
	}
	if r := in.Submit(2, idAsync, nil); r != CodeClosed.ret() {
		t.Errorf("Submit after Close = %d; want closed", r)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"id 0", Config{Providers: []Provider{&echoProvider{id: 0}}}},
		{"id too large", Config{Providers: []Provider{&echoProvider{id: MaxProviderID + 1}}}},
		{"duplicate id", Config{Providers: []Provider{&echoProvider{id: 3}, &echoProvider{id: 3}}}},
		{"negative limit", Config{Limits: Limits{MaxInFlight: -1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if h, err := New(tc.cfg); err == nil {
				h.Close()
				t.Fatal("New succeeded")
			}
		})
	}
	h, _ := newHost(t, Limits{})
	for _, cfg := range []FunctionConfig{
		{},
		{Name: "a", Fetch: FetchPolicy{Allow: []string{"http://example.com"}}},
		{Name: "a", Fetch: FetchPolicy{Allow: []string{"Example.com"}}},
		{Name: "a", Fetch: FetchPolicy{Allow: []string{"example.com:x"}}},
	} {
		if _, err := h.NewFunction(cfg); err == nil {
			t.Errorf("NewFunction(%+v) succeeded", cfg)
		}
	}
}

func TestProvisionFailureCleansUp(t *testing.T) {
	first := &lifecycleProvider{id: 1}
	second := &lifecycleProvider{id: 2, invalid: true}
	if _, err := New(Config{Providers: []Provider{first, second}, Logger: quiet}); err == nil {
		t.Fatal("New succeeded with an invalid provider")
	}
	if !first.provisioned || !first.cleaned || !second.cleaned {
		t.Errorf("first provisioned %v cleaned %v, second cleaned %v; want all true", first.provisioned, first.cleaned, second.cleaned)
	}
}

type lifecycleProvider struct {
	id                   uint32
	invalid              bool
	provisioned, cleaned bool
}

func (p *lifecycleProvider) Info() ProviderInfo  { return ProviderInfo{ID: p.id} }
func (p *lifecycleProvider) Serve([]*Call)       {}
func (p *lifecycleProvider) Provision(Env) error { p.provisioned = true; return nil }
func (p *lifecycleProvider) Cleanup() error      { p.cleaned = true; return nil }
func (p *lifecycleProvider) Validate() error {
	if p.invalid {
		return errors.New("invalid on purpose")
	}
	return nil
}
