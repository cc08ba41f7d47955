package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/sdk/build"
)

// client talks to a Wisp gateway's admin API.
type client struct {
	addr  string
	token string
	http  http.Client
}

type clientFlags struct {
	addr      string
	tokenFile string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	addr := os.Getenv("WISP_ADDR")
	if addr == "" {
		addr = "http://127.0.0.1:8080"
	}
	cmd.Flags().StringVar(&f.addr, "addr", addr, "gateway URL ($WISP_ADDR)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "./data/admin-token", "file holding the admin token, read when $WISP_TOKEN is unset")
}

func (f *clientFlags) client() (client, error) {
	tok := os.Getenv("WISP_TOKEN")
	if tok == "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return client{}, fmt.Errorf("no admin token: set WISP_TOKEN or pass --token-file (%v)", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	u, err := url.Parse(f.addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return client{}, fmt.Errorf("--addr %q must be an http(s) URL such as http://127.0.0.1:8080", f.addr)
	}
	return client{addr: strings.TrimRight(f.addr, "/"), token: tok}, nil
}

// do sends an admin request and decodes a JSON answer into out (if non-nil). A non-2xx answer
// becomes an error carrying the server's message.
func (c *client) do(ctx context.Context, method, path string, hdr http.Header, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.addr+path, body)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s (%d)", method, path, e.Error, resp.StatusCode)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

type deployOptions struct {
	route        string
	host         string
	memoryMiB    int
	timeout      time.Duration
	maxInstances int
	env          []string
	warmUp       bool
	fetchAllow   []string
	kvNamespace  string
	tenant       string
	ttl          time.Duration
}

type deployed struct {
	Name    string `json:"name"`
	Version uint64 `json:"version"`
	URL     string `json:"url"`
}

// deployPath deploys a .wasm file, or builds a function directory first. It returns the URL to try.
func deployPath(ctx context.Context, c client, name, path string, o deployOptions) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		out := filepath.Join(os.TempDir(), fmt.Sprintf("wisp-%s-%d.wasm", name, os.Getpid()))
		defer os.Remove(out)
		if err := build.Build(ctx, build.Options{Dir: path, Out: out, Stdout: os.Stderr, Stderr: os.Stderr}); err != nil {
			return "", err
		}
		path = out
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	body := enc.EncodeAll(wasm, nil)
	q := url.Values{}
	if o.route != "" {
		q.Set("route", o.route)
	}
	if o.host != "" {
		q.Set("host", o.host)
	}
	if o.memoryMiB > 0 {
		q.Set("memory_mib", strconv.Itoa(o.memoryMiB))
	}
	if o.timeout > 0 {
		q.Set("timeout_ms", strconv.FormatInt(o.timeout.Milliseconds(), 10))
	}
	if o.maxInstances > 0 {
		q.Set("max_instances", strconv.Itoa(o.maxInstances))
	}
	for _, e := range o.env {
		q.Add("env", e)
	}
	if o.warmUp {
		q.Set("warmup", "true")
	}
	for _, h := range o.fetchAllow {
		q.Add("fetch_allow", h)
	}
	if o.kvNamespace != "" {
		q.Set("kv_namespace", o.kvNamespace)
	}
	if o.tenant != "" {
		q.Set("tenant", o.tenant)
	}
	if o.ttl != 0 {
		q.Set("ttl", o.ttl.String())
	}
	p := "/_wisp/functions/" + url.PathEscape(name)
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var d deployed
	hdr := http.Header{"Content-Encoding": {"zstd"}, "Content-Type": {"application/wasm"}}
	if err := c.do(ctx, http.MethodPut, p, hdr, bytes.NewReader(body), &d); err != nil {
		return "", err
	}
	return d.URL, nil
}

