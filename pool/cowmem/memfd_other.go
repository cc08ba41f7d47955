//go:build unix && !linux

package cowmem

import "os"

// NewImage returns an image with a copy of mem, which must be a whole number
// of wasm pages. Without memfd outside Linux, it is NewImageIn(os.TempDir(), mem).
func NewImage(mem []byte) (*Image, error) {
	return NewImageIn(os.TempDir(), mem)
}
