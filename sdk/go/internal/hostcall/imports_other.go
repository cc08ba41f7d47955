//go:build !wasip1

package hostcall

// Host plays the host's four imports outside GOOS=wasip1, where there are none: tests of the SDK
// set it to a fake. While it is nil, every hostcall fails with ErrNoHost.
var Host interface {
	Submit(eventID, provider uint32, payload []byte) int32
	Poll() (eventID, size uint32, r int32)
	Wait() (eventID, size uint32, r int32)
	Read(eventID, provider uint32, buf []byte) int32
}

func submit(id, provider uint32, payload []byte) int32 {
	if Host == nil {
		return -int32(codeNoHost)
	}
	return Host.Submit(id, provider, payload)
}

func poll() (uint32, uint32, int32) {
	if Host == nil {
		return 0, 0, -int32(codeNoHost)
	}
	return Host.Poll()
}

func wait() (uint32, uint32, int32) {
	if Host == nil {
		return 0, 0, -int32(codeNoHost)
	}
	return Host.Wait()
}

func read(id, provider uint32, buf []byte) int32 {
	if Host == nil {
		return -int32(codeNoHost)
	}
	return Host.Read(id, provider, buf)
}

// Reset forgets every call in flight, for tests that replace Host.
func Reset() {
	clear(pending)
	nextID, seq = 0, -1
	blocking, inBlocking = Call{}, false
}
