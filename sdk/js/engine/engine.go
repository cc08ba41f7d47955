// Package engine runs a JavaScript function in a Wisp guest: a goja runtime holding the Web API a
// Workers user expects (Request, Response, Headers, URL, URLSearchParams, TextEncoder,
// TextDecoder, console, crypto, timers, fetch, and the KV namespace env.KV), the function's
// script, which registers its handler with run(handler) or addEventListener("fetch", listener),
// and the bridge between the Go SDK's request and response types and those objects.
//
// `wisp build` compiles a directory holding index.js into a module whose main calls Start with
// the script embedded. Start evaluates the script when the host calls wisp_start, before the
// host's snapshot: every instance then starts with the runtime built and the script evaluated.
package engine

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dop251/goja"

	"github.com/wispfn/wisp/sdk/go/faas"
	"github.com/wispfn/wisp/sdk/go/faas/http"
)

//go:embed prelude.js
var prelude string

// Options configures New. The zero value of each field means its documented default.
type Options struct {
	// Name is the script's name in stack traces and errors; default "index.js".
	Name string

	// Stdout receives console.log, info and debug lines, Stderr console.warn and error lines;
	// default os.Stdout and os.Stderr, which Wisp turns into the function's log stream.
	Stdout, Stderr io.Writer

	// Env is the handler's env argument, beside KV, the function's KV namespace (which hides a
	// variable named KV); nil means the process environment, which holds the function's
	// configuration (`wisp deploy --env KEY=VALUE`).
	Env map[string]string
}

// Engine is one JavaScript function: a goja runtime in which the Web API and the function's
// script have been evaluated and a handler registered. It serves one request at a time and is
// not safe for concurrent use.
type Engine struct {
	vm   *goja.Runtime
	name string
	rand randSource

	serveJS, respondJS, nextTimer, runTimers, settleJS, resetJS goja.Callable

	// calls are the hostcalls in flight, oldest first: fetches and KV operations the script
	// started, whose promises wait in the prelude's table under their ids.
	calls []call

	// out is what the request being served came to, set by the prelude through the natives
	// respond and fail.
	out struct {
		done bool
		resp *http.Response
		err  error
	}
}

// gcPercent is the guest's GOGC unless its environment sets one: each collection marks goja's
// whole runtime, and a request allocates ~16 KB, so Go's default 100 collects every ~150
// requests; 200 halves that for at most 4 MB more of linear memory (sdk/js/RATIONALE.md).
const gcPercent = 200

// Start is the main of a JavaScript function: it creates the Engine for script and makes its
// Handle the function's handler (faas.Start). If the script does not compile, throws, or
// registers no handler, Start writes why to standard error and exits with status 1, which fails
// the deploy (the host runs Start when it pre-initializes the function).
func Start(name, script string) {
	e, err := New(script, Options{Name: name})
	if err != nil {
		fmt.Fprintf(os.Stderr, "wisp: %v\n", err)
		os.Exit(1)
	}
	faas.Start(e.Handle)
	// A collection costs a wasm guest tens of milliseconds (~1 MB live after the runtime is
	// built): collect half as often as Go's default unless the function's environment sets
	// GOGC, and collect the garbage of building the runtime before the host's snapshot, so that
	// instances start with the whole heap goal ahead of them.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	runtime.GC()
}

