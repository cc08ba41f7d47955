package snapshot_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/wispfn/wisp/pool/snapshot"
)

// coldGuest is a guest measured by BenchmarkColdStart and
// TestIdleInstanceRSS: how to build it and its first call.
type coldGuest struct {
	name  string
	wasm  func(testing.TB) []byte
	first func(context.Context, api.Module) error
	opt   snapshot.Options
}

func coldGuests() []coldGuest {
	incr := func(ctx context.Context, mod api.Module) error {
		res, err := mod.ExportedFunction("incr").Call(ctx)
		if err == nil && res[0] != 1 {
			err = fmt.Errorf("incr() = %d; want 1", res[0])
		}
		return err
	}
	request := func(ctx context.Context, mod api.Module) error {
		resp, err := serve(ctx, mod, &helloRequest)
		if err == nil && resp.Status != 200 {
			err = fmt.Errorf("status %d", resp.Status)
		}
		return err
	}
	warmUp := func(ctx context.Context, mod api.Module) error {
		_, err := serve(ctx, mod, &helloRequest)
		return err
	}
	return []coldGuest{
		{"guest", guest, incr, snapshot.Options{Env: guestEnv}},
		{"hello", hello, request, snapshot.Options{Env: guestEnv}},
		{"hello-warm", hello, request, snapshot.Options{Env: guestEnv, WarmUp: warmUp}},
	}
}

// starter instantiates a guest and runs its first call, the stock way or
// from a snapshot.
type starter func(ctx context.Context) (api.Module, error)

func stockStarter(tb testing.TB, rt wazero.Runtime, g coldGuest) starter {
	tb.Helper()
	ctx := context.Background()
	compiled, err := rt.CompileModule(ctx, g.wasm(tb))
	if err != nil {
		tb.Fatal(err)
	}
	cfg := wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(rand.Reader)
	for _, kv := range guestEnv {
		k, v, _ := strings.Cut(kv, "=")
		cfg = cfg.WithEnv(k, v)
	}
	return func(ctx context.Context) (api.Module, error) {
		mod, err := rt.InstantiateModule(ctx, compiled, cfg)
		if err != nil {
			return nil, err
		}
		for _, name := range []string{snapshot.ExportInitialize, snapshot.ExportStart} {
			if _, err := mod.ExportedFunction(name).Call(ctx); err != nil {
				return mod, err
			}
		}
		return mod, g.first(ctx, mod)
	}
}

func snapshotStarter(tb testing.TB, rt wazero.Runtime, g coldGuest) (starter, *snapshot.Snapshot) {
	tb.Helper()
	snap, err := snapshot.Take(context.Background(), rt, g.wasm(tb), g.opt)
	if err != nil {
		tb.Fatal(err)
	}
	r := prepare(tb, rt, snap)
	cfg, err := snap.ModuleConfig(r.base, guestEnv)
	if err != nil {
		tb.Fatal(err)
	}
	cfg = cfg.WithName("")
	alloc := r.image.Allocator(64 << 20)
	return func(ctx context.Context) (api.Module, error) {
		mod, err := rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, alloc), r.compiled, cfg)
		if err != nil {
			return nil, err
		}
		return mod, g.first(ctx, mod)
	}, snap
}

// BenchmarkColdStart measures instantiating a guest and its first call:
// stock (instantiate, _initialize, wisp_start, call) against restored from a
// snapshot with copy-on-write memory (instantiate, call). Instances are
// closed off the clock, in batches.
func BenchmarkColdStart(b *testing.B) {
	for _, g := range coldGuests() {
		rt := newRuntime(b)
		restore, _ := snapshotStarter(b, rt, g)
		starters := []struct {
			name  string
			start starter
		}{
			{"stock", stockStarter(b, rt, g)},
			{"snapshot", restore},
		}
		for _, s := range starters {
			if g.name == "hello-warm" && s.name == "stock" {
				continue // same as hello/stock
			}
			b.Run(g.name+"/"+s.name, func(b *testing.B) {
				ctx := context.Background()
				live := make([]api.Module, 0, 64)
				closeAll := func() {
					for _, mod := range live {
						mod.Close(ctx)
					}
					live = live[:0]
				}
				defer closeAll()
				b.ReportAllocs()
				for b.Loop() {
					mod, err := s.start(ctx)
					if err != nil {
						b.Fatal(err)
					}
					live = append(live, mod)
					if len(live) == cap(live) {
						b.StopTimer()
						closeAll()
						b.StartTimer()
					}
				}
			})
		}
	}
}

// TestIdleInstanceRSS logs how much the process's memory grows per live,
// idle instance after one call, stock and restored. It asserts nothing:
// the numbers depend on the machine.
func TestIdleInstanceRSS(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures hundreds of instances, meaningless under -race")
	}
	g := coldGuests()[2] // hello, warmed up
	rt := newRuntime(t)
	restore, snap := snapshotStarter(t, rt, g)
	starters := []struct {
		name  string
		n     int
		start starter
	}{
		{"snapshot", 200, restore},
		{"stock", 20, stockStarter(t, rt, g)},
	}
	for _, s := range starters {
		ctx := context.Background()
		// Warm the runtime's code and caches with one instance first.
		if mod, err := s.start(ctx); err != nil {
			t.Fatal(err)
		} else {
			mod.Close(ctx)
		}
		before := memoryUsage(t)
		mods := make([]api.Module, s.n)
		for i := range mods {
			mod, err := s.start(ctx)
			if err != nil {
				t.Fatal(err)
			}
			mods[i] = mod
		}
		after := memoryUsage(t)
		var fields []string
		for _, k := range []string{"Rss", "Pss", "Anonymous", "Pss_Shmem"} {
			fields = append(fields, fmt.Sprintf("%s %.0f KiB", k, float64(after[k]-before[k])/float64(s.n)/1024))
		}
		t.Logf("%s: %d idle %s instances, per instance: %s", g.name, s.n, s.name, strings.Join(fields, ", "))
		if s.name == "snapshot" {
			t.Logf("%s: one restored instance differs from the image in %d KiB of memory (4 KiB pages written, at least)",
				g.name, 4*writtenPages(t, snap, mods[0]))
		}
		for _, mod := range mods {
			mod.Close(ctx)
		}
	}
}

// memoryUsage returns the fields of /proc/self/smaps_rollup, in bytes, after
// returning the host's free Go heap to the system.
func memoryUsage(t *testing.T) map[string]int64 {
	t.Helper()
	debug.FreeOSMemory()
	time.Sleep(10 * time.Millisecond)
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		t.Skipf("cannot measure memory: %v", err)
	}
	m := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
			m[k] = n << 10
		}
	}
	return m
}

// writtenPages returns how many 4 KiB pages of mod's memory differ from the
// snapshot image: pages the instance certainly owns.
func writtenPages(t *testing.T, snap *snapshot.Snapshot, mod api.Module) int {
	t.Helper()
	mem, ok := mod.Memory().Read(0, mod.Memory().Size())
	if !ok {
		t.Fatal("cannot read memory")
	}
	n := 0
	for off := 0; off < len(mem); off += 4 << 10 {
		end := off + 4<<10
		if end > len(snap.Memory) || !bytes.Equal(mem[off:end], snap.Memory[off:end]) {
			n++
		}
	}
	return n
}
