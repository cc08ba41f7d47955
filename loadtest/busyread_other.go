//go:build !unix

package loadtest

import (
	"errors"
	"net"
	"time"
)

func busyRead(net.Conn, []byte, time.Time) (int, error) {
	return 0, errors.New("busy poll is only available on unix systems")
}