func newDeployCmd() *cobra.Command {
	var cf clientFlags
	var o deployOptions
	cmd := &cobra.Command{
		Use:   "deploy NAME FILE.wasm|DIR",
		Short: "Deploy a function (building it first if given a directory)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			u, err := deployPath(cmd.Context(), c, args[0], args[1], o)
			if err != nil {
				return err
			}
			fmt.Printf("%s deployed: %s\n", args[0], u)
			return nil
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&o.route, "route", "", "path prefix that reaches the function (default /NAME)")
	fl.StringVar(&o.host, "host", "", "Host name whose every path reaches the function")
	fl.IntVar(&o.memoryMiB, "memory-mib", 0, "linear memory limit in MiB (default 128)")
	fl.DurationVar(&o.timeout, "timeout", 0, "wall-clock deadline per request (default 10s)")
	fl.IntVar(&o.maxInstances, "max-instances", 0, "live instances at most (default 64)")
	fl.StringArrayVar(&o.env, "env", nil, "KEY=VALUE environment variable of the function; repeatable")
	fl.BoolVar(&o.warmUp, "warmup", false, "serve one synthetic GET / before the snapshot, so lazy first-request work is done once")
	fl.StringArrayVar(&o.fetchAllow, "fetch-allow", nil, "host the function may fetch from (api.example.com, *.example.com, optionally :PORT); repeatable; none: any public host")
	fl.StringVar(&o.tenant, "tenant", "", "the tenant the function belongs to (an isolated tenant runs only on its own pool of nodes)")
	fl.StringVar(&o.kvNamespace, "kv-namespace", "", "Global KV namespace of the function's kv calls, shared by a tenant's functions (default: its own)")
	fl.DurationVar(&o.ttl, "ttl", 0, "delete the function this long after the deploy (1s to 720h; default: it stays)")
	return cmd
}

func newListCmd() *cobra.Command {
	var cf clientFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [NAME]",
		Short: "List deployed functions, or the versions of one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				return listVersions(cmd.Context(), c, args[0], asJSON)
			}
			var out struct {
				Functions []struct {
					Name          string    `json:"name"`
					Version       uint64    `json:"version"`
					Route         string    `json:"route"`
					Host          string    `json:"host"`
					Size          int64     `json:"size"`
					Created       time.Time `json:"created"`
					Expires       time.Time `json:"expires"`
					LiveInstances int       `json:"live_instances"`
					URL           string    `json:"url"`
				} `json:"functions"`
			}
			if err := c.do(cmd.Context(), http.MethodGet, "/_wisp/functions", nil, nil, &out); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(out)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tVERSION\tROUTE\tHOST\tSIZE\tINSTANCES\tCREATED\tEXPIRES")
			for _, f := range out.Functions {
				expires := "-"
				if !f.Expires.IsZero() {
					expires = f.Expires.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\n", f.Name, f.Version, f.Route, f.Host, f.Size, f.LiveInstances, f.Created.Format(time.RFC3339), expires)
			}
			return w.Flush()
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// listVersions prints every stored version of a function, newest last, marking the current one.
func listVersions(ctx context.Context, c client, name string, asJSON bool) error {
	var cur struct {
		Version uint64 `json:"version"`
	}
	if err := c.do(ctx, http.MethodGet, "/_wisp/functions/"+url.PathEscape(name), nil, nil, &cur); err != nil {
		return err
	}
	var out struct {
		Versions []struct {
			Version    uint64    `json:"version"`
			Digest     string    `json:"digest"`
			Size       int64     `json:"size"`
			Route      string    `json:"route"`
			Created    time.Time `json:"created"`
			RollbackOf uint64    `json:"rollback_of,omitempty"`
		} `json:"versions"`
	}
	if err := c.do(ctx, http.MethodGet, "/_wisp/functions/"+url.PathEscape(name)+"/versions", nil, nil, &out); err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"current": cur.Version, "versions": out.Versions})
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tDIGEST\tSIZE\tROUTE\tCREATED\tNOTE")
	for _, v := range out.Versions {
		var note []string
		if v.Version == cur.Version {
			note = append(note, "current")
		}
		if v.RollbackOf != 0 {
			note = append(note, fmt.Sprintf("rollback to %d", v.RollbackOf))
		}
		fmt.Fprintf(w, "%d\t%.12s\t%d\t%s\t%s\t%s\n", v.Version, v.Digest, v.Size, v.Route, v.Created.Format(time.RFC3339), strings.Join(note, ", "))
	}
	return w.Flush()
}

func newRemoveCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a function",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodDelete, "/_wisp/functions/"+url.PathEscape(args[0]), nil, nil, nil); err != nil {
				return err
			}
			fmt.Printf("%s removed\n", args[0])
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

