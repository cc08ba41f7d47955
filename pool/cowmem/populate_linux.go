package cowmem

import "golang.org/x/sys/unix"

// populateWrite copies b's pages of a private mapping in one call; kernels before 5.14 lack
// MADV_POPULATE_WRITE and get touchWrite.
func populateWrite(b []byte) {
	if err := unix.Madvise(b, unix.MADV_POPULATE_WRITE); err != nil {
		touchWrite(b)
	}
}
