package ring

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestHammer runs many instances at once, each serving requests that submit bursts to an inline
// and an asynchronous provider (out-of-order completions from many goroutines), read some of
// their completions and abandon the rest, with detached calls mixed in. Every result read must
// be the one submitted under its id, and nothing may stay outstanding at the end.
func TestHammer(t *testing.T) {
	h, _ := newHost(t, Limits{MaxInFlight: 32, MaxHostcalls: 1 << 20})
	f, err := h.NewFunction(FunctionConfig{Name: "hammer"})
	if err != nil {
		t.Fatal(err)
	}
	instances, requests := 16, 200
	if testing.Short() {
		requests = 40
	}
	var wg sync.WaitGroup
	errs := make(chan error, instances)
	all := make([]*Instance, instances)
	for i := range instances {
		in := f.NewInstance()
		all[i] = in
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for req := range requests {
				if err := hammerRequest(in, rng, req); err != nil {
					errs <- err
					return
				}
			}
			in.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Calls abandoned by the last requests finish at their providers and are dropped.
	deadline := time.Now().Add(10 * time.Second)
	for _, in := range all {
		for in.outstanding.Load() > 0 && in.cq.Len() < int(in.outstanding.Load()) || in.detached.Load() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d calls outstanding, %d in the completion ring, %d detached",
					in.outstanding.Load(), in.cq.Len(), in.detached.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
}

type hammerErr string

func (e hammerErr) Error() string { return string(e) }

func hammerRequest(in *Instance, rng *rand.Rand, req int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in.Begin(ctx)
	defer in.End()
	want := map[uint32][]byte{}
	n := 1 + rng.IntN(24)
	for id := uint32(1); id <= uint32(n); id++ {
		if rng.IntN(8) == 0 {
			in.Submit(0, idEcho, []byte("detached")) // may be refused when too many are queued
		}
		provider := uint32(idEcho)
		payload := binary.LittleEndian.AppendUint32(nil, uint32(req))
		payload = binary.LittleEndian.AppendUint32(payload, id)
		if rng.IntN(2) == 0 {
			provider = idAsync
			payload = append(binary.LittleEndian.AppendUint32(nil, uint32(rng.IntN(2))), payload...)
		}
		r := in.Submit(id, provider, payload)
		if r == CodeBusy.ret() { // earlier requests' calls still hold slots
			continue
		}
		if r < 0 {
			return hammerErr("Submit: " + Code(-r).String())
		}
		want[id] = payload
	}
	// Read about three quarters; abandon the rest, completed or not.
	read := len(want) * 3 / 4
	for read > 0 {
		id, size, more := in.Wait()
		if more < 0 {
			return hammerErr("Wait: " + Code(-more).String())
		}
		for {
			p, ok := want[id]
			if !ok {
				return hammerErr("completion for an event not submitted in this request")
			}
			provider := uint32(idEcho)
			if len(p) == 12 {
				provider = idAsync
			}
			buf := make([]byte, size)
			if r := in.Read(id, provider, buf); r != 0 {
				return hammerErr("Read: " + Code(-r).String())
			}
			if binary.LittleEndian.Uint32(buf) != 0 || !bytes.Equal(buf[4:], p) {
				return hammerErr("a completion carries another event's result")
			}
			delete(want, id)
			if read--; read == 0 {
				break
			}
			var r int32
			if id, size, r = in.Poll(); r < 0 {
				break
			}
		}
	}
	return nil
}
