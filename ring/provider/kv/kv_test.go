package kv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wispfn/wisp/ring"
	"github.com/wispfn/wisp/ring/internal/vectors"
	"github.com/wispfn/wisp/ring/internal/wire"
)

// memKV is an in-memory KV, a fake that can be made slow or failing at will, for the tests of
// batching and failures. It keeps the contract the provider relies on: namespaces are disjoint,
// a ttl expires a key, GetMany answers keys in order with Revision 0 for a miss. The real store
// (Local Cache over the Global KV on embedded NATS) is exercised in stores_test.go.
type memKV struct {
	mu       sync.Mutex
	rev      uint64
	data     map[string]map[string]memEntry
	getManys atomic.Int64
	keysGot  atomic.Int64
	fail     error         // returned by every call when set
	delay    time.Duration // each GetMany takes this long
}

type memEntry struct {
	value   []byte
	rev     uint64
	expires time.Time
}

func newMemKV() *memKV { return &memKV{data: map[string]map[string]memEntry{}} }

func (m *memKV) GetMany(ctx context.Context, ns string, keys []string) ([]Entry, error) {
	m.getManys.Add(1)
	m.keysGot.Add(int64(len(keys)))
	if m.delay > 0 {
		select {
		case <-time.After(m.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	out := make([]Entry, len(keys))
	now := time.Now()
	for i, k := range keys {
		if e, ok := m.data[ns][k]; ok && (e.expires.IsZero() || now.Before(e.expires)) {
			out[i] = Entry{Value: e.value, Revision: e.rev}
		}
	}
	return out, nil
}

func (m *memKV) Put(_ context.Context, ns, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.data[ns] == nil {
		m.data[ns] = map[string]memEntry{}
	}
	m.rev++
	e := memEntry{value: append([]byte(nil), value...), rev: m.rev}
	if ttl > 0 {
		e.expires = time.Now().Add(ttl)
	}
	m.data[ns][key] = e
	return nil
}

func (m *memKV) Delete(_ context.Context, ns, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	delete(m.data[ns], key)
	return nil
}

func (m *memKV) Keys(_ context.Context, ns, prefix string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var keys []string
	for k := range m.data[ns] {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// Guest encodings (docs/hostcalls.md).
func getReq(key string) []byte { return wire.AppendStr([]byte{OpGet}, key) }
func delReq(key string) []byte { return wire.AppendStr([]byte{OpDelete}, key) }
func putReq(key, value string, ttl time.Duration) []byte {
	b := wire.AppendStr([]byte{OpPut}, key)
	b = wire.AppendStr(b, value)
	return wire.AppendU64(b, uint64(ttl/time.Millisecond))
}
func listReq(prefix string, limit uint32) []byte {
	return wire.AppendU32(wire.AppendStr([]byte{OpList}, prefix), limit)
}

type harness struct {
	kv  *memKV
	h   *ring.Host
	fns map[string]*ring.Function
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	m := newMemKV()
	h, err := ring.New(ring.Config{
		Providers: []ring.Provider{New(Config{Store: m, MaxValue: 64, MaxList: 3})},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits:    ring.Limits{MaxHostcalls: 1 << 30},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return &harness{kv: m, h: h, fns: map[string]*ring.Function{}}
}

func (hs *harness) instance(t testing.TB, name, ns string) *ring.Instance {
	t.Helper()
	f, err := hs.h.NewFunction(ring.FunctionConfig{Name: name, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	in := f.NewInstance()
	in.Begin(context.Background())
	t.Cleanup(in.End)
	return in
}

// do submits each payload, waits for all and returns the results in submission order.
func do(t testing.TB, in *ring.Instance, payloads ...[]byte) []result {
	t.Helper()
	for i, p := range payloads {
		if r := in.Submit(uint32(i+1), ring.ProviderKV, p); r < 0 {
			t.Fatalf("Submit %d = %v", i, ring.Code(-r))
		}
	}
	out := make([]result, len(payloads))
	for range payloads {
		id, size, r := in.Wait()
		if r < 0 {
			t.Fatalf("Wait = %v", ring.Code(-r))
		}
		buf := make([]byte, size)
		if r := in.Read(id, ring.ProviderKV, buf); r != 0 {
			t.Fatalf("Read = %v", ring.Code(-r))
		}
		out[id-1] = result{code: ring.Code(binary.LittleEndian.Uint32(buf)), body: buf[4:]}
	}
	return out
}

type result struct {
	code ring.Code
	body []byte
}

func (r result) String() string {
	d := wire.NewDecoder(r.body)
	if r.code != ring.CodeOK {
		return fmt.Sprintf("%v: %s", r.code, d.Str("message"))
	}
	return fmt.Sprintf("%x", r.body)
}

func found(value string) string { return fmt.Sprintf("%x", wire.AppendStr([]byte{1}, value)) }

var missing = fmt.Sprintf("%x", wire.AppendStr([]byte{0}, ""))

func TestOperations(t *testing.T) {
	hs := newHarness(t)
	in := hs.instance(t, "f", "")
	list := func(keys []string, more bool) string {
		b := wire.AppendU32(nil, uint32(len(keys)))
		for _, k := range keys {
			b = wire.AppendStr(b, k)
		}
		return fmt.Sprintf("%x", wire.AppendU8(b, boolByte(more)))
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"get missing", getReq("a"), missing},
		{"put", putReq("a", "1", 0), ""},
		{"get", getReq("a"), found("1")},
		{"put empty value", putReq("e", "", 0), ""},
		{"get empty value", getReq("e"), found("")},
		{"put more", putReq("a.b", "2", 0), ""},
		{"put more", putReq("a.c", "3", time.Hour), ""},
		{"put more", putReq("b", "4", 0), ""},
		{"list", listReq("a.", 0), list([]string{"a.b", "a.c"}, false)},
		{"list capped by the provider", listReq("", 0), list([]string{"a", "a.b", "a.c"}, true)},
		{"list capped by the guest", listReq("", 1), list([]string{"a"}, true)},
		{"delete", delReq("a"), ""},
		{"get deleted", getReq("a"), missing},
		{"delete missing", delReq("zzz"), ""},
		{"bad key", getReq("a b"), "invalid: key \"a b\": use letters"},
		{"empty key", getReq(""), "invalid: empty key"},
		{"dot key", getReq("a..b"), "invalid: key \"a..b\""},
		{"long key", getReq(strings.Repeat("k", MaxKeyBytes+1)), "invalid: key of 513 bytes"},
		{"big value", putReq("a", strings.Repeat("v", 65), 0), "invalid: value of 65 bytes"},
		{"short ttl", putReq("a", "v", time.Millisecond), "invalid: ttl 1ms"},
		{"bad op", []byte{9}, "invalid: cannot decode kv call: malformed hostcall payload: op 9"},
		{"truncated", getReq("abc")[:4], "invalid: cannot decode"},
	} {
		got := do(t, in, tc.payload)[0].String()
		if !strings.HasPrefix(got, tc.want) || tc.want == "" && got != "" {
			t.Errorf("%s: got %s; want %s", tc.name, got, tc.want)
		}
	}
}

func TestTTL(t *testing.T) {
	hs := newHarness(t)
	in := hs.instance(t, "f", "")
	do(t, in, putReq("k", "v", time.Second))
	if got := do(t, in, getReq("k"))[0].String(); got != found("v") {
		t.Fatalf("get before expiry = %s", got)
	}
	time.Sleep(1100 * time.Millisecond)
	if got := do(t, in, getReq("k"))[0].String(); got != missing {
		t.Fatalf("get after expiry = %s; want missing", got)
	}
}

func TestNamespaces(t *testing.T) {
	hs := newHarness(t)
	a := hs.instance(t, "a", "")
	b := hs.instance(t, "b", "")
	shared1 := hs.instance(t, "c", "tenant")
	shared2 := hs.instance(t, "d", "tenant")
	do(t, a, putReq("k", "from a", 0))
	do(t, shared1, putReq("k", "from c", 0))
	for _, tc := range []struct {
		name string
		in   *ring.Instance
		want string
	}{
		{"own key", a, found("from a")},
		{"another function's key", b, missing},
		{"shared namespace", shared2, found("from c")},
	} {
		if got := do(t, tc.in, getReq("k"))[0].String(); got != tc.want {
			t.Errorf("%s: got %s; want %s", tc.name, got, tc.want)
		}
	}
	if got := do(t, b, listReq("", 0))[0].String(); got != fmt.Sprintf("%x", []byte{0, 0, 0, 0, 0}) {
		t.Errorf("b lists %s; want no keys", got)
	}
}

// TestGetsBecomeOneGetMany submits many gets at once, with the store slow enough that they pile
// up behind the first batch, and checks they cost far fewer GetMany calls than keys.
func TestGetsBecomeOneGetMany(t *testing.T) {
	hs := newHarness(t)
	hs.kv.delay = 5 * time.Millisecond
	in := hs.instance(t, "f", "")
	do(t, in, putReq("k", "v", 0))
	const n = 64
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = getReq("k")
	}
	before := hs.kv.getManys.Load()
	for i, r := range do(t, in, payloads...) {
		if r.String() != found("v") {
			t.Fatalf("get %d = %s", i, r)
		}
	}
	// With 4 workers, the gets arrive while the first batches wait on the store.
	if calls := hs.kv.getManys.Load() - before; calls > 8 {
		t.Errorf("%d gets took %d GetMany calls; want at most 8", n, calls)
	}
}

// TestReadsBeforeWriteGoFirst checks the order within a batch: a get submitted before a put of
// the same key does not see the put.
func TestReadsBeforeWriteGoFirst(t *testing.T) {
	hs := newHarness(t)
	in := hs.instance(t, "f", "")
	do(t, in, putReq("k", "old", 0))
	got := do(t, in, getReq("k"), putReq("k", "new", 0), getReq("k"))
	if got[0].String() != found("old") || got[2].String() != found("new") {
		// The three may land in different batches; only a reordered single batch is wrong.
		if got[0].String() == found("new") && got[2].String() == found("old") {
			t.Errorf("get, put, get = %s, %s; want old, new", got[0], got[2])
		}
	}
}

func TestStoreFailure(t *testing.T) {
	hs := newHarness(t)
	in := hs.instance(t, "f", "")
	hs.kv.fail = fmt.Errorf("node down: %w", errors.New("connection refused"))
	for _, p := range [][]byte{getReq("k"), putReq("k", "v", 0), delReq("k"), listReq("", 0)} {
		r := do(t, in, p)[0]
		d := wire.NewDecoder(r.body)
		msg, id := d.Str("message"), d.Str("error id")
		if r.code != ring.CodeUnavailable || !strings.Contains(msg, "node down") || len(id) != 16 {
			t.Errorf("op %d with the store down: %v %q %q; want unavailable, the cause and an error id", p[0], r.code, msg, id)
		}
	}
	hs.kv.fail = fmt.Errorf("%w: bad key", ErrInvalid)
	if r := do(t, in, getReq("k"))[0]; r.code != ring.CodeInvalid {
		t.Errorf("store's invalid error reached the guest as %v; want invalid", r.code)
	}
}

func TestHammer(t *testing.T) {
	hs := newHarness(t)
	var wg sync.WaitGroup
	for w := range 8 {
		in := hs.instance(t, fmt.Sprint("f", w), "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				v := fmt.Sprint(i)
				res := do(t, in, putReq("k", v, 0))
				res = append(res, do(t, in, getReq("k"), getReq("k"), getReq("missing"))...)
				if res[0].String() != "" || res[1].String() != found(v) || res[2].String() != found(v) || res[3].String() != missing {
					t.Errorf("worker %d round %d: %v", w, i, res)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzDecode(f *testing.F) {
	for _, p := range [][]byte{getReq("a"), putReq("a.b", "v", time.Second), delReq("x"), listReq("p.", 3)} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b, 1<<10)
		if err != nil {
			return
		}
		if r.Op < OpGet || r.Op > OpList || len(r.Key) > MaxKeyBytes || len(r.Value) > 1<<10 {
			t.Fatalf("Decode accepted %+v", r)
		}
	})
}

// BenchmarkGet is a get served from an in-memory store through the ring, played from Go: submit,
// wait (the dispatcher serves it on its goroutine), read.
func BenchmarkGet(b *testing.B) {
	hs := newHarness(b)
	in := hs.instance(b, "f", "")
	do(b, in, putReq("k", "value", 0))
	p := getReq("k")
	buf := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		in.Submit(1, ring.ProviderKV, p)
		_, _, r := in.Wait()
		if r < 0 {
			b.Fatal(ring.Code(-r))
		}
		in.Read(1, ring.ProviderKV, buf)
	}
}

func TestSDKVectors(t *testing.T) {
	vs := vectors.Load(t, ring.ProviderKV)
	for name, want := range map[string]Request{
		"kv get":          {Op: OpGet, Key: "user.42"},
		"kv put with ttl": {Op: OpPut, Key: "user.42", Value: []byte("v"), TTL: 90 * time.Second},
		"kv put forever":  {Op: OpPut, Key: "k", Value: []byte{}},
		"kv delete":       {Op: OpDelete, Key: "user.42"},
		"kv list":         {Op: OpList, Key: "user.", Limit: 10},
	} {
		got, err := Decode(vs[name], 1<<20)
		if err != nil || got.Op != want.Op || got.Key != want.Key || string(got.Value) != string(want.Value) ||
			got.TTL != want.TTL || got.Limit != want.Limit {
			t.Errorf("%s: decoded %+v, %v; want %+v", name, got, err, want)
		}
	}
}
