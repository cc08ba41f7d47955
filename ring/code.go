package ring

import "strconv"

// Code is the result code of a hostcall: an import returns it negated (a negative i32), and a
// completion's payload starts with it (docs/hostcalls.md). CodeOK is zero.
type Code uint32

// Codes an import returns, negated, when it refuses a call. The guest's state is unchanged by a
// refused call unless the code says otherwise.
const (
	CodeOK              Code = 0
	CodeBadAddress      Code = 1  // a pointer and length do not lie inside guest memory
	CodeUnknownProvider Code = 2  // no provider has this id
	CodeUnknownEvent    Code = 3  // no event of this request has this id
	CodeDuplicateEvent  Code = 4  // an event with this id is already in flight or unread
	CodeTooLarge        Code = 5  // a payload exceeds the provider's or the function's limit
	CodeBusy            Code = 6  // too many events in flight, or the provider's ring is full: wait, then retry
	CodeLimit           Code = 7  // the request used up its hostcall quota
	CodeNotReady        Code = 8  // poll: no completion is ready; read: the event has not completed yet
	CodeNoRequest       Code = 9  // hostcalls are refused outside a request (initialization, warm-up)
	CodeNothingPending  Code = 10 // wait: no event is in flight, so waiting would never end
	CodeCanceled        Code = 11 // the request's deadline passed, or it was canceled, while waiting
	CodeInvalid         Code = 12 // a malformed payload, or read with the wrong provider id
)

// Codes a provider puts at the start of a failed completion, followed by a message and an
// error id (which also appears in the host's log line about the failure).
const (
	CodeDenied      Code = 13 // refused by policy: fetch allow-list or address range, rpc tenancy
	CodeNotFound    Code = 14 // the named thing does not exist (rpc: no such function)
	CodeUnavailable Code = 15 // the backend failed (KV store, network, callee)
	CodeTimeout     Code = 16 // the operation ran out of time
	CodeDepth       Code = 17 // rpc: the call-depth limit was reached
	CodeClosed      Code = 18 // the host is shutting down
)

var codeNames = [...]string{
	CodeOK:              "ok",
	CodeBadAddress:      "bad-address",
	CodeUnknownProvider: "unknown-provider",
	CodeUnknownEvent:    "unknown-event",
	CodeDuplicateEvent:  "duplicate-event",
	CodeTooLarge:        "too-large",
	CodeBusy:            "busy",
	CodeLimit:           "limit",
	CodeNotReady:        "not-ready",
	CodeNoRequest:       "no-request",
	CodeNothingPending:  "nothing-pending",
	CodeCanceled:        "canceled",
	CodeInvalid:         "invalid",
	CodeDenied:          "denied",
	CodeNotFound:        "not-found",
	CodeUnavailable:     "unavailable",
	CodeTimeout:         "timeout",
	CodeDepth:           "depth",
	CodeClosed:          "closed",
}

// String returns the code's name as docs/hostcalls.md spells it ("busy", "denied", ...).
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "code-" + strconv.FormatUint(uint64(c), 10)
}

// ret is the i32 an import returns for c.
func (c Code) ret() int32 { return -int32(c) }
