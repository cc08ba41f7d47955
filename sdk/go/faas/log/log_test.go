//go:build !wasip1

package log

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/wispfn/wisp/sdk/go/internal/hostcall"
	"github.com/wispfn/wisp/sdk/go/internal/hostcall/fakehost"
)

type stringer struct{}

func (stringer) String() string { return "str" }

func accept(t *testing.T) *fakehost.Host {
	return fakehost.New(t, map[uint32]fakehost.Handler{
		hostcall.ProviderLog: func(p []byte) ([]byte, hostcall.Code, string) {
			if len(p) > 100 {
				return nil, hostcall.CodeTooLarge, "line too long"
			}
			return nil, hostcall.CodeOK, ""
		},
	})
}

func TestEncoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func()
	}{
		{"log info", func() { Info("hello") }},
		{"log error with fields", func() {
			Error("boom", "n", 42, "ok", true, "f", 1.5, "err", errors.New("e"), "s", stringer{}, "b", []byte("x"), "nil", nil)
		}},
		{"log debug with a bad key", func() { Debug("odd", 7, "lonely") }},
		{"log warn", func() { Warn("careful", "k", "v") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := accept(t)
			tc.log()
			if len(h.Submitted) != 1 || h.Detached != 1 {
				t.Fatalf("submitted %d lines, %d detached; want one detached", len(h.Submitted), h.Detached)
			}
			fakehost.CheckVector(t, tc.name, hostcall.ProviderLog, h.Submitted[0][1:])
		})
	}
}

func TestLogWaits(t *testing.T) {
	h := accept(t)
	if err := Log(LevelInfo, "waited"); err != nil {
		t.Fatal(err)
	}
	if h.Detached != 0 || h.Waits != 1 {
		t.Errorf("detached %d waits %d; want a waited submission", h.Detached, h.Waits)
	}
	f1 := Start(LevelWarn, "a")
	f2 := Start(LevelWarn, strings.Repeat("x", 200))
	if err := f1.Wait(); err != nil {
		t.Errorf("first future: %v", err)
	}
	if err := f2.Wait(); !errors.Is(err, hostcall.ErrTooLarge) {
		t.Errorf("long line: %v; want too large", err)
	}
}

func TestOutsideWisp(t *testing.T) {
	hostcall.Host = nil
	r, w, _ := os.Pipe()
	stderr := os.Stderr
	os.Stderr = w
	Info("local run", "k", "v w")
	os.Stderr = stderr
	w.Close()
	out, _ := io.ReadAll(r)
	if string(out) != "INFO local run k=\"v w\"\n" {
		t.Errorf("stderr %q", out)
	}
	if err := Log(LevelInfo, "x"); !errors.Is(err, hostcall.ErrNoHost) {
		t.Errorf("Log outside Wisp: %v; want ErrNoHost", err)
	}
}

func TestLevels(t *testing.T) {
	for l, want := range map[Level]uint8{-8: 0, LevelDebug: 0, LevelInfo: 1, 2: 1, LevelWarn: 2, LevelError: 3, 12: 3} {
		if got := l.wire(); got != want {
			t.Errorf("Level(%d).wire() = %d; want %d", l, got, want)
		}
	}
}
