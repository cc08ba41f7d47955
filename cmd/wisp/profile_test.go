package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	pprof "github.com/google/pprof/profile"

	"github.com/wispfn/wisp/sdk/build/buildtest"
)

// TestProfileCommand: wisp profile writes NAME.pprof (or -o FILE) with the guest's stacks, and
// says what is wrong with bad arguments.
func TestProfileCommand(t *testing.T) {
	p := startWisp(t, t.TempDir())
	wasm := filepath.Join(t.TempDir(), "busy.wasm")
	if err := os.WriteFile(wasm, buildtest.Wasm(t, "busy"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.cli("deploy", "busy", wasm); err != nil {
		t.Fatalf("deploy: %v", err)
	}

	// With load, into the default file in the working directory.
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-quit:
				return
			default:
			}
			resp, err := http.Get(p.url + "/busy/sieve?n=300000")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("GET /busy/sieve: %s", resp.Status)
				return
			}
		}
	}()
	dir := t.TempDir()
	cmd := exec.Command(wispBin, "profile", "busy", "--seconds", "1", "--addr", p.url)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WISP_TOKEN="+e2eToken)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	close(quit)
	wg.Wait()
	if err != nil || !strings.Contains(stdout.String(), "wrote busy.pprof") {
		t.Fatalf("wisp profile: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	prof := readProfile(t, filepath.Join(dir, "busy.pprof"))
	found := false
	for _, s := range prof.Sample {
		for _, l := range s.Location {
			found = found || l.Line[0].Function.Name == "main.sieve"
		}
	}
	if !found {
		t.Fatalf("%d samples, none in main.sieve", len(prof.Sample))
	}

	// Without load, into -o FILE: valid and empty.
	out := filepath.Join(t.TempDir(), "idle.pprof")
	if _, err := p.cli("profile", "busy", "--seconds", "1", "-o", out); err != nil {
		t.Fatalf("wisp profile -o: %v", err)
	}
	if prof := readProfile(t, out); len(prof.Sample) != 0 {
		t.Fatalf("%d samples of an idle function; want none", len(prof.Sample))
	}

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"zero seconds", []string{"profile", "busy", "--seconds", "0"}, "seconds"},
		{"too many seconds", []string{"profile", "busy", "--seconds", "61"}, "seconds"},
		{"unknown function", []string{"profile", "nope", "--seconds", "1"}, "no function named"},
		{"no name", []string{"profile"}, "arg"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := p.cli(tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want it to mention %q", err, tt.want)
			}
		})
	}
}

func readProfile(t *testing.T, path string) *pprof.Profile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prof, err := pprof.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return prof
}
