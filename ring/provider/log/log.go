// Package log is the ring's log provider: it turns the structured lines guests submit (level,
// message, fields) into per-function log streams, which live followers (`wisp logs -f NAME`)
// subscribe to. The pool publishes the guests' stdout and stderr lines into the same streams.
//
// A stream keeps its last lines for new subscribers and fans every line out to its subscribers
// through bounded buffers: a follower that falls behind loses lines (counted in
// wisp_ring_log_dropped_total), never slows a guest.
package log

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/wispfn/wisp/ring"
	"github.com/wispfn/wisp/ring/internal/wire"
)

// Line is one line of a function's log stream. Lines handed to subscribers are shared: treat
// them as read-only.
type Line struct {
	Time     time.Time
	Function string
	// Stream is where the line came from: "log" for the log hostcall, "stdout" or "stderr" for
	// the guest's output, "host" for the host's own lines about the function (faults).
	Stream  string
	Level   slog.Level
	Message string
	Fields  []Field
	// ErrorID joins the line with an error a client or a guest received; empty if none.
	ErrorID string
}

// Field is one key and value of a structured line.
type Field struct {
	Key, Value string
}

// Levels on the wire (docs/hostcalls.md), in order: debug, info, warn, error.
var wireLevels = [...]slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}

// Config configures the provider. Zero fields take their defaults.
type Config struct {
	// Backlog is how many recent lines each function's stream keeps for new subscribers.
	// Default 100.
	Backlog int
	// Buffer is each subscriber's channel capacity. Default 256.
	Buffer int
	// MaxLine caps a submitted line's encoding in bytes. Default 16 KiB.
	MaxLine int
	// Sink, if set, receives every line too (at the line's level, with function and fields).
	Sink *slog.Logger
}

// Defaults of Config.
const (
	DefaultBacklog = 100
	DefaultBuffer  = 256
	DefaultMaxLine = 16 << 10
)

// Provider is the log provider. Serve is called by the ring; Publish, Subscribe and Forget are
// safe for concurrent use.
type Provider struct {
	cfg Config

	mu      sync.RWMutex
	streams map[string]*stream

	lines []pending // Serve's scratch; Serve runs on one dispatcher goroutine
}

type pending struct {
	call *ring.Call
	line Line
}

var (
	linesTotal   = metrics.GetOrCreateCounter(`wisp_ring_log_lines_total`)
	droppedTotal = metrics.GetOrCreateCounter(`wisp_ring_log_dropped_total`)
)

// New returns a log provider with cfg's defaults applied. It is usable (Publish, Subscribe)
// before the ring starts it.
func New(cfg Config) *Provider {
	if cfg.Backlog == 0 {
		cfg.Backlog = DefaultBacklog
	}
	if cfg.Buffer == 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.MaxLine == 0 {
		cfg.MaxLine = DefaultMaxLine
	}
	return &Provider{cfg: cfg, streams: map[string]*stream{}}
}

// Validate checks the configuration.
func (p *Provider) Validate() error {
	if p.cfg.Backlog < 0 || p.cfg.Buffer < 1 || p.cfg.MaxLine < 16 {
		return fmt.Errorf("backlog %d, buffer %d, max line %d: want backlog >= 0, buffer >= 1, max line >= 16",
			p.cfg.Backlog, p.cfg.Buffer, p.cfg.MaxLine)
	}
	return nil
}

// Info describes the provider to the ring: one worker, so each function's lines keep their order.
func (p *Provider) Info() ring.ProviderInfo {
	return ring.ProviderInfo{ID: ring.ProviderLog, Name: "log", MaxPayload: p.cfg.MaxLine, Workers: 1}
}

// Serve decodes a batch of lines, publishes them (one lock per stream run), then completes them.
func (p *Provider) Serve(batch []*ring.Call) {
	now := time.Now()
	lines := p.lines[:0]
	for _, c := range batch {
		line, err := Decode(c.Payload())
		if err != nil {
			c.Fail(ring.CodeInvalid, err)
			continue
		}
		line.Time, line.Function, line.Stream = now, c.Function().Name(), "log"
		lines = append(lines, pending{call: c, line: line})
	}
	p.publish(len(lines), func(i int) *Line { return &lines[i].line })
	for i := range lines {
		lines[i].call.Complete(lines[i].call.Result())
		lines[i] = pending{}
	}
	p.lines = lines[:0]
}

