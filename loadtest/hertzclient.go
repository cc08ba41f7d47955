package loadtest

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/cloudwego/hertz/pkg/app/client"
	errs "github.com/cloudwego/hertz/pkg/common/errors"
	"github.com/cloudwego/hertz/pkg/network"
	"github.com/cloudwego/hertz/pkg/network/dialer"
	"github.com/cloudwego/hertz/pkg/protocol"
)

// newHertzClient returns a Hertz client (netpoll dialer) with one pooled
// connection per worker and the run's timeouts. It always dials the
// target's address, so the request's URL can carry the Host header.
func newHertzClient(t *target) (*client.Client, error) {
	d := dialer.DefaultDialer()
	dial := func(string) (network.Conn, error) {
		conn, err := d.DialConnection("tcp", t.addr, t.Timeout, nil)
		if err != nil {
			return nil, &dialError{err}
		}
		return conn, nil
	}
	return client.NewClient(
		client.WithDialFunc(dial, d),
		client.WithMaxConnsPerHost(t.Connections),
		client.WithDialTimeout(t.Timeout),
		client.WithClientReadTimeout(t.Timeout),
		client.WithWriteTimeout(t.Timeout),
		client.WithMaxConnWaitTimeout(t.Timeout),
		client.WithKeepAlive(true),
		client.WithNoDefaultUserAgentHeader(true),
	)
}

// hertzCaller is one worker's request and response on a shared Hertz client.
type hertzCaller struct {
	cli  *client.Client
	req  *protocol.Request
	resp *protocol.Response
}

func newHertzCaller(cli *client.Client, t *target) *hertzCaller {
	req := protocol.AcquireRequest()
	req.SetRequestURI("http://" + t.host + t.reqURI)
	req.SetMethod(t.Method)
	req.Header.SetUserAgentBytes([]byte("wisp-loadtest"))
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	if len(t.Body) > 0 {
		req.SetBody(t.Body)
	}
	return &hertzCaller{cli: cli, req: req, resp: protocol.AcquireResponse()}
}

func (h *hertzCaller) do(time.Time) (int, error) {
	h.resp.Reset()
	if err := h.cli.Do(context.Background(), h.req, h.resp); err != nil {
		return 0, classifyHertz(err)
	}
	return h.resp.StatusCode(), nil
}

func (h *hertzCaller) release() {
	protocol.ReleaseRequest(h.req)
	protocol.ReleaseResponse(h.resp)
}

// close cannot interrupt a request in progress: Config.Timeout bounds it.
func (h *hertzCaller) close() {}

// dialError marks an error of newHertzClient's dialer.
type dialError struct{ err error }

func (e *dialError) Error() string { return "cannot connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func classifyHertz(err error) error {
	var de *dialError
	switch {
	case errors.As(err, &de), errors.Is(err, syscall.ECONNREFUSED):
		if kindOf(err) == kindTimeout {
			return &reqError{kindTimeout, err}
		}
		return &reqError{kindConnect, err}
	case errors.Is(err, errs.ErrTimeout), kindOf(err) == kindTimeout:
		return &reqError{kindTimeout, err}
	}
	return &reqError{kindIO, err}
}