// New creates a runtime with the Web API, evaluates script in it and returns the Engine. The
// error says what is wrong with the script: a syntax error (with its line and column), an
// exception thrown while it ran (with its stack), or no handler registered.
func New(script string, opt Options) (*Engine, error) {
	if opt.Name == "" {
		opt.Name = "index.js"
	}
	if opt.Stdout == nil {
		opt.Stdout = os.Stdout
	}
	if opt.Stderr == nil {
		opt.Stderr = os.Stderr
	}
	if opt.Env == nil {
		opt.Env = map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok {
				opt.Env[k] = v
			}
		}
	}
	e := &Engine{vm: goja.New(), name: opt.Name}
	e.vm.SetRandSource(e.rand.float64)

	prog, err := goja.Compile("wisp:prelude.js", prelude, true)
	if err != nil {
		return nil, fmt.Errorf("cannot compile the Web API prelude: %w", err)
	}
	v, err := e.vm.RunProgram(prog)
	if err != nil {
		return nil, fmt.Errorf("cannot run the Web API prelude: %w", err)
	}
	setup, ok := goja.AssertFunction(v)
	if !ok {
		return nil, errors.New("the Web API prelude is not a function")
	}
	v, err = setup(goja.Undefined(), e.natives(opt))
	if err != nil {
		return nil, fmt.Errorf("cannot run the Web API prelude: %w", err)
	}
	hooks := v.ToObject(e.vm)
	var registered goja.Callable
	for name, dst := range map[string]*goja.Callable{
		"serve": &e.serveJS, "respond": &e.respondJS, "registered": &registered,
		"nextTimer": &e.nextTimer, "runTimers": &e.runTimers, "settle": &e.settleJS, "reset": &e.resetJS,
	} {
		if *dst, ok = goja.AssertFunction(hooks.Get(name)); !ok {
			return nil, fmt.Errorf("the Web API prelude lacks its %s hook", name)
		}
	}

	user, err := goja.Compile(opt.Name, script, false)
	if err != nil {
		return nil, fmt.Errorf("cannot compile %s: %w", opt.Name, err)
	}
	if _, err := e.vm.RunProgram(user); err != nil {
		return nil, fmt.Errorf("%s threw while it was evaluated: %s", opt.Name, describe(err))
	}
	// Timers set while the script was evaluated would otherwise fire during the first request,
	// and calls it started (which the host refuses outside a request) would settle then.
	if err := e.reset(); err != nil {
		return nil, err
	}
	if ok, err := registered(goja.Undefined()); err != nil || !ok.ToBoolean() {
		return nil, fmt.Errorf("%s registered no handler: call run(handler) or addEventListener(\"fetch\", listener) at its top level", opt.Name)
	}
	return e, nil
}

// Handle serves req with the script's handler; it is the function's faas handler. A handler
// that throws, returns a rejected promise, a promise that never settles, or something other
// than a Response makes Handle panic with the reason: the Go SDK answers the host with a guest
// failure, and the host answers the client 500 with an error id, logs the reason under that id,
// and discards the instance, exactly as for a Go function's panic.
func (e *Engine) Handle(req *http.Request) *http.Response {
	resp, err := e.serve(req)
	if err != nil {
		panic(err.Error())
	}
	return resp
}

// serve is Handle returning its failure as an error.
func (e *Engine) serve(req *http.Request) (*http.Response, error) {
	// Randomness is drawn afresh for every request: instances restored from one snapshot would
	// otherwise share Math.random's sequence.
	e.rand.reset()
	if len(e.calls) > 0 {
		e.reset()
	}
	defer e.reset()

	var body goja.Value = goja.Null()
	if req.ContentLength > 0 {
		buf := make([]byte, req.ContentLength)
		if _, err := io.ReadFull(req.Body, buf); err != nil {
			return nil, fmt.Errorf("cannot read the request body: %w", err)
		}
		body = e.vm.ToValue(e.vm.NewArrayBuffer(buf))
	}
	headers := make([]any, 0, 2*len(req.Header)+2)
	if req.Host != "" {
		headers = append(headers, "host", req.Host)
	}
	for k, vs := range req.Header {
		k = strings.ToLower(k)
		for _, v := range vs {
			headers = append(headers, k, v)
		}
	}
	e.out.done, e.out.resp, e.out.err = false, nil, nil
	res, err := e.serveJS(goja.Undefined(), e.vm.ToValue(req.Method), e.vm.ToValue(requestURL(req)),
		e.vm.NewArray(headers...), body)
	if err != nil {
		return nil, fmt.Errorf("Uncaught %s", describe(err))
	}
	if !e.out.done {
		p, _ := res.Export().(*goja.Promise)
		if p == nil {
			return nil, fmt.Errorf("the engine's serve returned %v", res)
		}
		if err := e.wait(p); err != nil {
			return nil, err
		}
		if _, err := e.respondJS(goja.Undefined(), p.Result()); err != nil {
			return nil, fmt.Errorf("Uncaught %s", describe(err))
		}
	}
	return e.out.resp, e.out.err
}