func newInvokeCmd() *cobra.Command {
	var cf clientFlags
	var data, method, path string
	var headers []string
	cmd := &cobra.Command{
		Use:   "invoke NAME",
		Short: "Call a function by name and print its response body",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var body []byte
			switch {
			case strings.HasPrefix(data, "@"):
				if body, err = os.ReadFile(data[1:]); err != nil {
					return fmt.Errorf("--data: %w", err)
				}
			default:
				body = []byte(data)
			}
			if method == "" {
				method = http.MethodGet
				if len(body) > 0 {
					method = http.MethodPost
				}
			}
			if !strings.HasPrefix(path, "/") {
				path = "/" + path
			}
			req, err := http.NewRequestWithContext(cmd.Context(), method, c.addr+"/_wisp/invoke/"+url.PathEscape(args[0])+path, bytes.NewReader(body))
			if err != nil {
				return err
			}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return fmt.Errorf("-H %q: want 'Name: value'", h)
				}
				req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			req.Header.Set("Authorization", "Bearer "+c.token)
			resp, err := c.http.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
				return err
			}
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("%s answered %s", args[0], resp.Status)
			}
			return nil
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&data, "data", "d", "", "request body, or @FILE to read it from a file")
	fl.StringVarP(&method, "method", "X", "", "HTTP method (default GET, or POST with --data)")
	fl.StringVar(&path, "path", "/", "path the function sees")
	fl.StringArrayVarP(&headers, "header", "H", nil, "'Name: value' request header; repeatable")
	return cmd
}

func newBuildCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "build DIR",
		Short: "Build a Go or JavaScript function directory to a wasm module with the stock Go toolchain",
		Long: `Build a function directory into a WASI reactor module.

A Go function is package main calling faas.Start: the directory may hold just main.go, or be a
module with its own go.mod. A JavaScript function is a directory holding index.js (and no Go
files) that calls run(handler) or addEventListener("fetch", ...): it is built into the goja
engine, and its script is run once to check that it compiles and registers a handler.
The Wisp SDKs come inside this binary, so nothing is fetched for them; the JavaScript engine's
third-party modules (goja and its dependencies) come through GOPROXY on first use.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				out = filepath.Base(filepath.Clean(args[0])) + ".wasm"
			}
			start := time.Now()
			if err := build.Build(cmd.Context(), build.Options{Dir: args[0], Out: out, Stdout: os.Stderr, Stderr: os.Stderr}); err != nil {
				return err
			}
			st, err := os.Stat(out)
			if err != nil {
				return err
			}
			fmt.Printf("built %s (%d bytes) in %v\n", out, st.Size(), time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "output file (default DIR.wasm)")
	return cmd
}

func newLogsCmd() *cobra.Command {
	var cf clientFlags
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a function's recent log lines; -f keeps following new ones",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			u := c.addr + "/_wisp/logs/" + url.PathEscape(args[0])
			if follow {
				u += "?follow=1"
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+c.token)
			resp, err := c.http.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				return fmt.Errorf("logs %s: %s: %s", args[0], resp.Status, bytes.TrimSpace(b))
			}
			_, err = io.Copy(os.Stdout, resp.Body)
			return err
		},
	}
	cf.register(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new lines")
	return cmd
}

func newRollbackCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "rollback NAME [VERSION]",
		Short: "Serve an earlier version again (default: the one before the current), as a new version",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			p := "/_wisp/functions/" + url.PathEscape(args[0]) + "/rollback"
			if len(args) == 2 {
				if _, err := strconv.ParseUint(args[1], 10, 64); err != nil {
					return fmt.Errorf("VERSION %q must be a positive integer", args[1])
				}
				p += "?version=" + args[1]
			}
			var d struct {
				Version    uint64 `json:"version"`
				RollbackOf uint64 `json:"rollback_of"`
			}
			if err := c.do(cmd.Context(), http.MethodPost, p, nil, nil, &d); err != nil {
				return err
			}
			fmt.Printf("%s rolled back: version %d (a copy of version %d)\n", args[0], d.Version, d.RollbackOf)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}
