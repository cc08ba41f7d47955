package snapshot_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/wispfn/wisp/pool/cowmem"
	"github.com/wispfn/wisp/pool/snapshot"
)

// guestEnv is the environment of the test guest, at snapshot and restore.
var guestEnv = []string{"GREETING=hello from init"}

// restored is a snapshot ready to be instantiated with copy-on-write memory.
type restored struct {
	snap     *snapshot.Snapshot
	compiled wazero.CompiledModule
	image    *cowmem.Image
	base     time.Time
}

// takeGuest snapshots the test guest in rt and prepares its restoration.
func takeGuest(tb testing.TB, rt wazero.Runtime, opt snapshot.Options) *restored {
	tb.Helper()
	ctx := context.Background()
	snap, err := snapshot.Take(ctx, rt, guest(tb), opt)
	if err != nil {
		tb.Fatalf("Take: %v", err)
	}
	return prepare(tb, rt, snap)
}

func prepare(tb testing.TB, rt wazero.Runtime, snap *snapshot.Snapshot) *restored {
	tb.Helper()
	ctx := context.Background()
	compiled, err := rt.CompileModule(ctx, snap.Module)
	if err != nil {
		tb.Fatalf("CompileModule(rewritten): %v", err)
	}
	img, err := cowmem.NewImage(snap.Memory)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { img.Close() })
	return &restored{snap: snap, compiled: compiled, image: img, base: time.Now()}
}

// instance instantiates a restored instance whose memory may grow to limit
// bytes, writing its stdout to stdout (if not nil).
func (r *restored) instance(tb testing.TB, rt wazero.Runtime, limit uint64, stdout *bytes.Buffer) api.Module {
	tb.Helper()
	ctx := experimental.WithMemoryAllocator(context.Background(), r.image.Allocator(limit))
	cfg, err := r.snap.ModuleConfig(r.base, guestEnv)
	if err != nil {
		tb.Fatal(err)
	}
	cfg = cfg.WithName("")
	if stdout != nil {
		cfg = cfg.WithStdout(stdout)
	}
	mod, err := rt.InstantiateModule(ctx, r.compiled, cfg)
	if err != nil {
		tb.Fatalf("InstantiateModule(rewritten): %v", err)
	}
	tb.Cleanup(func() { mod.Close(context.Background()) })
	return mod
}

func TestRestoredHasInitState(t *testing.T) {
	rt := newRuntime(t)
	r := takeGuest(t, rt, snapshot.Options{Env: guestEnv})
	mod := r.instance(t, rt, 0, nil)
	if got := call(t, mod, "ready"); got != 1 {
		t.Fatalf("ready() = %d; want 1", got)
	}
	if mod.ExportedFunction(snapshot.ExportInitialize) != nil || mod.ExportedFunction(snapshot.ExportStart) != nil {
		t.Errorf("restored module still exports %s or %s", snapshot.ExportInitialize, snapshot.ExportStart)
	}
}