// wait returns once p has settled, with an error if it was rejected. Each call into the runtime
// runs the job queue before it returns, so a promise still pending waits for a timer or a
// hostcall: wait runs the timers that are due; when none is, it waits for the oldest hostcall in
// flight and settles its promise, or, with no hostcall in flight, sleeps until the next timer is
// due. It fails if neither is left.
func (e *Engine) wait(p *goja.Promise) error {
	for p.State() == goja.PromiseStatePending {
		next, err := e.nextTimer(goja.Undefined())
		if err != nil {
			return err
		}
		ms := next.ToFloat()
		switch {
		case ms == 0 || ms > 0 && len(e.calls) == 0:
			time.Sleep(time.Duration(ms * float64(time.Millisecond)))
			if _, err := e.runTimers(goja.Undefined()); err != nil {
				return err
			}
		case len(e.calls) > 0:
			if err := e.complete(); err != nil {
				return err
			}
		default:
			return errors.New("the handler's promise never settled: it waits for something that will not happen " +
				"(no timer is set and no fetch or KV call is in flight)")
		}
	}
	if p.State() == goja.PromiseStateRejected {
		return fmt.Errorf("Uncaught (in promise) %s", describeValue(p.Result()))
	}
	return nil
}

// respond is the native respond(status, [name, value, ...], body) or (status, headers,
// ArrayBuffer, offset, length): the handler's Response, converted to the Go SDK's.
func (e *Engine) respond(c goja.FunctionCall) goja.Value {
	e.out.done = true
	resp := &http.Response{StatusCode: int(c.Argument(0).ToInteger()), Header: http.Header{}}
	flat, _ := c.Argument(1).Export().([]any)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		resp.Header.Add(k, v)
	}
	switch b := c.Argument(2).Export().(type) {
	case nil:
	case string:
		resp.Body = http.MustNewBody([]byte(b))
	case goja.ArrayBuffer:
		body, err := http.NewBody(e.bytes(c.Argument(2), c.Argument(3), c.Argument(4)))
		if err != nil {
			e.out.err = err
			return goja.Undefined()
		}
		resp.Body = body
	default:
		e.out.err = fmt.Errorf("response body of type %T", b)
		return goja.Undefined()
	}
	e.out.resp = resp
	return goja.Undefined()
}

// fail is the native fail(error): what the handler returned is not a Response that can be sent,
// and error, made by the prelude, says why.
func (e *Engine) fail(c goja.FunctionCall) goja.Value {
	e.out.done = true
	e.out.err = fmt.Errorf("%s: %s", e.name, message(c.Argument(0)))
	return goja.Undefined()
}

// requestURL returns the absolute URL a JavaScript Request carries: the scheme the client used
// (X-Forwarded-Proto when it says https, else http), the Host, and the path and query the
// function sees (after the route prefix, as the Go SDK's URL).
func requestURL(req *http.Request) string {
	scheme := "http"
	if strings.EqualFold(req.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	host := req.Host
	if host == "" {
		host = "localhost"
	}
	return scheme + "://" + host + req.URL.RequestURI()
}

// describe renders an error from the runtime: a thrown value with its JavaScript stack.
func describe(err error) string {
	var ex *goja.Exception
	if errors.As(err, &ex) {
		return describeValue(ex.Value())
	}
	return err.Error()
}

// describeValue renders a thrown or rejected value: an Error's stack (which starts with its name
// and message), or the value itself.
func describeValue(v goja.Value) (s string) {
	defer func() {
		if recover() != nil {
			s = "a value that cannot be converted to a string"
		}
	}()
	if o, ok := v.(*goja.Object); ok {
		if st := o.Get("stack"); st != nil && !goja.IsUndefined(st) && !goja.IsNull(st) {
			return strings.TrimRight(st.String(), "\n")
		}
	}
	if v == nil {
		return "undefined"
	}
	return v.String()
}

// message renders an Error without its stack: for errors the prelude raises about what the
// handler returned, where the stack shows only the prelude.
func message(v goja.Value) string {
	if o, ok := v.(*goja.Object); ok {
		if m := o.Get("message"); m != nil {
			return m.String()
		}
	}
	return describeValue(v)
}
