// Command nativehello is make bench's physical-limit baseline: a Hertz server
// on netpoll that answers every request with a fixed greeting and does
// nothing else, so a Wisp target can be read against it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/server"
)

// Greeting is the body of every response, as long as the Go hello example's.
const Greeting = "Hello native from Hertz!"

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "nativehello: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	h := server.New(
		server.WithHostPorts(*listen),
		server.WithDisablePrintRoute(true),
		server.WithExitWaitTime(time.Second),
	)
	h.NoRoute(func(_ context.Context, c *app.RequestContext) {
		c.SetStatusCode(200)
		c.SetContentType("text/plain; charset=utf-8")
		c.Response.SetBodyString(Greeting)
	})
	h.Spin()
}
