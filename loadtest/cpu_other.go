//go:build !unix

package loadtest

import "time"

// cpuTimes is not measured on this system.
func cpuTimes() (user, system time.Duration) { return 0, 0 }
