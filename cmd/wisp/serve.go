package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // --pprof-listen
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/gateway"
	"github.com/wispfn/wisp/kv/cache"
	"github.com/wispfn/wisp/kv/natsnode"
	"github.com/wispfn/wisp/kv/nodes"
	"github.com/wispfn/wisp/kv/registry"
	"github.com/wispfn/wisp/kv/store"
	"github.com/wispfn/wisp/kv/tenants"
	"github.com/wispfn/wisp/pool"
	"github.com/wispfn/wisp/pool/abi"
	"github.com/wispfn/wisp/ring"
	ringfetch "github.com/wispfn/wisp/ring/provider/fetch"
	ringkv "github.com/wispfn/wisp/ring/provider/kv"
	ringlog "github.com/wispfn/wisp/ring/provider/log"
	ringrpc "github.com/wispfn/wisp/ring/provider/rpc"
	"github.com/wispfn/wisp/sched"
)

type serveFlags struct {
	listen        string
	data          string
	natsURL       string
	natsListen    string
	sync          string
	workers       int
	logLevel      string
	deploy        []string
	codeBudgetMiB int64
	stagedMiB     int64
	idleTimeout   time.Duration
	fetchLoopback bool
	fetchPrivate  bool
	region        string
	homeRegion    string
	leafListen    string
	leafRemotes   []string
	pprofListen   string
	advertise     string
	pool          string
	weight        int
	isolate       []string
	playground    bool
	playgroundTTL time.Duration
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway, the runtime and the embedded NATS store in one process",
		Long: `Run Wisp all-in-one: the Hertz gateway, the wasm runtime and (unless --nats is given) an
embedded NATS JetStream server that keeps the registry and code under --data.

The admin API token is $WISP_TOKEN; without it, a random token is generated once and kept in
DATA/admin-token, where the CLI finds it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.natsURL != "" && !cmd.Flags().Changed("sync") {
				f.sync = "" // an external server keeps its own durability setting
			}
			return serve(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address of the HTTP gateway")
	fl.StringVar(&f.data, "data", "./data", "directory for the JetStream store, the compilation cache and the admin token")
	fl.StringVar(&f.natsURL, "nats", "", "URL of an external NATS server or cluster (default: embedded)")
	fl.StringVar(&f.natsListen, "nats-listen", "", "expose the embedded NATS server on this address for other nodes (default: no listener)")
	fl.StringVar(&f.region, "region", "", "region this node serves; empty: a single-region deployment")
	fl.StringVar(&f.homeRegion, "home-region", "", "the home region, origin of the registry and Global KV (default: --region, this node is in the home region)")
	fl.StringVar(&f.leafListen, "leaf-listen", "", "home region: accept edge regions' leaf-node connections on this address")
	fl.StringArrayVar(&f.leafRemotes, "leaf-remote", nil, "edge region: the home region's leaf address (nats-leaf://host:port); repeatable")
	fl.StringVar(&f.sync, "sync", natsnode.SyncAlways, `JetStream durability: "always" (fsync every write) or an fsync interval such as "2m"`)
	fl.IntVar(&f.workers, "workers", 0, "goroutines executing guest code at once (default 256 × GOMAXPROCS)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.Int64Var(&f.codeBudgetMiB, "code-budget-mib", pool.DefaultCodeBudget>>20, "resident compiled code, estimated; past it the least recently used idle functions reload from the compilation cache")
	fl.Int64Var(&f.stagedMiB, "staged-memory-mib", pool.DefaultStagedMemory>>20, "memory for instance memories prepared ahead of cold starts, one per function with its first request's pages copied; 0 prepares none")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", pool.DefaultIdleTimeout, "close instances idle for this long")
	fl.BoolVar(&f.fetchLoopback, "fetch-allow-loopback", false, "let guests fetch from loopback addresses (local development and tests)")
	fl.BoolVar(&f.fetchPrivate, "fetch-allow-private", false, "let guests fetch from private address ranges")
	fl.StringVar(&f.pprofListen, "pprof-listen", "", "serve Go's net/http/pprof (CPU, heap, goroutine profiles of the whole process) on this address; keep it on loopback")
	fl.StringVar(&f.advertise, "advertise", "", "the URL other nodes forward requests to (default: http:// and the --listen address, the host name when it listens on all interfaces)")
	fl.StringVar(&f.pool, "pool", "shared", "the pool this node runs functions for: tenants isolated into a pool (--isolate) run only on its nodes, the others on the shared pool's")
	fl.IntVar(&f.weight, "weight", 1, "this node's share of its pool's traffic relative to the other nodes of the pool (its capacity), 1 to 1000")
	fl.StringArrayVar(&f.isolate, "isolate", nil, "TENANT=POOL: run the tenant's functions only on the nodes of POOL (give every node the same list); repeatable")
	fl.BoolVar(&f.playground, "playground", false, "serve the playground at /_wisp/playground/: anyone who reaches the gateway can build and deploy temporary functions there (needs the go tool); for development machines")
	fl.DurationVar(&f.playgroundTTL, "playground-ttl", time.Hour, "how long a playground function lives after its last deploy")
	fl.StringArrayVar(&f.deploy, "deploy", nil, "NAME=PATH: build (if PATH is a directory) and deploy a function at start; repeatable")
	return cmd
}

func serve(ctx context.Context, f serveFlags) error {
	atLeastTwoProcs()
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", f.logLevel, err)
	}
	if f.playground && (f.playgroundTTL < time.Second || f.playgroundTTL > gateway.MaxTTL) {
		return fmt.Errorf("--playground-ttl %s: want 1s to %s", f.playgroundTTL, gateway.MaxTTL)
	}
	if f.stagedMiB < 0 {
		return fmt.Errorf("--staged-memory-mib %d: want 0 (none) or more", f.stagedMiB)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Start in order; stop in reverse, logging each step's time.
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	step := func(name string, fn func() error) error {
		start := time.Now()
		if err := fn(); err != nil {
			return err
		}
		log.Info("started "+name, "took", time.Since(start).Round(time.Microsecond))
		return nil
	}
	stopStep := func(name string, fn func() error) {
		stops = append(stops, func() {
			start := time.Now()
			if err := fn(); err != nil {
				log.Error("cannot stop "+name, "error", err)
				return
			}
			log.Info("stopped "+name, "took", time.Since(start).Round(time.Microsecond))
		})
	}

	if err := os.MkdirAll(f.data, 0o755); err != nil {
		return fmt.Errorf("cannot create data dir %q: %w", f.data, err)
	}
	token, err := adminToken(f.data)
	if err != nil {
		return err
	}
	if f.pprofListen != "" {
		ln, err := net.Listen("tcp", f.pprofListen)
		if err != nil {
			return fmt.Errorf("--pprof-listen: %w", err)
		}
		srv := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		stopStep("pprof", srv.Close)
		fmt.Printf("wisp: pprof on http://%s/debug/pprof/\n", ln.Addr())
	}

	var node *natsnode.Node
	if err := step("nats", func() (err error) {
		node, err = natsnode.Start(ctx, natsnode.Options{
			Dir:         filepath.Join(f.data, "jetstream"),
			Listen:      f.natsListen,
			URL:         f.natsURL,
			Sync:        f.sync,
			Region:      f.region,
			Home:        f.homeRegion,
			LeafListen:  f.leafListen,
			LeafRemotes: f.leafRemotes,
			Logf:        natsLogf(log),
		})
		return err
	}); err != nil {
		return err
	}
	stopStep("nats", node.Close)
	if f.natsListen != "" {
		fmt.Printf("wisp: nats on %s\n", node.URL())
	}
	if f.leafListen != "" {
		fmt.Printf("wisp: leaf listener on %s\n", node.LeafURL())
	}

	var reg *registry.Registry
	if err := step("registry", func() (err error) {
		reg, err = registry.Open(ctx, node)
		return err
	}); err != nil {
		return err
	}

	// Hostcalls: log, kv (Local Cache over the Global KV), fetch and rpc. rpc reaches the
	// gateway, which exists only later: it is bound once the gateway is built.
	invoker := &lateInvoker{}
	logs := ringlog.New(ringlog.Config{Sink: log})
	stores := ringkv.NewStores(func(ctx context.Context, ns string) (store.Store, error) {
		s, err := store.Open(ctx, node, ns, store.Options{})
		if err != nil {
			return nil, err
		}
		return cache.New(s, cache.Options{})
	})
	host, err := ring.New(ring.Config{Logger: log, Providers: []ring.Provider{
		logs,
		ringkv.New(ringkv.Config{Store: stores}),
		ringfetch.New(ringfetch.Config{AllowLoopback: f.fetchLoopback, AllowPrivate: f.fetchPrivate}),
		ringrpc.New(ringrpc.Config{Invoker: invoker}),
	}})
	if err != nil {
		return fmt.Errorf("cannot start hostcall providers: %w", err)
	}
	stopStep("hostcalls", func() error { err := host.Close(); stores.Close(); return err })

	var rt *pool.Runtime
	if err := step("runtime", func() (err error) {
		rt, err = pool.New(ctx, pool.Config{
			Ring:         host,
			CacheDir:     filepath.Join(f.data, "compile-cache"),
			SnapshotDir:  filepath.Join(f.data, "snapshots"),
			CodeBudget:   f.codeBudgetMiB << 20,
			StagedMemory: stagedMemory(f.stagedMiB),
			IdleTimeout:  f.idleTimeout,
			Workers:      f.workers,
			Logger:       log,
			// stdout, stderr and faults join the log hostcall's lines in the function's stream.
			Output: func(l pool.OutputLine) {
				logs.Publish(ringlog.Line{Time: time.Now(), Function: l.Function, Stream: l.Stream, Level: l.Level, Message: l.Message, ErrorID: l.ErrorID})
			},
		})
		return err
	}); err != nil {
		return err
	}
	stopStep("runtime", func() error { return rt.Close(context.Background()) })

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %q: %w", f.listen, err)
	}
	cluster, err := newCluster(f, ln.Addr())
	if err != nil {
		_ = ln.Close()
		return err
	}
	toks, err := tenants.Open(ctx, node)
	if err != nil {
		_ = ln.Close()
		return err
	}
	var play *gateway.Playground
	if f.playground {
		play = &gateway.Playground{Build: playgroundBuild, TTL: f.playgroundTTL}
	}
	gw, err := gateway.New(gateway.Config{Listener: ln, Token: token, Registry: reg, Runtime: rt, Logger: log, Logs: logs, Cluster: cluster, Tenants: toks, Playground: play})
	if err != nil {
		_ = ln.Close()
		return err
	}
	// The region's nodes: this one joins once it serves; requests spread over all of them.
	dir, err := nodes.Open(ctx, node, nodes.Options{})
	if err != nil {
		_ = ln.Close()
		return err
	}
	if err := dir.Watch(ctx, func(ms []nodes.Member) {
		if err := cluster.SetMembers(ms); err != nil {
			log.Error("cannot use the node membership", "error", err)
		}
	}); err != nil {
		_ = ln.Close()
		return err
	}
	invoker.gw.Store(gw)
	if err := step("functions", func() error { return gw.Load(ctx) }); err != nil {
		return err
	}
	gw.Start()
	stopStep("gateway", func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return gw.Shutdown(sctx)
	})
	joinCtx, leave := context.WithCancel(context.Background())
	joined, err := dir.Announce(joinCtx, nodes.Member{URL: cluster.Self, Pool: cluster.Pool, Weight: f.weight})
	if err != nil {
		leave()
		return err
	}
	stopStep("membership", func() error { leave(); <-joined; return nil })
	log.Info("gateway listening", "url", gw.URL(), "functions", gw.Functions(), "node", cluster.Self, "pool", cluster.Pool)
	fmt.Printf("wisp: serving on %s\n", gw.URL())
	if f.playground {
		fmt.Printf("wisp: playground at %s/_wisp/playground/\n", gw.URL())
	}

	for _, d := range f.deploy {
		name, path, ok := strings.Cut(d, "=")
		if !ok {
			return fmt.Errorf("--deploy %q: want NAME=PATH", d)
		}
		url, err := deployPath(ctx, client{addr: gw.URL(), token: token}, name, path, deployOptions{})
		if err != nil {
			return fmt.Errorf("--deploy %s: %w", name, err)
		}
		fmt.Printf("wisp: %s deployed; try: curl %s\n", name, url)
	}

	<-ctx.Done()
	log.Info("shutting down", "cause", context.Cause(ctx))
	return nil
}

// newCluster builds the scheduler of this node's gateway from the flags.
func newCluster(f serveFlags, addr net.Addr) (*gateway.Cluster, error) {
	isolated := map[string]string{}
	for _, kv := range f.isolate {
		tenant, p, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--isolate %q: want TENANT=POOL", kv)
		}
		if err := registry.ValidName(tenant); err != nil {
			return nil, fmt.Errorf("--isolate %q: %w", kv, err)
		}
		if err := nodes.ValidPool(p); err != nil {
			return nil, fmt.Errorf("--isolate %q: %w", kv, err)
		}
		if _, dup := isolated[tenant]; dup {
			return nil, fmt.Errorf("--isolate: tenant %q given twice", tenant)
		}
		isolated[tenant] = p
	}
	if err := nodes.ValidPool(f.pool); err != nil {
		return nil, fmt.Errorf("--pool: %w", err)
	}
	if f.weight < 1 || f.weight > 1000 {
		return nil, fmt.Errorf("--weight %d: want 1 to 1000", f.weight)
	}
	sc, err := sched.New(sched.Config{Isolated: isolated})
	if err != nil {
		return nil, fmt.Errorf("--isolate: %w", err)
	}
	self := f.advertise
	if self == "" {
		self = advertiseURL(addr)
	}
	if err := (nodes.Member{URL: self, Pool: f.pool, Weight: f.weight}).Validate(); err != nil {
		return nil, fmt.Errorf("--advertise: %w", err)
	}
	return &gateway.Cluster{Self: strings.TrimSuffix(self, "/"), Pool: f.pool, Sched: sc}, nil
}

// advertiseURL is the default URL of a node listening on addr.
func advertiseURL(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// lateInvoker lets the rpc provider, built before the gateway, call functions through it.
type lateInvoker struct {
	gw atomic.Pointer[gateway.Server]
}

func (l *lateInvoker) Invoke(ctx context.Context, caller, name string, req *abi.Request, fn func(*abi.Response) error) error {
	gw := l.gw.Load()
	if gw == nil {
		return fmt.Errorf("function %q called %q before the gateway started: %w", caller, name, ringrpc.ErrNotFound)
	}
	return gw.Invoke(ctx, caller, name, req, fn)
}

// adminToken returns $WISP_TOKEN, or the token kept in DATA/admin-token, creating it if needed.
func adminToken(data string) (string, error) {
	if t := os.Getenv("WISP_TOKEN"); t != "" {
		return t, nil
	}
	path := filepath.Join(data, "admin-token")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("cannot read admin token %q: %w", path, err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	t := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cannot write admin token %q: %w", path, err)
	}
	return t, nil
}

// natsLogf routes the NATS server's notices to debug and its warnings and errors to warn.
func natsLogf(log *slog.Logger) func(format string, args ...any) {
	return func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if strings.Contains(msg, "error") || strings.Contains(msg, "warning") {
			log.Warn("nats: " + msg)
			return
		}
		log.Debug("nats: " + msg)
	}
}

// stagedMemory turns --staged-memory-mib into pool.Config.StagedMemory, where 0 means the
// default and a negative value none.
func stagedMemory(mib int64) int64 {
	if mib == 0 {
		return -1
	}
	return mib << 20
}

// atLeastTwoProcs gives the Go scheduler two Ps when it would have one (a node pinned to one
// CPU) and GOMAXPROCS is not set. With one P, netpoll's poller holds it through its blocking
// epoll_wait, and a goroutine readied meanwhile waits until the runtime's monitor takes the P
// back: up to 10 ms on an idle node. Measured with the server pinned to one CPU, 100 req/s
// open loop: p99 10.4 ms, max 11.6 ms with one P; 0.65 ms and 1.2 ms with two; closed-loop
// throughput the same within noise (docs/RATIONALE.md).
func atLeastTwoProcs() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
}
