// Package playground holds the playground's page (gateway.Playground): one HTML file with its
// script and styles inline, so the page needs nothing but the gateway that serves it.
package playground

import _ "embed"

// Page is the playground's HTML.
//
//go:embed index.html
var Page []byte
