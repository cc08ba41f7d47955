// Package log writes structured lines (level, message, key-value fields) to the function's log
// stream, which `wisp logs -f NAME` follows.
//
// Debug, Info, Warn and Error hand the line to the host and return without waiting: when the
// host has too many of the instance's lines queued, they wait for the queue instead of dropping
// the line. Log waits until the host has taken the line into the stream; Start returns a Future
// to wait on later. Outside Wisp (GOOS other than wasip1, as in a unit test of a handler) Debug,
// Info, Warn and Error print the line to stderr, and Log and Start fail with an error.
//
// Fields are given as in log/slog: alternating keys (strings) and values, formatted with
// fmt.Sprint unless they are strings, numbers, booleans, errors or fmt.Stringers.
package log

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/wispfn/wisp/sdk/go/internal/hostcall"
)

// Level is a line's severity, with log/slog's values.
type Level int

// Levels.
const (
	LevelDebug Level = -4
	LevelInfo  Level = 0
	LevelWarn  Level = 4
	LevelError Level = 8
)

// String returns "DEBUG", "INFO", "WARN" or "ERROR".
func (l Level) String() string {
	switch {
	case l < LevelInfo:
		return "DEBUG"
	case l < LevelWarn:
		return "INFO"
	case l < LevelError:
		return "WARN"
	}
	return "ERROR"
}

// wire returns the level's encoding: 0 debug, 1 info, 2 warn, 3 error.
func (l Level) wire() uint8 {
	switch {
	case l < LevelInfo:
		return 0
	case l < LevelWarn:
		return 1
	case l < LevelError:
		return 2
	}
	return 3
}

// Debug writes a debug line without waiting.
func Debug(msg string, args ...any) { send(LevelDebug, msg, args) }

// Info writes an info line without waiting.
func Info(msg string, args ...any) { send(LevelInfo, msg, args) }

// Warn writes a warning line without waiting.
func Warn(msg string, args ...any) { send(LevelWarn, msg, args) }

// Error writes an error line without waiting.
func Error(msg string, args ...any) { send(LevelError, msg, args) }

// Log writes a line and waits until the host has taken it into the function's log stream.
func Log(level Level, msg string, args ...any) error {
	buf = encode(buf[:0], level, msg, args)
	_, err := hostcall.Do(hostcall.ProviderLog, buf)
	return err
}

// Future is a line on its way to the log stream.
type Future struct {
	c *hostcall.Call
}

// Start writes a line and returns without waiting for the host to take it.
func Start(level Level, msg string, args ...any) *Future {
	buf = encode(buf[:0], level, msg, args)
	return &Future{c: hostcall.Start(hostcall.ProviderLog, buf)}
}

// Wait blocks until the host has taken the line, and returns why it did not if it failed
// (the line was too long, or the request used up its hostcalls).
func (f *Future) Wait() error {
	_, err := f.c.Wait()
	return err
}

// buf is reused for every line: the host copies a submission before Start or Send returns.
var buf []byte

func send(level Level, msg string, args []any) {
	buf = encode(buf[:0], level, msg, args)
	err := hostcall.Send(hostcall.ProviderLog, buf)
	if err == hostcall.ErrBusy {
		// Too many of our lines are queued: wait behind them rather than drop this one.
		_, err = hostcall.Do(hostcall.ProviderLog, buf)
	}
	switch {
	case err == nil:
	case err == hostcall.ErrNoHost:
		os.Stderr.WriteString(text(level, msg, args))
	default:
		os.Stderr.WriteString("wisp log: cannot write line: " + err.Error() + ": " + text(level, msg, args))
	}
}

// encode appends the log submission of docs/hostcalls.md: u8 level, str message, u32 count,
// count × (str key, str value).
func encode(dst []byte, level Level, msg string, args []any) []byte {
	dst = hostcall.AppendU8(dst, level.wire())
	dst = hostcall.AppendString(dst, msg)
	at := len(dst)
	dst = hostcall.AppendU32(dst, 0)
	n := 0
	for len(args) > 0 {
		var key string
		key, args = next(args)
		dst = hostcall.AppendString(dst, key)
		dst = hostcall.AppendString(dst, format(args[0]))
		args = args[1:]
		n++
	}
	dst[at], dst[at+1], dst[at+2], dst[at+3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	return dst
}

// next returns the key at the start of args and the args from its value on. As in log/slog, a
// value without a string key before it gets the key "!BADKEY".
func next(args []any) (string, []any) {
	if k, ok := args[0].(string); ok && len(args) > 1 {
		return k, args[1:]
	}
	return "!BADKEY", args
}

func format(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case uint:
		return strconv.FormatUint(uint64(v), 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case uint32:
		return strconv.FormatUint(uint64(v), 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case []byte:
		return string(v)
	case error:
		return v.Error()
	case fmt.Stringer:
		return v.String()
	case nil:
		return "<nil>"
	}
	return fmt.Sprint(v)
}

// text formats a line for stderr: LEVEL message key=value ...
func text(level Level, msg string, args []any) string {
	var b strings.Builder
	b.WriteString(level.String())
	b.WriteByte(' ')
	b.WriteString(msg)
	for len(args) > 0 {
		var key string
		key, args = next(args)
		b.WriteByte(' ')
		b.WriteString(key)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(format(args[0])))
		args = args[1:]
	}
	b.WriteByte('\n')
	return b.String()
}
