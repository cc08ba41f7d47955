// Package natsnode runs the NATS server that holds Wisp's state in-process, or connects to an
// external one, and hands the rest of kv/ a JetStream handle.
//
// Only packages under kv/ see nats types; they wrap them in Wisp's own.
package natsnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Sync policies for Options.Sync.
const (
	// SyncAlways fsyncs every JetStream write before it is acknowledged: an acknowledged write
	// survives kill -9 and power loss. See Options.Sync.
	SyncAlways = "always"
)

// readyTimeout bounds how long Start waits for the server and for JetStream.
const readyTimeout = 10 * time.Second

// connectAttempts and connectBackoff shape the retries of external mode.
const (
	connectAttempts = 5
	connectBackoff  = 100 * time.Millisecond
)

// Options configures Start. The zero value is not usable: set Dir (embedded) or URL (external).
type Options struct {
	// Dir is the JetStream store directory of the embedded server. Required in embedded mode,
	// ignored in external mode.
	Dir string

	// Listen is the host:port the embedded server accepts NATS clients on. Empty means no
	// listener at all: only this process can reach the server, through an in-process
	// connection. Port 0 picks a free port; URL reports it.
	Listen string

	// URL, when set, connects to this external NATS server or cluster (comma-separated URLs
	// are accepted) instead of embedding one. It must have JetStream enabled.
	URL string

	// Sync is the embedded store's durability policy. Either way the server hands every write
	// to the operating system before acknowledging it, so killing the process (kill -9, OOM,
	// panic) loses no acknowledged write. The policies differ on a power loss or kernel crash:
	//
	// "" or "always" (the default) fsyncs every write before acknowledging it: an acknowledged
	// deploy survives power loss too, at the price of one disk flush per write. A registry
	// deploy makes three writes; BenchmarkDeploy in kv/registry compares both policies (on the
	// development machine: 0.59 ms per deploy with "always", 0.12 ms with "2m"). Registry
	// writes are rare, so durability wins.
	//
	// A duration such as "2m" (the NATS default) fsyncs in the background at that interval:
	// writes are cheaper, but a power loss can lose up to one interval of acknowledged writes.
	//
	// Sync applies to the embedded server only; an external server keeps its own setting, and
	// setting Sync together with URL is an error.
	Sync string

	// Logf, if set, receives the server's notices, warnings and errors and the node's own
	// messages. Nil discards them.
	Logf func(format string, args ...any)
}

// Node is a running connection to NATS JetStream, with the embedded server it owns if any.
// Its methods are safe for concurrent use. The caller that started it closes it.
type Node struct {
	srv *server.Server // nil in external mode
	nc  *nats.Conn
	js  jetstream.JetStream

	closeOnce sync.Once
	closeErr  error
}

// Start starts an embedded NATS server with JetStream on o.Dir, or connects to o.URL, and
// returns once JetStream answers. It gives up after a bounded time, or when ctx ends, with an
// error that says what did not come up.
func Start(ctx context.Context, o Options) (*Node, error) {
	if o.URL != "" {
		if o.Sync != "" {
			return nil, fmt.Errorf("cannot use sync policy %q with external NATS at %q: the external server's own jetstream sync setting applies", o.Sync, o.URL)
		}
		return connect(ctx, o)
	}
	return embed(ctx, o)
}

// parseSync maps the Sync option to the server's settings.
func parseSync(s string) (always bool, interval time.Duration, err error) {
	if s == "" || s == SyncAlways {
		return true, 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return false, 0, fmt.Errorf("invalid sync policy %q: want %q or a positive duration such as \"2m\"", s, SyncAlways)
	}
	return false, d, nil
}

func embed(ctx context.Context, o Options) (*Node, error) {
	if o.Dir == "" {
		return nil, errors.New("cannot start embedded NATS: no store directory (Options.Dir) given")
	}
	always, interval, err := parseSync(o.Sync)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:   "wisp",
		JetStream:    true,
		StoreDir:     o.Dir,
		SyncAlways:   always,
		SyncInterval: interval,
		NoSigs:       true,
		NoLog:        o.Logf == nil,
		DontListen:   o.Listen == "",
	}
	if o.Listen != "" {
		host, port, err := splitListen(o.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cannot configure embedded NATS: %w", err)
	}
	logs := &serverLog{logf: o.Logf}
	srv.SetLogger(logs, false, false)

	srv.Start()
	fail := func(err error) (*Node, error) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, err
	}
	// Start runs the setup synchronously and stops at the first fatal error, which it only logs.
	if msg := logs.lastFatal(); msg != "" || !srv.JetStreamEnabled() {
		if msg == "" {
			msg = "no reason given"
		}
		return fail(fmt.Errorf("cannot start JetStream in %q: %s", o.Dir, msg))
	}
	if !srv.ReadyForConnections(readyTimeout) {
		return fail(fmt.Errorf("embedded NATS in %q not ready for connections after %s", o.Dir, readyTimeout))
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("wisp"))
	if err != nil {
		return fail(fmt.Errorf("cannot connect to embedded NATS: %w", err))
	}
	n, err := newNode(ctx, srv, nc, "embedded NATS in "+strconv.Quote(o.Dir))
	if err != nil {
		nc.Close()
		return fail(err)
	}
	if o.Logf != nil {
		where := "no listener"
		if u := n.URL(); u != "" {
			where = "listening on " + u
		}
		o.Logf("nats: embedded server ready (store %s, sync %s, %s)", o.Dir, syncName(o.Sync), where)
	}
	return n, nil
}

