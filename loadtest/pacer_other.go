//go:build !linux

package loadtest

import (
	"os"
	"sync"
	"time"
)

// pacer wakes the open-loop pacer on a fixed period, with time.Ticker's
// precision (a Linux build uses a timerfd).
type pacer struct {
	ticker *time.Ticker
	done   chan struct{}
	once   sync.Once
}

func newPacer() (*pacer, error) { return &pacer{done: make(chan struct{})}, nil }

func (p *pacer) start(period time.Duration) error {
	p.ticker = time.NewTicker(max(period, time.Microsecond))
	return nil
}

func (p *pacer) wait() error {
	select {
	case <-p.ticker.C:
		return nil
	case <-p.done:
		return os.ErrClosed
	}
}

func (p *pacer) close() {
	p.once.Do(func() {
		close(p.done)
		if p.ticker != nil {
			p.ticker.Stop()
		}
	})
}
