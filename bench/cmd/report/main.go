// Command report is make bench: it runs the Go microbenchmarks, measures
// the native baseline, Wisp and workerd, prints one table and writes
// bench/results/latest.json and latest.html (make bench-quick: a reduced
// run that prints its JSON).
//
// Each load test runs in a child process of this binary (-worker), pinned
// with taskset to the CPUs the servers do not use.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/wispfn/wisp/bench/report"
	"github.com/wispfn/wisp/loadtest"
)

func main() {
	var o report.Options
	var (
		worker  = flag.Bool("worker", false, "run one load test: loadtest.Config as JSON on stdin, loadtest.Result as JSON on stdout")
		out     = flag.String("out", "bench/results", "directory for latest.json, latest.html and micro.txt (quick.json with -quick)")
		asJSON  = flag.Bool("json", false, "print the report as JSON instead of the table (the default with -quick)")
		noMicro = flag.Bool("no-micro", false, "skip the Go microbenchmarks")
	)
	flag.BoolVar(&o.Quick, "quick", false, "reduced run (under 90 s): native and Wisp, 3 s each, 50% rate only; prints JSON")
	flag.StringVar(&o.Native, "native", "bin/nativehello", "native baseline server binary (go build -o bin/nativehello ./bench/nativehello)")
	flag.StringVar(&o.Wisp, "wisp", "bin/wisp", "wisp binary; skipped with a note when missing")
	flag.StringVar(&o.Example, "example", "examples/hello", "function directory Wisp serves")
	flag.StringVar(&o.Workerd, "workerd", "", "workerd binary (default: the one make bench-peers installs under .peers/, if any)")
	flag.StringVar(&o.WorkerdConfig, "workerd-config", "bench/workerd/config.capnp", "workerd config serving the JS hello")
	flag.IntVar(&o.MicroCount, "micro-count", 5, "runs of each microbenchmark (go test -count)")
	flag.StringVar(&o.MicroBenchtime, "micro-benchtime", "300ms", "go test -benchtime of each microbenchmark run")
	flag.DurationVar(&o.MicroTimeout, "micro-timeout", 4*time.Minute, "time limit of all microbenchmarks together")
	flag.StringVar(&o.Client, "client", "", "load generator client: epoll, netconn or hertz (default: "+loadtest.DefaultClient+")")
	flag.BoolVar(&o.BusyPoll, "busy-poll", false, "generator spins instead of sleeping (only when pinned); exact on an otherwise idle machine, worse on a shared one")
	flag.IntVar(&o.Retries, "retries", 0, "runs of a scenario again while other processes use the CPUs (default 1, quick 2; -1 for none)")
	flag.BoolVar(&o.NoPin, "no-pin", false, "do not pin servers and generator to separate CPUs")
	flag.DurationVar(&o.ClosedDuration, "closed", 0, "closed-loop run length (default 10s, quick 3s)")
	flag.DurationVar(&o.OpenDuration, "open", 0, "open-loop run length per rate (default 10s, quick 3s)")
	flag.DurationVar(&o.Warmup, "warmup", 0, "warm-up before each run (default 1s, quick 0.5s)")
	flag.Parse()
	if flag.NArg() > 0 {
		fail(fmt.Errorf("unexpected arguments %q", flag.Args()))
	}
	if *worker {
		if err := runWorker(); err != nil {
			fail(err)
		}
		return
	}

	o.Micro = !*noMicro
	if _, err := os.Stat(o.Native); err != nil {
		fail(fmt.Errorf("cannot use the native baseline %q: %w (go build -o bin/nativehello ./bench/nativehello)", o.Native, err))
	}
	if _, err := os.Stat(o.Wisp); err != nil {
		o.Wisp = ""
	}
	if o.Workerd == "" {
		if m, _ := filepath.Glob(".peers/node_modules/@cloudflare/workerd-*/bin/workerd"); len(m) > 0 {
			o.Workerd = m[0]
		}
	}
	taskset, _ := exec.LookPath("taskset")
	o.Generate = func(ctx context.Context, cfg loadtest.Config, cpus string) (*loadtest.Result, error) {
		return generate(ctx, cfg, taskset, cpus)
	}
	o.Progress = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := report.Run(ctx, o)
	if rep != nil {
		paths, werr := rep.WriteFiles(*out)
		for _, p := range paths {
			fmt.Fprintf(os.Stderr, "wrote %s\n", p)
		}
		if werr != nil {
			err = errors.Join(err, werr)
		}
		if o.Quick || *asJSON {
			werr = rep.WriteJSON(os.Stdout)
		} else {
			werr = rep.WriteTable(os.Stdout)
		}
		err = errors.Join(err, werr)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(1)
}

// generate runs one load test in a child process (this binary, -worker),
// pinned to cpus when taskset is there, so the generator has the CPUs to
// itself and its CPU time is its own.
func generate(ctx context.Context, cfg loadtest.Config, taskset, cpus string) (*loadtest.Result, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find this binary to run the generator: %w", err)
	}
	argv := []string{self, "-worker"}
	if taskset != "" && cpus != "" {
		argv = append([]string{taskset, "-c", cpus}, argv...)
	}
	in, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("load generator: %w: %s", err, stderr.String())
	}
	var res loadtest.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("cannot read the load generator's result: %w", err)
	}
	return &res, nil
}

// runWorker is the child side of generate.
func runWorker() error {
	var cfg loadtest.Config
	if err := json.NewDecoder(os.Stdin).Decode(&cfg); err != nil {
		return fmt.Errorf("cannot read the load test config: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := loadtest.Run(ctx, cfg)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// limitedBuffer keeps the first 16 MiB written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 16<<20 - b.Len(); room < len(p) {
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
