package kv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/kv/cache"
	"github.com/wispfn/wisp/kv/natsnode"
	"github.com/wispfn/wisp/kv/store"
	"github.com/wispfn/wisp/ring"
)

var (
	nodeOnce sync.Once
	node     *natsnode.Node
	nodeErr  error
	nodeDir  string
)

// realStores returns Stores over Local Caches in front of the Global KV, on one embedded NATS
// server per test binary; every test uses namespaces of its own.
func realStores(tb testing.TB) *Stores {
	tb.Helper()
	nodeOnce.Do(func() {
		// Not tb.TempDir: the node outlives the test that starts it; TestMain removes it.
		if nodeDir, nodeErr = os.MkdirTemp("", "wisp-ring-kv-"); nodeErr == nil {
			node, nodeErr = natsnode.Start(context.Background(), natsnode.Options{Dir: nodeDir})
		}
	})
	if nodeErr != nil {
		tb.Fatalf("cannot start NATS: %v", nodeErr)
	}
	s := NewStores(func(ctx context.Context, ns string) (store.Store, error) {
		st, err := store.Open(ctx, node, ns, store.Options{Storage: store.StorageMemory})
		if err != nil {
			return nil, err
		}
		return cache.New(st, cache.Options{})
	})
	tb.Cleanup(s.Close)
	return s
}

func TestMain(m *testing.M) {
	code := m.Run()
	if node != nil {
		node.Close()
	}
	if nodeDir != "" {
		os.RemoveAll(nodeDir)
	}
	os.Exit(code)
}

func realHarness(tb testing.TB) (*ring.Host, *Stores) {
	tb.Helper()
	s := realStores(tb)
	h, err := ring.New(ring.Config{
		Providers: []ring.Provider{New(Config{Store: s})},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits:    ring.Limits{MaxHostcalls: 1 << 30},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return h, s
}

func realInstance(tb testing.TB, h *ring.Host, name, ns string) *ring.Instance {
	tb.Helper()
	f, err := h.NewFunction(ring.FunctionConfig{Name: name, Namespace: ns})
	if err != nil {
		tb.Fatal(err)
	}
	in := f.NewInstance()
	in.Begin(context.Background())
	tb.Cleanup(in.End)
	return in
}

func TestLocalCache(t *testing.T) {
	h, _ := realHarness(t)
	a := realInstance(t, h, "a", "lc-a")
	b := realInstance(t, h, "b", "lc-b")
	res := do(t, a, putReq("k", "v", 0), putReq("user.1", "x", 0), putReq("user.2", "y", time.Hour))
	for i, r := range res {
		if r.code != ring.CodeOK {
			t.Fatalf("put %d: %s", i, r)
		}
	}
	if got := do(t, a, getReq("k"))[0].String(); got != found("v") {
		t.Errorf("get = %s; want v", got)
	}
	if got := do(t, a, getReq("k"))[0].String(); got != found("v") { // from the cache this time
		t.Errorf("second get = %s; want v", got)
	}
	if got := do(t, b, getReq("k"))[0].String(); got != missing {
		t.Errorf("another namespace's get = %s; want missing", got)
	}
	list := do(t, a, listReq("user.", 0))[0]
	if want := fmt.Sprintf("%x", append(append(append([]byte{2, 0, 0, 0}, strAppend("user.1")...), strAppend("user.2")...), 0)); list.String() != want {
		t.Errorf("list = %s; want %s", list, want)
	}
	do(t, a, delReq("k"))
	if got := do(t, a, getReq("k"))[0].String(); got != missing {
		t.Errorf("get after delete = %s; want missing", got)
	}
	if r := do(t, a, putReq("k", "v", 500*time.Millisecond))[0]; r.code != ring.CodeInvalid {
		t.Errorf("sub-second ttl: %s; want invalid", r)
	}
}

func TestBadNamespace(t *testing.T) {
	h, _ := realHarness(t)
	in := realInstance(t, h, "f", "Not A Namespace")
	r := do(t, in, getReq("k"))[0]
	if r.code != ring.CodeInvalid || !strings.Contains(r.String(), "cannot open namespace") {
		t.Errorf("get in a malformed namespace: %s; want invalid", r)
	}
}

func strAppend(s string) []byte {
	b := []byte{byte(len(s)), 0, 0, 0}
	return append(b, s...)
}

// BenchmarkGetLocalCache is a guest's kv get answered by the Local Cache, played from Go through
// the ring: submit, the dispatcher's GetMany, wait, read.
func BenchmarkGetLocalCache(b *testing.B) {
	h, _ := realHarness(b)
	in := realInstance(b, h, "bench", "lc-bench")
	do(b, in, putReq("k", "value", 0))
	do(b, in, getReq("k")) // fill the cache
	p := getReq("k")
	buf := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		in.Submit(1, ring.ProviderKV, p)
		if _, _, r := in.Wait(); r < 0 {
			b.Fatal(ring.Code(-r))
		}
		in.Read(1, ring.ProviderKV, buf)
	}
	b.StopTimer()
	if fmt.Sprintf("%x", buf[4:14]) != found("value") {
		b.Fatalf("last get read %x", buf)
	}
}
