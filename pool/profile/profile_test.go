package profile

import (
	"bytes"
	"context"
	"testing"
	"time"

	pprof "github.com/google/pprof/profile"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// def is a function definition as wazero hands it to the factory; only Index and Name are read.
type def struct {
	api.FunctionDefinition
	index uint32
	name  string
}

func (d def) Index() uint32 { return d.index }
func (d def) Name() string  { return d.name }

func listeners(fs *Functions, names ...string) []experimental.FunctionListener {
	var ls []experimental.FunctionListener
	for i, n := range names {
		ls = append(ls, fs.NewFunctionListener(def{index: uint32(i + 3), name: n})) // 3 imports first
	}
	return ls
}

// spin keeps the thread busy for d.
func spin(d time.Duration) int {
	n := 0
	for start := time.Now(); time.Since(start) < d; n++ {
	}
	return n
}

func TestSamplerChargesTheStackOfEachTick(t *testing.T) {
	fs := NewFunctions()
	ls := listeners(fs, "root", "leaf", "")
	root, leaf, anon := ls[0], ls[1], ls[2]
	rec := NewRecorder(fs)
	s := rec.NewSampler()

	// Listeners without a sampler in the context do nothing.
	root.Before(context.Background(), nil, nil, nil, nil)
	root.After(context.Background(), nil, nil, nil)

	ctx := s.Begin(context.Background())
	root.Before(ctx, nil, nil, nil, nil)
	leaf.Before(ctx, nil, nil, nil, nil)
	spin(3 * Period) // no event for three periods: every tick is the leaf's
	leaf.After(ctx, nil, nil, nil)
	anon.Before(ctx, nil, nil, nil, nil)
	anon.Abort(ctx, nil, nil, nil) // a trap unwinds through Abort
	root.Abort(ctx, nil, nil, nil)
	s.End()
	if len(s.stack) != 0 {
		t.Fatalf("stack %v after the call; want empty", s.stack)
	}
	// A call that trapped without Abort leaves frames End clears.
	ctx = s.Begin(context.Background())
	root.Before(ctx, nil, nil, nil, nil)
	s.End()
	if len(s.stack) != 0 {
		t.Fatalf("stack %v after End; want empty", s.stack)
	}
	rec.Stop()
	ctx = s.Begin(context.Background()) // after Stop: not recorded
	root.Before(ctx, nil, nil, nil, nil)
	spin(2 * Period)
	root.After(ctx, nil, nil, nil)
	s.End()

	if rec.Calls() != 2 {
		t.Errorf("%d calls; want 2 (the third began after Stop)", rec.Calls())
	}
	var buf bytes.Buffer
	if err := rec.Write(&buf, "test"); err != nil {
		t.Fatal(err)
	}
	p, err := pprof.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var leafTicks, total int64
	for _, smp := range p.Sample {
		var names []string
		for _, l := range smp.Location {
			names = append(names, l.Line[0].Function.Name)
		}
		total += smp.Value[0]
		switch {
		case len(names) == 2 && names[0] == "leaf" && names[1] == "root":
			leafTicks += smp.Value[0]
			if smp.Value[1] <= 0 {
				t.Errorf("the leaf's samples carry %d ns of %s time; want some", smp.Value[1], ClockName)
			}
		case len(names) == 1 && names[0] == "root":
		default:
			t.Errorf("sample of stack %q (leaf first); want [leaf root] or [root]", names)
		}
	}
	if leafTicks < 3 {
		t.Errorf("%d ticks charged to [leaf root]; want at least 3 for three periods without an event", leafTicks)
	}
	if total != int64(rec.Samples()) || p.Period != int64(Period) || p.DefaultSampleType != ClockName {
		t.Errorf("samples add up to %d, recorder says %d; period %d, default %q", total, rec.Samples(), p.Period, p.DefaultSampleType)
	}
	if got := fs.name(5); got != "wasm-function[5]" {
		t.Errorf("a function without a name is named %q; want wasm-function[5]", got)
	}
}

// BenchmarkListener is the profiler's own cost per wasm call while a profile runs: Before and
// After of a call made between sampled events (wazero's exit from native code to reach them
// is not included). It allocates nothing.
func BenchmarkListener(b *testing.B) {
	fs := NewFunctions()
	ls := listeners(fs, "root", "leaf")
	s := NewRecorder(fs).NewSampler()
	ctx := s.Begin(context.Background())
	defer s.End()
	ls[0].Before(ctx, nil, nil, nil, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ls[1].Before(ctx, nil, nil, nil, nil)
		ls[1].After(ctx, nil, nil, nil)
	}
	b.StopTimer()
	ls[0].After(ctx, nil, nil, nil)
	if len(s.stack) != 0 {
		b.Fatalf("stack %v; want empty", s.stack)
	}
}
