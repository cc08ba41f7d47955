//go:build ignore

// Command gen writes sdk_gen.go and js_gen.go from the SDK sources in ../go and ../js; `go
// generate` runs it.
package main

import (
	"log"
	"os"

	"github.com/wispfn/wisp/sdk/bundle/internal/bundlegen"
)

func main() {
	for _, b := range bundlegen.Bundles {
		src, err := bundlegen.Render(b)
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(b.Output, src, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
