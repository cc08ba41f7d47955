package snapshot_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/wispfn/wisp/pool/cowmem"
	"github.com/wispfn/wisp/pool/snapshot"
)

// TestProbeFirstWrites checks Snapshot.FirstWrites: the pages a probe writes after the
// snapshot, none without a probe, the probe's error failing Take, and the snapshot itself
// untouched by the probe.
func TestProbeFirstWrites(t *testing.T) {
	ctx := context.Background()
	rt := newRuntime(t)
	plain, err := snapshot.Take(ctx, rt, guest(t), snapshot.Options{Env: guestEnv})
	if err != nil {
		t.Fatal(err)
	}
	if plain.FirstWrites != nil {
		t.Fatalf("FirstWrites %v without a probe; want none", plain.FirstWrites)
	}

	var before []byte
	var slot uint32
	probed, err := snapshot.Take(ctx, rt, guest(t), snapshot.Options{Env: guestEnv, Probe: func(ctx context.Context, mod api.Module) error {
		mem, _ := mod.Memory().Read(0, mod.Memory().Size())
		before = bytes.Clone(mem)
		call(t, mod, "set", 12345)
		for off := 0; off+4 <= len(mem); off += 4 { // the word set wrote
			if binary.LittleEndian.Uint32(mem[off:]) == 12345 && binary.LittleEndian.Uint32(before[off:]) != 12345 {
				slot = uint32(off)
			}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(probed.FirstWrites) == 0 || slot == 0 {
		t.Fatalf("FirstWrites %v after a probe that wrote at %#x; want its page", probed.FirstWrites, slot)
	}
	found := false
	for i, p := range probed.FirstWrites {
		if i > 0 && p <= probed.FirstWrites[i-1] {
			t.Fatalf("FirstWrites %v not increasing", probed.FirstWrites)
		}
		if uint64(p+1)*snapshot.PageSize > uint64(len(probed.Memory)) {
			t.Fatalf("FirstWrites %v: page %d outside the image of %d bytes", probed.FirstWrites, p, len(probed.Memory))
		}
		found = found || p == slot/snapshot.PageSize
	}
	if !found {
		t.Fatalf("FirstWrites %v lack page %d, where the probe wrote", probed.FirstWrites, slot/snapshot.PageSize)
	}
	if !bytes.Equal(probed.Memory, before) {
		t.Fatal("the snapshot is not the memory as it was before the probe")
	}

	boom := errors.New("boom")
	if _, err := snapshot.Take(ctx, rt, guest(t), snapshot.Options{Env: guestEnv, Probe: func(context.Context, api.Module) error { return boom }}); !errors.Is(err, boom) {
		t.Fatalf("Take with a failing probe: %v; want its error", err)
	}

	// A probe that ends the instance leaves no memory to compare: on a memory that is
	// unmapped when freed, reading it would fault. The snapshot stands, without first writes;
	// if time ran out, Take fails.
	tracker := cowmem.NewTracker()
	if tracker == nil {
		t.Skip("no page tracking here")
	}
	tracked := experimental.WithMemoryAllocator(ctx, tracker)
	closed, err := snapshot.Take(tracked, rt, guest(t), snapshot.Options{Env: guestEnv, Probe: func(ctx context.Context, mod api.Module) error {
		return mod.Close(ctx)
	}})
	if err != nil || closed.FirstWrites != nil || len(closed.Memory) == 0 {
		t.Fatalf("Take with a probe that closed the instance: %v; want the snapshot without first writes", err)
	}
	short, cancel := context.WithCancel(tracked)
	if _, err := snapshot.Take(short, rt, guest(t), snapshot.Options{Env: guestEnv, Probe: func(ctx context.Context, mod api.Module) error {
		cancel()
		return mod.Close(ctx)
	}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Take with a probe that ran out of time: %v; want context.Canceled", err)
	}
}
