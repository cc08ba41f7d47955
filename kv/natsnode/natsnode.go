// Package natsnode runs the NATS server that holds Wisp's state in-process, or connects to an
// external one, and hands the rest of kv/ a JetStream handle and the buckets it opens.
//
// Only packages under kv/ see nats types; they wrap them in Wisp's own.
//
// # Regions
//
// A single-region deployment leaves Options.Region empty. A multi-region deployment has one
// home region, whose JetStream holds the origin of every bucket, and any number of edge
// regions. Each region's JetStream is its own JetStream domain, named after the region. An
// edge region's embedded server connects to the home region's server as a leaf node
// (Options.LeafRemotes on the edge, Options.LeafListen on the home), and OpenKeyValue gives
// the edge a local mirror of each home bucket: reads and watches are served by the mirror,
// writes are published to the origin through the leaf connection. Mirrors keep the origin's
// sequence numbers, so a revision read in one region means the same write in every region.
package natsnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
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

	// Region names the region this node serves (see ValidRegion); it is also the name of the
	// region's JetStream domain. Empty means a single-region deployment: no domain, no
	// mirrors, and Home, LeafRemotes must be empty too. With URL, the external server must
	// have been configured with the JetStream domain Region.
	Region string

	// Home names the home region, whose buckets are the origin of every edge region's
	// mirrors. Empty means Region: this node is in the home region.
	Home string

	// LeafListen is the host:port the embedded server accepts leaf-node connections on, from
	// the embedded servers of edge regions. Set it in the home region. Port 0 picks a free
	// port; LeafURL reports it. Empty means no leaf listener.
	LeafListen string

	// LeafRemotes are the URLs (nats-leaf://host:port, or host:port) of the home region's leaf
	// listeners, all of one home deployment. An edge region's embedded server connects to one
	// of them and reconnects for as long as it runs; it starts without waiting for the link.
	// Required for an embedded edge node, not allowed in the home region.
	LeafRemotes []string

	// Logf, if set, receives the server's notices, warnings and errors and the node's own
	// messages. Nil discards them.
	Logf func(format string, args ...any)
}

var regionRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidRegion returns nil if name can name a region: 1 to 32 characters of lowercase letters,
// digits and '-', not starting with '-'.
func ValidRegion(name string) error {
	if regionRe.MatchString(name) {
		return nil
	}
	return fmt.Errorf("invalid region %q: use 1 to 32 characters of a-z, 0-9 and '-', starting with a letter or digit", name)
}

// checkRegions validates the region options and fills in Home.
func (o *Options) checkRegions() error {
	if o.Region == "" {
		if o.Home != "" || len(o.LeafRemotes) > 0 || o.LeafListen != "" {
			return fmt.Errorf("invalid regions: a home region (%q), leaf remotes (%q) or a leaf listener (%q) need this node's own region (Options.Region) set", o.Home, o.LeafRemotes, o.LeafListen)
		}
		return nil
	}
	if err := ValidRegion(o.Region); err != nil {
		return err
	}
	if o.Home == "" {
		o.Home = o.Region
	}
	if err := ValidRegion(o.Home); err != nil {
		return fmt.Errorf("home: %w", err)
	}
	edge := o.Region != o.Home
	switch {
	case !edge && len(o.LeafRemotes) > 0:
		return fmt.Errorf("invalid regions: region %q is the home region, which has no leaf remotes (%q); set them on edge regions", o.Region, o.LeafRemotes)
	case edge && o.URL == "" && len(o.LeafRemotes) == 0:
		return fmt.Errorf("invalid regions: edge region %q needs the home region %q's leaf-node URL (Options.LeafRemotes)", o.Region, o.Home)
	case o.URL != "" && (o.LeafListen != "" || len(o.LeafRemotes) > 0):
		return fmt.Errorf("cannot configure leaf nodes of external NATS at %q: configure them on that server", o.URL)
	}
	return nil
}

