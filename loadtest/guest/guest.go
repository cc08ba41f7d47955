// Package guest carries the Go hello function (examples/hello) as a wasm module inside the wisp
// binary, so load scenarios can deploy it without a Go toolchain or a build step.
package guest

import (
	_ "embed"
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

//go:generate go run ../internal/genguest ../../examples/hello hello.wasm.zst

//go:embed hello.wasm.zst
var helloZst []byte

// Hello returns examples/hello compiled to wasm. It answers "Hello WASM from Golang!".
func Hello() ([]byte, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	wasm, err := dec.DecodeAll(helloZst, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot decompress the embedded hello guest: %w", err)
	}
	return wasm, nil
}

// Distinct returns a copy of wasm made unique by a custom section holding i: the same behaviour,
// but a different module to every cache (compiled code, snapshots), so nothing is shared.
func Distinct(wasm []byte, i int) []byte {
	const name = "wisp-distinct"
	payload := binary.AppendUvarint(nil, uint64(len(name)))
	payload = append(payload, name...)
	payload = binary.AppendUvarint(payload, uint64(i))
	out := append([]byte(nil), wasm...)
	out = append(out, 0) // custom section id
	out = binary.AppendUvarint(out, uint64(len(payload)))
	return append(out, payload...)
}
