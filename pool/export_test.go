package pool

import "time"

// CodeResident reports whether f's compiled code is in memory (not evicted to the disk tier).
func (f *Function) CodeResident() bool {
	f.code.mu.Lock()
	defer f.code.mu.Unlock()
	return f.code.compiled != nil
}

// RequestBuffer returns the request buffer every instance of f starts with (0, 0 if none).
func (f *Function) RequestBuffer() (ptr, size uint32) { return f.code.reqBuf, f.code.reqBufSize }

// SharesCode reports whether a and b run the same code (one compiled module, one image).
func SharesCode(a, b *Function) bool { return a.code == b.code }

// CodeClosed reports whether f's code has been closed (no compiled module, no image).
func (f *Function) CodeClosed() bool {
	f.code.mu.Lock()
	defer f.code.mu.Unlock()
	return f.code.compiled == nil && f.code.image == nil && f.code.retired
}

// SharedCodes returns how many distinct codes r's functions use.
func (r *Runtime) SharedCodes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.codes)
}

// SetInterpretBudget makes pre-initialization give up on the interpreter after d, until the
// test ends.
func SetInterpretBudget(t interface{ Cleanup(func()) }, d time.Duration) {
	prev := interpretBudget
	interpretBudget = func(int) time.Duration { return d }
	t.Cleanup(func() { interpretBudget = prev })
}

// FirstWrites returns the pages of f's snapshot image its staged memories copy ahead.
func (f *Function) FirstWrites() []uint32 { return f.code.firstWrites }

// FirstReads returns the pages of f's snapshot image its staged memories map in ahead.
func (f *Function) FirstReads() []uint32 { return f.code.firstReads }

// StagedReady reports whether a memory is staged for f's next cold start.
func (f *Function) StagedReady() bool { return f.staged != nil && f.staged.Ready() }

// ProfileRunning reports whether a profile of f is taking requests.
func (f *Function) ProfileRunning() bool { return f.prof.Load() != nil }
