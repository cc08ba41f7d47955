package loadtest

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pacer wakes the open-loop pacer on a fixed period. On Linux it is a
// periodic timerfd read through the Go netpoller: epoll wakes on the timer
// within tens of microseconds, where time.Sleep and time.Ticker, once the
// process is idle, wake on the netpoller's millisecond timeout (up to 1 ms
// late, a delay that latency from the intended send time would count).
// The kernel keeps the period, so a wake costs one read and no re-arming.
type pacer struct {
	f    *os.File
	rc   syscall.RawConn // f's descriptor, held open while it is armed
	buf  [8]byte
	once sync.Once
}

func newPacer() (*pacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("cannot create timerfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cannot use timerfd: %w", err)
	}
	return &pacer{f: f, rc: rc}, nil
}

// start makes the timer expire every period from now on.
func (p *pacer) start(period time.Duration) error {
	ts := unix.NsecToTimespec(int64(max(period, time.Microsecond)))
	spec := unix.ItimerSpec{Value: ts, Interval: ts}
	var armErr error
	if err := p.rc.Control(func(fd uintptr) {
		armErr = unix.TimerfdSettime(int(fd), 0, &spec, nil)
	}); err != nil {
		return err // closed
	}
	if armErr != nil {
		return fmt.Errorf("cannot arm timerfd: %w", armErr)
	}
	return nil
}

// wait returns once the timer has expired since the last wait, or with an
// error once close was called.
func (p *pacer) wait() error {
	_, err := p.f.Read(p.buf[:])
	return err
}

// close interrupts a wait in progress and releases the timer; safe to call
// from any goroutine, more than once.
func (p *pacer) close() {
	p.once.Do(func() { _ = p.f.Close() })
}
