//go:build !linux

package loadtest

import "errors"

// epollAvailable reports whether ClientEpoll can run here.
const epollAvailable = false

// loop stands in for ClientEpoll's event loop, which needs Linux.
type loop struct{}

func newLoops(*run) ([]*loop, error) {
	return nil, errors.New("cannot use the epoll client: it needs Linux (use --client netconn)")
}

func (*loop) run() error { return nil }
func (*loop) wakeUp()    {}
func (*loop) close()     {}
