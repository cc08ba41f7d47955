package log

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/ring"
	"github.com/wispfn/wisp/ring/internal/vectors"
	"github.com/wispfn/wisp/ring/internal/wire"
)

// encode is the guest's encoding of a line (docs/hostcalls.md).
func encode(level uint8, msg string, kv ...string) []byte {
	b := wire.AppendU8(nil, level)
	b = wire.AppendStr(b, msg)
	b = wire.AppendU32(b, uint32(len(kv)/2))
	for _, s := range kv {
		b = wire.AppendStr(b, s)
	}
	return b
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want Line
		err  string
	}{
		{"plain", encode(1, "hello"), Line{Level: slog.LevelInfo, Message: "hello"}, ""},
		{"fields", encode(3, "boom", "k", "v", "n", "1"),
			Line{Level: slog.LevelError, Message: "boom", Fields: []Field{{"k", "v"}, {"n", "1"}}}, ""},
		{"bad level", encode(4, "x"), Line{}, "level 4"},
		{"truncated", encode(0, "hello")[:6], Line{}, "past the end"},
		{"huge count", append(encode(0, "x")[:9], 0xff, 0xff, 0xff, 0xff), Line{}, "field count"},
		{"trailing", append(encode(0, "x"), 0), Line{}, "trailing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, wire.ErrMalformed) {
					t.Fatalf("Decode error %v; want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decode = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(1, "hello", "k", "v"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		line, err := Decode(b) // must not panic
		if err != nil {
			return
		}
		kv := []string{}
		for _, f := range line.Fields {
			kv = append(kv, f.Key, f.Value)
		}
		if re := encode(uint8(line.Level/4+1), line.Message, kv...); string(re) != string(b) {
			t.Fatalf("decoded %+v re-encodes as %x; want %x", line, re, b)
		}
	})
}

func TestBacklogAndFollow(t *testing.T) {
	p := New(Config{Backlog: 3, Buffer: 8})
	for i := range 5 {
		p.Publish(Line{Function: "a", Message: fmt.Sprint(i)})
	}
	p.Publish(Line{Function: "b", Message: "other function"})
	ch, cancel := p.Subscribe("a")
	p.Publish(Line{Function: "a", Message: "live"})
	var got []string
	for range 4 {
		got = append(got, (<-ch).Message)
	}
	if want := []string{"2", "3", "4", "live"}; !reflect.DeepEqual(got, want) {
		t.Errorf("follower got %v; want %v (last 3 kept, then live)", got, want)
	}
	cancel()
	cancel() // idempotent
	if _, ok := <-ch; ok {
		t.Error("channel still open after cancel")
	}
	p.Publish(Line{Function: "a", Message: "after cancel"}) // must not panic on the closed channel
}

func TestSlowFollowerLosesLines(t *testing.T) {
	p := New(Config{Backlog: 1, Buffer: 2})
	ch, cancel := p.Subscribe("a")
	defer cancel()
	dropped := droppedTotal.Get()
	for i := range 10 {
		p.Publish(Line{Function: "a", Message: fmt.Sprint(i)})
	}
	if got := droppedTotal.Get() - dropped; got != 8 {
		t.Errorf("dropped %d lines; want 8", got)
	}
	if l := <-ch; l.Message != "0" {
		t.Errorf("first line %q; want 0", l.Message)
	}
}

func TestForget(t *testing.T) {
	p := New(Config{})
	p.Publish(Line{Function: "a", Message: "old"})
	p.Forget("a")
	ch, cancel := p.Subscribe("a")
	defer cancel()
	select {
	case l := <-ch:
		t.Errorf("got %q from a forgotten stream", l.Message)
	default:
	}
}

// TestHammer publishes from many goroutines while followers come and go.
func TestHammer(t *testing.T) {
	p := New(Config{Backlog: 16, Buffer: 64})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				p.Publish(Line{Function: fmt.Sprint("f", (w+i)%3), Message: "m"})
			}
		}()
	}
	stop := make(chan struct{})
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ch, cancel := p.Subscribe("f1")
				for range 10 {
					select {
					case <-ch:
					case <-time.After(time.Millisecond):
					}
				}
				cancel()
				p.Forget("f2")
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
}

// TestThroughRing submits lines through the ring as a guest does and follows them.
func TestThroughRing(t *testing.T) {
	p := New(Config{})
	h, err := ring.New(ring.Config{Providers: []ring.Provider{p}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fn, err := h.NewFunction(ring.FunctionConfig{Name: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := p.Subscribe("hello")
	defer cancel()
	in := fn.NewInstance()
	in.Begin(context.Background())
	defer in.End()
	for i := range 10 {
		if r := in.Submit(0, ring.ProviderLog, encode(1, fmt.Sprint("line ", i), "i", fmt.Sprint(i))); r < 0 {
			t.Fatalf("Submit = %v", ring.Code(-r))
		}
	}
	in.Submit(1, ring.ProviderLog, encode(2, "waited"))
	in.Submit(2, ring.ProviderLog, []byte{9})
	codes := map[uint32]ring.Code{}
	for len(codes) < 2 {
		id, size, r := in.Wait()
		if r < 0 {
			t.Fatalf("Wait = %v", ring.Code(-r))
		}
		buf := make([]byte, size)
		in.Read(id, ring.ProviderLog, buf)
		codes[id] = ring.Code(binary.LittleEndian.Uint32(buf))
	}
	if codes[1] != ring.CodeOK || codes[2] != ring.CodeInvalid {
		t.Errorf("completions %v; want 1 ok, 2 invalid", codes)
	}
	for i := range 11 {
		l := <-ch
		want := fmt.Sprint("line ", i)
		if i == 10 {
			want = "waited"
		}
		if l.Message != want || l.Function != "hello" || l.Stream != "log" || l.Time.IsZero() {
			t.Fatalf("line %d = %+v; want %q from hello", i, l, want)
		}
	}
}

func TestSDKVectors(t *testing.T) {
	vs := vectors.Load(t, ring.ProviderLog)
	for name, want := range map[string]Line{
		"log info": {Level: slog.LevelInfo, Message: "hello"},
		"log warn": {Level: slog.LevelWarn, Message: "careful", Fields: []Field{{"k", "v"}}},
		"log error with fields": {Level: slog.LevelError, Message: "boom", Fields: []Field{
			{"n", "42"}, {"ok", "true"}, {"f", "1.5"}, {"err", "e"}, {"s", "str"}, {"b", "x"}, {"nil", "<nil>"}}},
		"log debug with a bad key": {Level: slog.LevelDebug, Message: "odd", Fields: []Field{{"!BADKEY", "7"}, {"!BADKEY", "lonely"}}},
	} {
		got, err := Decode(vs[name])
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoded %+v, %v; want %+v", name, got, err, want)
		}
	}
}
