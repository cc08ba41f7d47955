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
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

func newProfileCmd() *cobra.Command {
	var cf clientFlags
	var seconds int
	var out string
	cmd := &cobra.Command{
		Use:   "profile NAME",
		Short: "Take a CPU profile of a function's guest code, by wasm call stack, for go tool pprof",
		Long: `Profile the guest code of function NAME: the requests it serves during the next
--seconds run on instances that sample their wasm call stacks, and the CPU time they use is
written to FILE as a pprof profile (gzipped protobuf). Read it with
go tool pprof -top FILE, or go tool pprof -http=: FILE.

The first profile of a function waits for its code to be compiled once more, with hooks on
every wasm call; while a profile runs, the function's requests run slower (see README).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if out == "" {
				out = name + ".pprof"
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "profiling %s for %ds...\n", name, seconds)
			body, hdr, err := getProfile(cmd.Context(), c, name, seconds)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, body, 0o644); err != nil {
				return err
			}
			fmt.Printf("wrote %s: %s samples of %s requests", out, hdr.Get("X-Wisp-Profile-Samples"), hdr.Get("X-Wisp-Profile-Requests"))
			if s, _ := strconv.ParseFloat(hdr.Get("X-Wisp-Profile-Compile-Seconds"), 64); s > 0 {
				fmt.Printf(" (compiled for profiling first, in %v)", time.Duration(s*float64(time.Second)).Round(time.Millisecond))
			}
			fmt.Printf("\nread it with: go tool pprof -top %s\n", out)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().IntVar(&seconds, "seconds", 10, "how long to profile the function's requests (1 to 60)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the profile to (default NAME.pprof)")
	return cmd
}

// getProfile asks the admin API for a profile and returns its bytes; the server checks the
// arguments. Errors carry the server's message, as client.do's do.
func getProfile(ctx context.Context, c client, name string, seconds int) ([]byte, http.Header, error) {
	path := "/_wisp/profile/" + url.PathEscape(name) + "?seconds=" + strconv.Itoa(seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.addr+path, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, nil, fmt.Errorf("GET %s: %s (%d)", path, e.Error, resp.StatusCode)
		}
		return nil, nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return b, resp.Header, nil
}