// Decode decodes a log submission (docs/hostcalls.md). Strings are copies.
func Decode(b []byte) (Line, error) {
	d := wire.NewDecoder(b)
	lvl := d.U8("level")
	if d.Err() == nil && int(lvl) >= len(wireLevels) {
		d.Fail(fmt.Sprintf("level %d is not 0..3", lvl))
	}
	line := Line{Level: wireLevels[min(int(lvl), len(wireLevels)-1)], Message: d.Str("message")}
	if n := d.Count("field count", 8); n > 0 {
		line.Fields = make([]Field, n)
		for i := range line.Fields {
			line.Fields[i] = Field{Key: d.Str("field key"), Value: d.Str("field value")}
		}
	}
	if err := d.End(); err != nil {
		return Line{}, fmt.Errorf("cannot decode log line: %w", err)
	}
	return line, nil
}

// Publish appends lines to their functions' streams, as if a guest had logged them. The pool
// uses it for stdout and stderr and for its own lines about a function.
func (p *Provider) Publish(lines ...Line) {
	p.publish(len(lines), func(i int) *Line { return &lines[i] })
}

func (p *Provider) publish(n int, line func(int) *Line) {
	var s *stream
	for i := 0; i < n; i++ {
		l := line(i)
		if s == nil || s.fn != l.Function {
			if s != nil {
				s.mu.Unlock()
			}
			s = p.stream(l.Function)
			s.mu.Lock()
		}
		s.append(l)
	}
	if s != nil {
		s.mu.Unlock()
	}
	linesTotal.Add(n)
	if p.cfg.Sink != nil {
		for i := 0; i < n; i++ {
			l := line(i)
			attrs := make([]slog.Attr, 0, len(l.Fields)+3)
			attrs = append(attrs, slog.String("function", l.Function), slog.String("stream", l.Stream))
			if l.ErrorID != "" {
				attrs = append(attrs, slog.String("error_id", l.ErrorID))
			}
			for _, f := range l.Fields {
				attrs = append(attrs, slog.String(f.Key, f.Value))
			}
			p.cfg.Sink.LogAttrs(context.Background(), l.Level, l.Message, attrs...)
		}
	}
}

// Subscribe follows fn's stream: the returned channel first receives the lines the stream kept
// (up to the buffer size), then every new line. Call cancel to stop; it closes the channel.
// A subscriber that does not keep up loses lines.
func (p *Provider) Subscribe(fn string) (<-chan Line, func()) {
	s := p.stream(fn)
	sub := &subscriber{ch: make(chan Line, p.cfg.Buffer)}
	s.mu.Lock()
	for i := max(0, s.n-p.cfg.Buffer); i < s.n; i++ {
		sub.ch <- s.backlog[(s.start+i)%len(s.backlog)]
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs, sub)
			close(sub.ch)
			s.mu.Unlock()
		})
	}
}

// Forget drops fn's kept lines once no one follows it (call it when a function is removed).
// Later lines start a new stream.
func (p *Provider) Forget(fn string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.streams[fn]; ok {
		s.mu.Lock()
		idle := len(s.subs) == 0
		s.mu.Unlock()
		if idle {
			delete(p.streams, fn)
		}
	}
}

func (p *Provider) stream(fn string) *stream {
	p.mu.RLock()
	s, ok := p.streams[fn]
	p.mu.RUnlock()
	if ok {
		return s
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.streams[fn]; ok {
		return s
	}
	s = &stream{fn: fn, backlog: make([]Line, max(p.cfg.Backlog, 1)), keep: p.cfg.Backlog, subs: map[*subscriber]struct{}{}}
	p.streams[fn] = s
	return s
}

// stream is one function's log stream.
type stream struct {
	fn string

	mu       sync.Mutex
	backlog  []Line // a ring of the last keep lines
	keep     int
	start, n int
	subs     map[*subscriber]struct{}
}

type subscriber struct {
	ch chan Line
}

// append keeps l and sends it to every subscriber that has room. s.mu is held.
func (s *stream) append(l *Line) {
	if s.keep > 0 {
		if s.n < s.keep {
			s.backlog[(s.start+s.n)%len(s.backlog)] = *l
			s.n++
		} else {
			s.backlog[s.start] = *l
			s.start = (s.start + 1) % len(s.backlog)
		}
	}
	for sub := range s.subs {
		select {
		case sub.ch <- *l:
		default:
			droppedTotal.Inc()
		}
	}
}
