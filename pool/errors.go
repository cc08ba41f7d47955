package pool

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
)

// ErrInvalidModule wraps every reason a module is refused at compile time: it is not wasm, it is
// truncated, it lacks an export of the guest ABI, or it traps while initializing.
var ErrInvalidModule = errors.New("invalid module")

// ErrClosed is returned by Invoke on a function (or runtime) that has been closed.
var ErrClosed = errors.New("function closed")

// ErrBusy is returned when every instance of a function is busy and none freed up before the
// request's deadline. Raise Limits.MaxInstances to admit more concurrent requests.
var ErrBusy = errors.New("all instances busy")

// FaultKind says how a guest failed.
type FaultKind string

// The ways a guest fails. Each discards the instance it happened on.
const (
	FaultTrap        FaultKind = "trap"         // a wasm trap (unreachable, out-of-bounds access, ...)
	FaultPanic       FaultKind = "panic"        // the guest reported a failure (a recovered panic)
	FaultExit        FaultKind = "exit"         // the guest exited (os.Exit, an unrecovered panic)
	FaultTimeout     FaultKind = "timeout"      // the request's deadline passed while the guest ran
	FaultOOM         FaultKind = "oom"          // the guest ran out of memory under its limit
	FaultBadResponse FaultKind = "bad-response" // the response did not decode or exceeded its limit
)

// GuestError is a fault of the guest. ID is unique per fault; the same ID goes to the client
// (in the 5xx body) and to the log line that holds Detail, so an operator can join the two.
type GuestError struct {
	Function string
	Kind     FaultKind
	ID       string
	// Detail is what the guest or the engine said; it goes to the log, not to the client.
	Detail string
}

func (e *GuestError) Error() string {
	return fmt.Sprintf("function %q failed (%s), error id %s: %s", e.Function, e.Kind, e.ID, e.Detail)
}

// newErrorID returns a short random id for a fault. Only called on the failure path.
func newErrorID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
