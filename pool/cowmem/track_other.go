//go:build unix && !linux

package cowmem

import "github.com/tetratelabs/wazero/experimental"

// Tracker tells which pages an instance touches; only Linux can (see track_linux.go).
type Tracker struct{}

// NewTracker returns nil: pages cannot be tracked here.
func NewTracker() *Tracker { return nil }

// Allocate is never called: there is no Tracker here.
func (t *Tracker) Allocate(_, _ uint64) experimental.LinearMemory { return nil }

// Restart is never called: there is no Tracker here.
func (t *Tracker) Restart(uint64) error { return nil }

// Touched is never called: there is no Tracker here.
func (t *Tracker) Touched() (read, written []uint32, err error) { return nil, nil, nil }

// Close is never called: there is no Tracker here.
func (t *Tracker) Close() {}
