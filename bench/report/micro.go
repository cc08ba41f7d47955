package report

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Micro is the Go microbenchmarks' outcome. Their raw output, in benchstat
// format, is in File.
type Micro struct {
	Status     string      `json:"status"` // "ok", "partial" (MicroTimeout hit), "failed" or "skipped"
	Note       string      `json:"note,omitempty"`
	File       string      `json:"file,omitempty"`
	Packages   []string    `json:"packages,omitempty"`
	Benchmarks []Benchmark `json:"benchmarks,omitempty"`

	raw []byte // go test's output, written by WriteFiles
}

// Benchmark is one microbenchmark's median over its runs.
type Benchmark struct {
	Package     string  `json:"package"`
	Name        string  `json:"name"`
	Runs        int     `json:"runs"`
	NsPerOp     float64 `json:"ns_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
}

var benchFunc = regexp.MustCompile(`(?m)^func Benchmark\w*\(\w+ \*testing\.B\)`)

// benchPackages lists the packages under dir whose tests have benchmarks.
func benchPackages(ctx context.Context, dir string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-f",
		`{{.ImportPath}}|{{.Dir}}|{{join .TestGoFiles ","}},{{join .XTestGoFiles ","}}`, "./...")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("cannot list packages: %w: %s", err, lastLines(stderr.String(), 3))
	}
	var pkgs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "|", 3)
		if len(f) != 3 {
			continue
		}
		for _, name := range strings.Split(f[2], ",") {
			if name == "" {
				continue
			}
			src, err := os.ReadFile(filepath.Join(f[1], name))
			if err == nil && benchFunc.Match(src) {
				pkgs = append(pkgs, f[0])
				break
			}
		}
	}
	return pkgs, nil
}

// runMicro runs the microbenchmarks one package at a time (-p 1: they must
// not share the CPUs) and keeps their output.
func runMicro(ctx context.Context, o *Options) *Micro {
	m := &Micro{Status: "ok"}
	ctx, cancel := context.WithTimeout(ctx, o.MicroTimeout)
	defer cancel()
	pkgs := o.MicroPackages
	if len(pkgs) == 0 {
		var err error
		if pkgs, err = benchPackages(ctx, o.ModuleDir); err != nil {
			m.Status, m.Note = "failed", err.Error()
			return m
		}
	}
	if len(pkgs) == 0 {
		m.Status, m.Note = "skipped", "no package has benchmarks"
		return m
	}
	m.Packages = pkgs
	args := []string{"test", "-p", "1", "-run", "^$", "-bench", ".", "-benchmem",
		"-count", strconv.Itoa(o.MicroCount), "-benchtime", o.MicroBenchtime,
		"-timeout", o.MicroTimeout.String()}
	cmd := exec.CommandContext(ctx, "go", append(args, pkgs...)...)
	cmd.Dir = o.ModuleDir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	m.raw = out.Bytes()
	m.Benchmarks = parseBench(out.Bytes())
	if err != nil {
		m.Status = "failed"
		var failed []string
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(line, "FAIL\t") || strings.HasPrefix(line, "--- FAIL") {
				failed = append(failed, strings.TrimSpace(line))
			}
		}
		m.Note = fmt.Sprintf("go test: %v; %s", err, strings.Join(failed, "; "))
		if ctx.Err() != nil {
			m.Status = "partial"
			m.Note = fmt.Sprintf("stopped after %v (MicroTimeout); the results so far are kept", o.MicroTimeout)
		}
	}
	return m
}

// parseBench reads `go test -bench` output and returns each benchmark's
// median over its runs, in order of first appearance.
func parseBench(out []byte) []Benchmark {
	type runs struct {
		pkg, name         string
		ns, bytes, allocs []float64
	}
	var order []string
	byKey := map[string]*runs{}
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		key := pkg + " " + f[0]
		r := byKey[key]
		if r == nil {
			r = &runs{pkg: pkg, name: f[0]}
			byKey[key] = r
			order = append(order, key)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				r.ns = append(r.ns, v)
			case "B/op":
				r.bytes = append(r.bytes, v)
			case "allocs/op":
				r.allocs = append(r.allocs, v)
			}
		}
	}
	out2 := make([]Benchmark, 0, len(order))
	for _, key := range order {
		r := byKey[key]
		out2 = append(out2, Benchmark{Package: r.pkg, Name: r.name, Runs: len(r.ns),
			NsPerOp: median(r.ns), BytesPerOp: median(r.bytes), AllocsPerOp: median(r.allocs)})
	}
	return out2
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
