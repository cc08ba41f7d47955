package profile

import (
	"syscall"
	"unsafe"
)

// ClockName names the clock samples charge: "cpu", the CPU time of the thread running the
// guest (CLOCK_THREAD_CPUTIME_ID), so time the thread was descheduled or blocked does not count.
const ClockName = "cpu"

const clockThreadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID

// threadCPU returns the calling thread's CPU time in nanoseconds. The vDSO does not serve this
// clock: it is a system call (~0.1-0.5 µs), made once per sample and twice per call.
func threadCPU() int64 {
	var ts syscall.Timespec
	_, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0 // no clock: samples carry no time rather than a wrong one
	}
	return ts.Nano()
}
