package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/wispfn/wisp/gateway"
	"github.com/wispfn/wisp/sdk/build"
)

// playgroundBuildTimeout bounds one playground build: a JavaScript function's first build
// fetches and compiles the engine's modules.
const playgroundBuildTimeout = 5 * time.Minute

// playgroundBuild is the playground's builder (gateway.Playground.Build): the source becomes a
// function directory of its own (main.go or index.js alone) that wisp build compiles with the
// go tool found in PATH.
func playgroundBuild(ctx context.Context, lang string, source []byte) ([]byte, error) {
	var file string
	switch lang {
	case "go":
		file = "main.go"
	case "js":
		file = "index.js"
	default:
		return nil, fmt.Errorf("%w: no language %q", gateway.ErrBuild, lang)
	}
	tmp, err := os.MkdirTemp("", "wisp-playground-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "function")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, file), source, 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(tmp, "function.wasm")
	ctx, cancel := context.WithTimeout(ctx, playgroundBuildTimeout)
	defer cancel()
	if err := build.Build(ctx, build.Options{Dir: dir, Out: out}); err != nil {
		if errors.Is(err, exec.ErrNotFound) || ctx.Err() != nil {
			return nil, err // the node's fault: no go tool, or out of time
		}
		// The user knows the function as its one file: drop the temporary directory's name.
		msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("cannot build %q: ", dir))
		msg = strings.ReplaceAll(msg, dir+string(filepath.Separator), "")
		msg = strings.ReplaceAll(msg, dir, ".")
		return nil, fmt.Errorf("%w:\n%s", gateway.ErrBuild, msg)
	}
	return os.ReadFile(out)
}