// leafURLs parses LeafRemotes; a bare host:port gets the nats-leaf scheme.
func leafURLs(remotes []string) ([]*url.URL, error) {
	var urls []*url.URL
	for _, r := range remotes {
		for _, part := range strings.Split(r, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if !strings.Contains(part, "://") {
				part = "nats-leaf://" + part
			}
			u, err := url.Parse(part)
			if err != nil || u.Host == "" || u.Port() == "" {
				return nil, fmt.Errorf("invalid leaf remote %q: want nats-leaf://host:port", part)
			}
			urls = append(urls, u)
		}
	}
	return urls, nil
}

// Node is a running connection to NATS JetStream, with the embedded server it owns if any.
// Its methods are safe for concurrent use. The caller that started it closes it.
type Node struct {
	srv    *server.Server // nil in external mode
	nc     *nats.Conn
	js     jetstream.JetStream
	homeJS jetstream.JetStream // the home region's JetStream; js outside edge regions

	region, home string
	leafAddr     string // host:port of the embedded server's leaf listener, "" without one

	done chan struct{} // closed when Close begins

	mu          sync.Mutex
	reconnected chan struct{} // closed and replaced at each reconnection

	closeOnce sync.Once
	closeErr  error
}

// Start starts an embedded NATS server with JetStream on o.Dir, or connects to o.URL, and
// returns once JetStream answers. It gives up after a bounded time, or when ctx ends, with an
// error that says what did not come up.
func Start(ctx context.Context, o Options) (*Node, error) {
	if err := o.checkRegions(); err != nil {
		return nil, err
	}
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
		ServerName:      "wisp",
		JetStream:       true,
		JetStreamDomain: o.Region,
		StoreDir:        o.Dir,
		SyncAlways:      always,
		SyncInterval:    interval,
		NoSigs:          true,
		NoLog:           o.Logf == nil,
		DontListen:      o.Listen == "",
	}
	if o.Region != "" {
		opts.ServerName = "wisp-" + o.Region
	}
	if o.Listen != "" {
		host, port, err := splitListen(o.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	if o.LeafListen != "" {
		host, port, err := splitListen(o.LeafListen)
		if err != nil {
			return nil, fmt.Errorf("leaf: %w", err)
		}
		opts.LeafNode.Host, opts.LeafNode.Port = host, port
	}
	if len(o.LeafRemotes) > 0 {
		urls, err := leafURLs(o.LeafRemotes)
		if err != nil {
			return nil, err
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: urls}}
		opts.LeafNode.ReconnectInterval = leafReconnect
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
	n := newNode(srv, o)
	if o.LeafListen != "" {
		// The server wrote the port it bound into opts before ReadyForConnections saw its
		// leaf listener.
		host := opts.LeafNode.Host
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		n.leafAddr = net.JoinHostPort(host, strconv.Itoa(opts.LeafNode.Port))
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("wisp"))
	if err != nil {
		return fail(fmt.Errorf("cannot connect to embedded NATS: %w", err))
	}
	if err := n.ready(ctx, nc, "embedded NATS in "+strconv.Quote(o.Dir)); err != nil {
		nc.Close()
		return fail(err)
	}
	if o.Logf != nil {
		where := "no listener"
		if u := n.URL(); u != "" {
			where = "listening on " + u
		}
		if u := n.LeafURL(); u != "" {
			where += ", leaf nodes on " + u
		}
		if o.Region != "" {
			where += ", region " + o.Region
			if n.Edge() {
				where += fmt.Sprintf(" (edge of home %s through %s)", o.Home, strings.Join(o.LeafRemotes, ","))
			} else {
				where += " (home)"
			}
		}
		o.Logf("nats: embedded server ready (store %s, sync %s, %s)", o.Dir, syncName(o.Sync), where)
	}
	return n, nil
}

// leafReconnect is how often an edge region's server retries its link to the home region.
const leafReconnect = time.Second

func newNode(srv *server.Server, o Options) *Node {
	return &Node{
		srv:         srv,
		region:      o.Region,
		home:        o.Home,
		done:        make(chan struct{}),
		reconnected: make(chan struct{}),
	}
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
	n := newNode(nil, o)
	wait := connectBackoff
	for attempt := 1; ; attempt++ {
		nc, err = nats.Connect(o.URL,
			nats.Name("wisp"),
			nats.Timeout(2*time.Second),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(reconnectWait),
			nats.ReconnectHandler(func(nc *nats.Conn) { n.onReconnect(nc, o.Logf) }),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if o.Logf != nil && err != nil {
					o.Logf("nats: disconnected from %q: %v; reconnecting", o.URL, err)
				}
			}),
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
	if err := n.ready(ctx, nc, fmt.Sprintf("NATS at %q", o.URL)); err != nil {
		nc.Close()
		return nil, err
	}
	if o.Logf != nil {
		o.Logf("nats: connected to %s", nc.ConnectedUrlRedacted())
	}
	return n, nil
}

// reconnectWait is how long the client waits between attempts to reconnect to external NATS.
const reconnectWait = time.Second

// onReconnect wakes everything waiting on Reconnected.
func (n *Node) onReconnect(nc *nats.Conn, logf func(string, ...any)) {
	if logf != nil {
		logf("nats: reconnected to %s", nc.ConnectedUrlRedacted())
	}
	n.mu.Lock()
	close(n.reconnected)
	n.reconnected = make(chan struct{})
	n.mu.Unlock()
}

// ready waits until JetStream answers on nc, checks that it serves the node's region, and
// completes n.
func (n *Node) ready(ctx context.Context, nc *nats.Conn, what string) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("cannot use JetStream of %s: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		var info *jetstream.AccountInfo
		info, err = js.AccountInfo(ctx)
		if err == nil {
			if info.Domain != n.region {
				return fmt.Errorf("%s serves JetStream domain %q, not region %q: the domain must be the region's name", what, info.Domain, n.region)
			}
			break
		}
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("%s has no JetStream: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("JetStream of %s not ready: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	n.nc, n.js, n.homeJS = nc, js, js
	if n.Edge() {
		if n.homeJS, err = jetstream.NewWithDomain(nc, n.home); err != nil {
			return fmt.Errorf("cannot address JetStream of home region %q: %w", n.home, err)
		}
	}
	return nil
}

// JetStream returns the handle packages under kv/ build their buckets on: this region's own
// JetStream. It stays valid until Close.
func (n *Node) JetStream() jetstream.JetStream { return n.js }

// HomeJetStream returns the home region's JetStream: requests travel through the leaf-node
// link in an edge region and fail while it is down. Outside edge regions it is JetStream.
func (n *Node) HomeJetStream() jetstream.JetStream { return n.homeJS }

// Conn returns the node's NATS connection, for the requests jetstream has no method for. It
// stays valid until Close; the caller must not close it.
func (n *Node) Conn() *nats.Conn { return n.nc }

// Region returns this node's region, "" in a single-region deployment.
func (n *Node) Region() string { return n.region }

// Home returns the home region, "" in a single-region deployment.
func (n *Node) Home() string { return n.home }

// Edge reports whether this node is in an edge region: its buckets are mirrors of the home
// region's.
func (n *Node) Edge() bool { return n.region != n.home }

// Connected reports whether the connection to NATS is up. An embedded node's in-process
// connection is up until Close.
func (n *Node) Connected() bool { return n.nc.IsConnected() }

// Reconnected returns a channel that is closed the next time the connection to external NATS
// comes back after a loss. Subscriptions survive a reconnection, but what the server did
// meanwhile may have been missed; watchers use this to start over.
func (n *Node) Reconnected() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reconnected
}

// Done returns a channel that is closed when Close begins. Goroutines that use the node stop
// when it is closed.
func (n *Node) Done() <-chan struct{} { return n.done }

// LeafURL returns the nats-leaf:// URL edge regions connect to (Options.LeafRemotes), or ""
// without a leaf listener.
func (n *Node) LeafURL() string {
	if n.leafAddr == "" {
		return ""
	}
	return "nats-leaf://" + n.leafAddr
}

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
		close(n.done)
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
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) {
			return nil // nothing to drain: closed already, or the server is gone
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
