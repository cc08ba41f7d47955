package cowmem

import (
	"os"

	"golang.org/x/sys/unix"
)

// NewImage returns an image with a copy of mem, which must be a whole number
// of wasm pages, held in an anonymous in-memory file (memfd). Pages of mem
// that are all zero take no memory in the image. If the kernel refuses memfd
// (seccomp, old kernel), NewImage falls back to NewImageIn(os.TempDir(), mem).
func NewImage(mem []byte) (*Image, error) {
	if err := checkSize(mem); err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("wisp-image", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return NewImageIn(os.TempDir(), mem)
	}
	img, err := newImage(os.NewFile(uintptr(fd), "memfd:wisp-image"), mem)
	if err != nil {
		return nil, err
	}
	// Sealed, the file can no longer change size (which would turn reads of
	// mapped pages into SIGBUS) nor content.
	_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL)
	img.sealed = err == nil
	return img, nil
}
