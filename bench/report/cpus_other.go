//go:build !linux

package report

// usableCPUs is unknown here: nothing is pinned (taskset is Linux's).
func usableCPUs() []int { return nil }
