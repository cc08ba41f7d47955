//go:build ignore

// Command gen writes sdk_gen.go from the SDK sources in ../go; `go generate` runs it.
package main

import (
	"log"
	"os"

	"github.com/wispfn/wisp/sdk/bundle/internal/bundlegen"
)

func main() {
	src, err := bundlegen.Render("../go")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(bundlegen.Output, src, 0o644); err != nil {
		log.Fatal(err)
	}
}
