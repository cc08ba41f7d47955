package pool

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
)

// OutputLine is one line of a function's output (Config.Output).
type OutputLine struct {
	Function string
	// Stream is "stdout" or "stderr" for the guest's output, "host" for the runtime's lines
	// about the function.
	Stream  string
	Level   slog.Level
	Message string
	ErrorID string // of a fault; "" otherwise
}

// lineLogger turns a function's stdout and stderr into log lines, and remembers the last few
// stderr lines so a fault report can show what the guest said just before it died.
type lineLogger struct {
	log  *slog.Logger
	out  func(OutputLine) // nil: lines go to log
	name string
	// muted keeps lines out of the log while the runtime probes a snapshot (prepare).
	muted atomic.Bool

	mu    sync.Mutex
	last  [4]string
	n     int
	fatal string // first "fatal error:" or "panic:" line since the last tail
}

func newLineLogger(log *slog.Logger, out func(OutputLine), name string) *lineLogger {
	return &lineLogger{log: log, out: out, name: name}
}

func (l *lineLogger) stream(name string) io.Writer { return &lineWriter{l: l, stream: name} }

func (l *lineLogger) line(stream, s string) {
	switch {
	case l.muted.Load(): // kept below for a fault's detail all the same
	case l.out != nil:
		level := slog.LevelInfo
		if stream == "stderr" {
			level = slog.LevelWarn
		}
		l.out(OutputLine{Function: l.name, Stream: stream, Level: level, Message: s})
	default:
		l.log.Info("guest output", "function", l.name, "stream", stream, "line", s)
	}
	if stream == "stderr" {
		l.mu.Lock()
		l.last[l.n%len(l.last)] = s
		l.n++
		if l.fatal == "" && (strings.HasPrefix(s, "fatal error:") || strings.HasPrefix(s, "panic:")) {
			l.fatal = s
		}
		l.mu.Unlock()
	}
}

// tail returns the stderr lines written since the last tail (at most a few), formatted for a
// fault detail ("" if none). Instances of a function share the stream, so under concurrency a
// line may come from another instance: it is a hint for the operator, not evidence.
func (l *lineLogger) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == 0 {
		return ""
	}
	var lines []string
	if l.fatal != "" {
		lines = append(lines, l.fatal, "...")
	}
	for i := max(0, l.n-len(l.last)); i < l.n; i++ {
		lines = append(lines, l.last[i%len(l.last)])
	}
	l.n, l.fatal = 0, ""
	return "; stderr: " + strings.Join(lines, " | ")
}

// lineWriter splits one instance stream into lines. Partial lines are held until their newline,
// up to maxLine bytes.
type lineWriter struct {
	l      *lineLogger
	stream string
	mu     sync.Mutex
	buf    []byte
}

const maxLine = 4096

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLine {
				w.l.line(w.stream, string(w.buf))
				w.buf = w.buf[:0]
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.l.line(w.stream, string(w.buf))
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}
