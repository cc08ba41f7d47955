package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	hznetpoll "github.com/cloudwego/hertz/pkg/network/netpoll"
	"github.com/cloudwego/hertz/pkg/protocol/http1/resp"

	ringlog "github.com/wispfn/wisp/ring/provider/log"
)

// LogSource is a per-function log stream: recent lines first, then live ones
// (ring/provider/log.Provider).
type LogSource interface {
	Subscribe(fn string) (<-chan ringlog.Line, func())
}

// serveLogs writes a function's log as text lines: GET /_wisp/logs/NAME returns the recent
// lines; with ?follow=1 it keeps the response open and streams new lines as they come.
func (s *Server) serveLogs(_ context.Context, rc *app.RequestContext) {
	follow := string(rc.QueryArgs().Peek("follow"))
	s.streamLogs(rc, rc.Param("name"), follow == "1" || follow == "true")
}

// streamLogs answers the recent lines of a function's log, and with follow keeps the
// response open and streams new lines as they come.
func (s *Server) streamLogs(rc *app.RequestContext, name string, follow bool) {
	if s.cfg.Logs == nil {
		writeError(rc, errorf(http.StatusNotImplemented, "this node keeps no function logs"))
		return
	}
	if s.cat.table().byName[name] == nil {
		writeError(rc, errorf(http.StatusNotFound, "no function named %q", name))
		return
	}
	lines, cancel := s.cfg.Logs.Subscribe(name)
	rc.Response.Header.SetContentType("text/plain; charset=utf-8")
	if !follow {
		defer cancel()
		var b strings.Builder
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					rc.Response.SetBodyString(b.String())
					return
				}
				b.WriteString(formatLine(l))
			case <-time.After(50 * time.Millisecond): // the backlog is delivered at once
				rc.Response.SetBodyString(b.String())
				return
			}
		}
	}
	// Follow: the header goes out at once, so the follower knows it follows before the first
	// line; then each burst of lines is written and flushed as one.
	defer cancel()
	w := resp.NewChunkedBodyWriter(&rc.Response, rc.GetWriter())
	rc.Response.HijackWriter(w)
	if h, ok := w.(interface{ WriteHeader() error }); ok {
		if h.WriteHeader() != nil || rc.Flush() != nil {
			return
		}
	}
	var buf []byte
	alive := connAlive(rc)
	check := time.NewTicker(5 * time.Second)
	defer check.Stop()
	for {
		select {
		case <-check.C:
			if !alive() {
				return // the client went away while the stream was quiet
			}
		case l, ok := <-lines:
			if !ok {
				return
			}
			buf = append(buf[:0], formatLine(l)...)
			for more := true; more && len(buf) < 64<<10; {
				select {
				case l, ok := <-lines:
					if ok {
						buf = append(buf, formatLine(l)...)
					}
					more = ok
				default:
					more = false
				}
			}
			if _, err := w.Write(buf); err != nil || rc.Flush() != nil {
				return // the client went away
			}
		case <-s.closing:
			return
		}
	}
}

func formatLine(l ringlog.Line) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %-5s %s", l.Time.UTC().Format(time.RFC3339Nano), l.Stream, l.Level, l.Message)
	for _, f := range l.Fields {
		fmt.Fprintf(&b, " %s=%q", f.Key, f.Value)
	}
	if l.ErrorID != "" {
		fmt.Fprintf(&b, " error_id=%s", l.ErrorID)
	}
	b.WriteByte('\n')
	return b.String()
}

// connAlive returns a check of whether rc's client is still connected, for a response that
// writes nothing for long stretches (a write to a closed connection fails anyway). Connections
// that cannot tell are taken as alive.
func connAlive(rc *app.RequestContext) func() bool {
	if c, ok := rc.GetConn().(*hznetpoll.Conn); ok {
		if a, ok := c.Conn.(interface{ IsActive() bool }); ok {
			return a.IsActive
		}
	}
	return func() bool { return true }
}
