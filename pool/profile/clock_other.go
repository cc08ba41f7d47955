//go:build !linux

package profile

// ClockName names the clock samples charge: "wall", the time the guest ran, blocked hostcalls
// and descheduled time included, where no per-thread CPU clock is read.
const ClockName = "wall"

func threadCPU() int64 { return nanotime() }
