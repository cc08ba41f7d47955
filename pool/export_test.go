package pool

// CodeResident reports whether f's compiled code is in memory (not evicted to the disk tier).
func (f *Function) CodeResident() bool {
	f.code.mu.Lock()
	defer f.code.mu.Unlock()
	return f.code.compiled != nil
}

// RequestBuffer returns the request buffer every instance of f starts with (0, 0 if none).
func (f *Function) RequestBuffer() (ptr, size uint32) { return f.code.reqBuf, f.code.reqBufSize }
