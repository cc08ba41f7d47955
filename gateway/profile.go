package gateway

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/cloudwego/hertz/pkg/app"

	"github.com/wispfn/wisp/pool"
)

// defaultProfileSeconds is the window of GET /_wisp/profile/NAME without ?seconds.
const defaultProfileSeconds = 10

// serveProfile: GET /_wisp/profile/NAME[?seconds=N] answers, after N seconds (default 10,
// 1 to 60), a gzipped pprof protobuf of the guest CPU time of function NAME's requests served
// meanwhile, by wasm call stack (pool.Function.Profile). The first profile of a function also
// waits for its code to be compiled with function listeners (X-Wisp-Profile-Compile-Seconds).
func (s *Server) serveProfile(ctx context.Context, rc *app.RequestContext) {
	name := rc.Param("name")
	seconds := defaultProfileSeconds
	if v := rc.QueryArgs().Peek("seconds"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < int(pool.MinProfileDuration/time.Second) || n > int(pool.MaxProfileDuration/time.Second) {
			s.requestError(rc, errorf(http.StatusBadRequest, "query parameter seconds=%q must be an integer in [%d, %d]",
				v, pool.MinProfileDuration/time.Second, pool.MaxProfileDuration/time.Second))
			return
		}
		seconds = n
	}
	e := s.cat.table().byName[name]
	if e == nil {
		s.requestError(rc, errorf(http.StatusNotFound, "no function named %q", name))
		return
	}
	if e.fn == nil {
		s.requestError(rc, errorf(http.StatusNotImplemented, "function %q runs on the nodes of another pool, not here: profile it on one of them (--addr)", name))
		return
	}
	var buf bytes.Buffer
	res, err := e.fn.Profile(ctx, time.Duration(seconds)*time.Second, &buf)
	if errors.Is(err, pool.ErrProfiling) {
		err = &httpError{status: http.StatusConflict, msg: "cannot profile " + strconv.Quote(name), err: pool.ErrProfiling}
	}
	if err != nil {
		s.requestError(rc, err)
		return
	}
	s.log.Info("function profiled", "function", name, "seconds", seconds, "samples", res.Samples, "requests", res.Requests,
		"compile", res.Compile.Round(time.Millisecond), "ended_early", res.EndedEarly)
	h := &rc.Response.Header
	h.SetContentType("application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="`+name+`.pprof"`)
	h.Set("X-Wisp-Profile-Samples", strconv.Itoa(res.Samples))
	h.Set("X-Wisp-Profile-Requests", strconv.Itoa(res.Requests))
	h.Set("X-Wisp-Profile-Compile-Seconds", strconv.FormatFloat(res.Compile.Seconds(), 'f', 3, 64))
	rc.SetStatusCode(http.StatusOK)
	rc.Response.SetBody(buf.Bytes())
}
