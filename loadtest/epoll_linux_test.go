package loadtest

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// TestEpollWaits runs ClientEpoll's other ways of waiting: the timerfd
// pacing of kernels without epoll_pwait2, and more Ps than event loops.
func TestEpollWaits(t *testing.T) {
	url := startHertz(t, hello)
	check := func(t *testing.T) {
		for _, rate := range []float64{0, 2000} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := Run(ctx, Config{URL: url, Rate: rate, Connections: 4, Duration: 500 * time.Millisecond, Client: ClientEpoll})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests == 0 || res.Errors.Total() != 0 {
				t.Fatalf("rate %v: got %d requests, errors %+v", rate, res.Requests, res.Errors)
			}
			if got := res.Requests + res.Unsent; rate > 0 && (got < 999 || got > 1001) {
				t.Fatalf("got %d requests + %d unsent; want 1000 arrivals", res.Requests, res.Unsent)
			}
		}
		// A wait must end when the run is cancelled.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		began := time.Now()
		if _, err := Run(ctx, Config{URL: url, Rate: 100, Connections: 2, Duration: time.Minute, Client: ClientEpoll}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got error %v; want %v", err, context.DeadlineExceeded)
		}
		if took := time.Since(began); took > 2*time.Second {
			t.Fatalf("cancelled run took %v", took)
		}
	}
	t.Run("timerfd", func(t *testing.T) {
		usePwait2 = false
		defer func() { usePwait2 = true }()
		check(t)
	})
	t.Run("spare P", func(t *testing.T) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.NumCPU() + 1))
		check(t)
	})
}