func syncName(s string) string {
	if s == "" {
		return SyncAlways
	}
	return s
}

// splitListen parses host:port; port 0 asks the server for a free port.
func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("invalid NATS listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("invalid NATS listen address %q: port must be 0..65535", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

func connect(ctx context.Context, o Options) (*Node, error) {
	var (
		nc  *nats.Conn
		err error
	)
	wait := connectBackoff
	for attempt := 1; ; attempt++ {
		nc, err = nats.Connect(o.URL,
			nats.Name("wisp"),
			nats.Timeout(2*time.Second),
			nats.MaxReconnects(-1),
		)
		if err == nil {
			break
		}
		if attempt == connectAttempts {
			return nil, fmt.Errorf("cannot connect to NATS at %q: %w (after %d attempts)", o.URL, err, attempt)
		}
		if o.Logf != nil {
			o.Logf("nats: cannot connect to %q (attempt %d of %d): %v; retrying in %s", o.URL, attempt, connectAttempts, err, wait)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cannot connect to NATS at %q: %w (last error: %v)", o.URL, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait *= 2
	}
	n, err := newNode(ctx, nil, nc, fmt.Sprintf("NATS at %q", o.URL))
	if err != nil {
		nc.Close()
		return nil, err
	}
	if o.Logf != nil {
		o.Logf("nats: connected to %s", nc.ConnectedUrlRedacted())
	}
	return n, nil
}

// newNode waits until JetStream answers on nc.
func newNode(ctx context.Context, srv *server.Server, nc *nats.Conn, what string) (*Node, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("cannot use JetStream of %s: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		_, err = js.AccountInfo(ctx)
		if err == nil {
			return &Node{srv: srv, nc: nc, js: js}, nil
		}
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("%s has no JetStream: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("JetStream of %s not ready: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// JetStream returns the handle packages under kv/ build their buckets on. It stays valid until
// Close.
func (n *Node) JetStream() jetstream.JetStream { return n.js }

// URL returns a nats:// URL another process can connect to: the embedded server's listener,
// "" when it has none, or the external server this node is connected to.
func (n *Node) URL() string {
	if n.srv == nil {
		return n.nc.ConnectedUrlRedacted()
	}
	addr, ok := n.srv.Addr().(*net.TCPAddr)
	if !ok {
		return ""
	}
	return "nats://" + addr.String()
}

// Close drains the connection (in-flight messages are delivered), then shuts the embedded
// server down and waits until it has stopped and flushed its store. It is safe to call more
// than once; later calls return the first call's result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closeErr = n.drain()
		if n.srv != nil {
			n.srv.Shutdown()
			n.srv.WaitForShutdown()
		}
	})
	return n.closeErr
}

func (n *Node) drain() error {
	closed := make(chan struct{})
	n.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := n.nc.Drain(); err != nil {
		n.nc.Close()
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("cannot drain NATS connection: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-time.After(readyTimeout):
		n.nc.Close()
		return fmt.Errorf("cannot drain NATS connection: not done after %s", readyTimeout)
	}
}

// serverLog adapts the embedded server's logger to Options.Logf and keeps the last fatal
// message, which Start reports when the server does not come up.
type serverLog struct {
	logf func(format string, args ...any)

	mu    sync.Mutex
	fatal string
}

func (l *serverLog) lastFatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

func (l *serverLog) log(level, format string, args []any) {
	if l.logf != nil {
		l.logf("nats: "+level+format, args...)
	}
}

func (l *serverLog) Noticef(format string, v ...any) { l.log("", format, v) }
func (l *serverLog) Warnf(format string, v ...any)   { l.log("warning: ", format, v) }
func (l *serverLog) Errorf(format string, v ...any)  { l.log("error: ", format, v) }
func (l *serverLog) Debugf(string, ...any)           {}
func (l *serverLog) Tracef(string, ...any)           {}

// Fatalf records the message; the server stops starting after it, and Start reports it.
func (l *serverLog) Fatalf(format string, v ...any) {
	l.mu.Lock()
	l.fatal = fmt.Sprintf(format, v...)
	l.mu.Unlock()
	l.log("fatal: ", format, v)
}
