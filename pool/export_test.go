package pool

// CodeResident reports whether f's compiled code is in memory (not evicted to the disk tier).
func (f *Function) CodeResident() bool {
	f.code.mu.Lock()
	defer f.code.mu.Unlock()
	return f.code.compiled != nil
}
