package cowmem

import "golang.org/x/sys/unix"

// populateWrite copies b's pages of a private mapping in one call; kernels before 5.14 lack
// MADV_POPULATE_WRITE and get touchWrite.
func populateWrite(b []byte) {
	if err := unix.Madvise(b, unix.MADV_POPULATE_WRITE); err != nil {
		touchWrite(b)
	}
}

// populateRead maps b's pages of a private file mapping in, shared with the file, in one call;
// it does nothing on kernels before 5.14 (the pages are mapped on first read, as usual).
func populateRead(b []byte) {
	_ = unix.Madvise(b, unix.MADV_POPULATE_READ)
}
