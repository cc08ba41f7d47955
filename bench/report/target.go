package report

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Target is a server to measure: start this command, wait until Ready
// answers 200, run the Setup commands, check that Path answers with
// Expect, then load Path. In every string, {addr} becomes the server's
// 127.0.0.1:port and {dir} a scratch directory of its own.
type Target struct {
	Name string
	// Prepare runs before the server starts (building what it serves).
	Prepare [][]string
	Command []string
	Env     []string // added to the environment of every command
	Ready   string   // path polled until it answers 200
	Setup   [][]string
	Path    string
	Host    string // Host header, when routing needs one
	Expect  string // substring of the body Path must answer with
	// StartTimeout bounds Prepare, start and Setup together (default 2 minutes).
	StartTimeout time.Duration
}

// server is a started Target.
type server struct {
	t    Target
	addr string
	dir  string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// expand substitutes {addr} and {dir} in s.
func (s *server) expand(v string) string {
	return strings.NewReplacer("{addr}", s.addr, "{dir}", s.dir).Replace(v)
}

func (s *server) expandAll(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = s.expand(a)
	}
	return out
}

// freeAddr returns a 127.0.0.1 address with a port nothing listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("cannot find a free port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// start prepares and starts t, pinned to cpus with taskset when both are
// given, and returns once it is ready and set up. The caller stops it.
func start(ctx context.Context, t Target, workDir, taskset, cpus string) (*server, error) {
	timeout := t.StartTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(workDir, t.Name+"-")
	if err != nil {
		return nil, fmt.Errorf("cannot create a scratch directory: %w", err)
	}
	s := &server{t: t, addr: addr, dir: dir, done: make(chan struct{})}
	for _, argv := range t.Prepare {
		if err := s.run(ctx, argv); err != nil {
			return nil, err
		}
	}
	if s.log, err = os.Create(filepath.Join(dir, "server.log")); err != nil {
		return nil, fmt.Errorf("cannot create the server log: %w", err)
	}
	argv := s.expandAll(t.Command)
	if taskset != "" && cpus != "" {
		argv = append([]string{taskset, "-c", cpus}, argv...)
	}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Env = append(os.Environ(), t.Env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group: stop reaches its children
	if err := s.cmd.Start(); err != nil {
		_ = s.log.Close()
		return nil, fmt.Errorf("cannot start %s: %w", t.Name, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		s.stop()
		return nil, err
	}
	for _, argv := range t.Setup {
		if err := s.run(ctx, argv); err != nil {
			s.stop()
			return nil, err
		}
	}
	if err := s.check(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// run runs one Prepare or Setup command to completion.
func (s *server) run(ctx context.Context, argv []string) error {
	argv = s.expandAll(argv)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), s.t.Env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cannot run %q for %s: %w: %s", strings.Join(argv, " "), s.t.Name, err, lastLines(out.String(), 5))
	}
	return nil
}

// waitReady polls Ready until it answers 200, the process exits, or ctx ends.
func (s *server) waitReady(ctx context.Context) error {
	url := "http://" + s.addr + s.expand(s.t.Ready)
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("%s exited before it was ready (%v): %s", s.t.Name, s.err, s.logTail(5))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w: %s", s.t.Name, url, ctx.Err(), s.logTail(5))
		case <-tick.C:
		}
	}
}

// check asks Path once and wants a 200 with Expect in the body: a target
// that answers fast with the wrong thing is not measured.
func (s *server) check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url(), nil)
	if err != nil {
		return err
	}
	if s.t.Host != "" {
		req.Host = s.t.Host
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("cannot get %s from %s: %w", s.url(), s.t.Name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(s.t.Expect)) {
		return fmt.Errorf("%s answered %s with %d %q; want 200 and %q", s.t.Name, s.url(), resp.StatusCode, lastLines(string(body), 3), s.t.Expect)
	}
	return nil
}

func (s *server) url() string { return "http://" + s.addr + s.expand(s.t.Path) }

func (s *server) pid() int { return s.cmd.Process.Pid }

// cpu returns the CPU time the server process has used so far.
func (s *server) cpu() (time.Duration, bool) { return processCPU(s.pid()) }

// stop ends the server's process group: SIGTERM, then SIGKILL after 10
// seconds. It returns once the process has exited.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.done
	}
	_ = s.log.Close()
}

func (s *server) logTail(n int) string {
	b, err := os.ReadFile(s.log.Name())
	if err != nil {
		return ""
	}
	return lastLines(string(b), n)
}

// lastLines returns the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// errSkipped marks a target that cannot run here, with the reason.
type errSkipped struct{ reason string }

func (e *errSkipped) Error() string { return e.reason }

func skipped(format string, args ...any) error { return &errSkipped{fmt.Sprintf(format, args...)} }

func isSkipped(err error) (string, bool) {
	var s *errSkipped
	if errors.As(err, &s) {
		return s.reason, true
	}
	return "", false
}
