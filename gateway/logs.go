package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cloudwego/hertz/pkg/app"

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
	name := rc.Param("name")
	if s.cfg.Logs == nil {
		writeError(rc, errorf(http.StatusNotImplemented, "this node keeps no function logs"))
		return
	}
	if s.cat.table().byName[name] == nil {
		writeError(rc, errorf(http.StatusNotFound, "no function named %q", name))
		return
	}
	follow := string(rc.QueryArgs().Peek("follow"))
	lines, cancel := s.cfg.Logs.Subscribe(name)
	rc.Response.Header.SetContentType("text/plain; charset=utf-8")
	if follow != "1" && follow != "true" {
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
	pr, pw := io.Pipe()
	go func() {
		defer cancel()
		for l := range lines {
			if _, err := io.WriteString(pw, formatLine(l)); err != nil {
				return // the client went away: Hertz closed the reader
			}
		}
		_ = pw.Close()
	}()
	rc.Response.SetBodyStream(pr, -1)
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
