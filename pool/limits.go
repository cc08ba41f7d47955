package pool

import (
	"fmt"
	"time"
)

// Limits bound what one function may use. The zero value of each field means its default.
type Limits struct {
	// MemoryBytes caps the guest's linear memory; growth past it fails inside the guest.
	// Default 128 MiB. Rounded down to whole 64 KiB pages.
	MemoryBytes uint64
	// Timeout is the wall-clock deadline of one request. Default 10s.
	Timeout time.Duration
	// MaxRequestBytes caps the request body. Default 8 MiB.
	MaxRequestBytes int
	// MaxResponseBytes caps the encoded response (headers and body). Default 8 MiB.
	MaxResponseBytes int
	// MaxInstances caps live instances of the function; each serves one request at a time.
	// Default 64.
	MaxInstances int
}

// Defaults of Limits.
const (
	DefaultMemoryBytes      = 128 << 20
	DefaultTimeout          = 10 * time.Second
	DefaultMaxRequestBytes  = 8 << 20
	DefaultMaxResponseBytes = 8 << 20
	DefaultMaxInstances     = 64

	// MaxMemoryBytes is the largest memory limit a function may ask for (4 GiB, wasm32's reach).
	MaxMemoryBytes = 1 << 32
	wasmPage       = 64 << 10
)

// WithDefaults returns l with zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	if l.MemoryBytes == 0 {
		l.MemoryBytes = DefaultMemoryBytes
	}
	if l.Timeout == 0 {
		l.Timeout = DefaultTimeout
	}
	if l.MaxRequestBytes == 0 {
		l.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if l.MaxResponseBytes == 0 {
		l.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if l.MaxInstances == 0 {
		l.MaxInstances = DefaultMaxInstances
	}
	return l
}

// Validate reports the first limit that is out of range.
func (l Limits) Validate() error {
	switch {
	case l.MemoryBytes != 0 && l.MemoryBytes < wasmPage:
		return fmt.Errorf("memory limit %d bytes is below one 64 KiB page", l.MemoryBytes)
	case l.MemoryBytes > MaxMemoryBytes:
		return fmt.Errorf("memory limit %d bytes exceeds the 4 GiB a wasm32 module can address", l.MemoryBytes)
	case l.Timeout < 0:
		return fmt.Errorf("timeout %v is negative", l.Timeout)
	case l.MaxRequestBytes < 0:
		return fmt.Errorf("request size limit %d is negative", l.MaxRequestBytes)
	case l.MaxResponseBytes < 0:
		return fmt.Errorf("response size limit %d is negative", l.MaxResponseBytes)
	case l.MaxInstances < 0:
		return fmt.Errorf("instance limit %d is negative", l.MaxInstances)
	}
	return nil
}

func (l Limits) memoryPages() uint32 { return uint32(l.MemoryBytes / wasmPage) }
