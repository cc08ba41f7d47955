//go:build unix

package loadtest

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// busyRead reads into buf from conn without ever sleeping: it retries a non-blocking read
// until data, an error or the deadline. It spares a measurement the wake-up of an idle
// client (tens to hundreds of microseconds on a virtual machine), at the cost of a spinning
// CPU while a request is in flight.
func busyRead(conn net.Conn, buf []byte, deadline time.Time) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0, errors.New("busy poll: connection has no file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	for i := 0; ; i++ {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = syscall.Read(int(fd), buf)
			return true // never wait in the poller
		}); err != nil {
			return 0, err
		}
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
			if i%1024 == 0 && time.Now().After(deadline) {
				return 0, os.ErrDeadlineExceeded
			}
			continue
		case rerr != nil:
			return 0, rerr
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
