package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/cloudwego/hertz/pkg/app"

	"github.com/wispfn/wisp/kv/registry"
	"github.com/wispfn/wisp/pool"
)

// httpError is an error that knows its HTTP status. Handlers return it (or wrap it); writeError
// is the one place that turns errors into responses.
type httpError struct {
	status int
	msg    string
	err    error
}

func (e *httpError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *httpError) Unwrap() error { return e.err }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error   string `json:"error"`
	ErrorID string `json:"error_id,omitempty"`
}

// statusOf maps an error to its HTTP status and the message the client sees.
// A guest's fault is a 5xx whose message names the function and the error id, never the
// guest's internals (those go to the log under the same id).
func statusOf(err error) (int, errorBody) {
	var ge *pool.GuestError
	var he *httpError
	switch {
	case errors.As(err, &ge):
		status := http.StatusInternalServerError
		if ge.Kind == pool.FaultTimeout {
			status = http.StatusGatewayTimeout
		}
		return status, errorBody{
			Error:   fmt.Sprintf("function %q failed (%s); see the log for error id %s", ge.Function, ge.Kind, ge.ID),
			ErrorID: ge.ID,
		}
	case errors.As(err, &he):
		return he.status, errorBody{Error: err.Error()}
	case errors.Is(err, pool.ErrBusy):
		return http.StatusServiceUnavailable, errorBody{Error: err.Error()}
	case errors.Is(err, pool.ErrClosed):
		return http.StatusServiceUnavailable, errorBody{Error: "function is being replaced; retry"}
	case errors.Is(err, pool.ErrInvalidModule):
		return http.StatusUnprocessableEntity, errorBody{Error: err.Error()}
	case errors.Is(err, registry.ErrNotFound):
		return http.StatusNotFound, errorBody{Error: err.Error()}
	case errors.Is(err, registry.ErrInvalid):
		return http.StatusBadRequest, errorBody{Error: err.Error()}
	case errors.Is(err, registry.ErrConflict):
		return http.StatusConflict, errorBody{Error: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, errorBody{Error: err.Error()}
	case errors.Is(err, context.Canceled):
		return 499, errorBody{Error: err.Error()}
	}
	return http.StatusInternalServerError, errorBody{Error: err.Error()}
}

// writeError writes err as a JSON error response.
func writeError(rc *app.RequestContext, err error) {
	status, body := statusOf(err)
	writeJSON(rc, status, body)
}

func writeJSON(rc *app.RequestContext, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode response"}`)
	}
	rc.Response.Reset()
	rc.SetStatusCode(status)
	rc.Response.Header.SetContentTypeBytes(contentTypeJSON)
	rc.Response.SetBody(append(b, '\n'))
}

var contentTypeJSON = []byte("application/json")
