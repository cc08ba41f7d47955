//go:build linux

package cowmem

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero/api"
)

// memoryModule returns a module with a memory of pages pages (no maximum, no
// data segments) and three functions:
//
//	load(addr i32) i32         ;; i32.load8_u
//	store(addr i32, v i32)     ;; i32.store8
//	grow(delta i32) i32        ;; memory.grow
func memoryModule(pages byte) []byte {
	section := func(id byte, payload ...byte) []byte {
		return append([]byte{id, byte(len(payload))}, payload...)
	}
	body := func(code ...byte) []byte {
		return append([]byte{byte(len(code) + 1), 0}, code...) // size, no locals
	}
	var code []byte
	code = append(code, 3)
	code = append(code, body(0x20, 0, 0x2d, 0, 0, 0x0b)...)          // local.get 0; i32.load8_u; end
	code = append(code, body(0x20, 0, 0x20, 1, 0x3a, 0, 0, 0x0b)...) // local.get 0; local.get 1; i32.store8; end
	code = append(code, body(0x20, 0, 0x40, 0, 0x0b)...)             // local.get 0; memory.grow 0; end
	exports := []byte{4}
	for _, e := range []struct {
		name  string
		kind  byte
		index byte
	}{{"memory", 2, 0}, {"load", 0, 0}, {"store", 0, 1}, {"grow", 0, 2}} {
		exports = append(exports, byte(len(e.name)))
		exports = append(exports, e.name...)
		exports = append(exports, e.kind, e.index)
	}
	m := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	m = append(m, section(1, 2, 0x60, 1, 0x7f, 1, 0x7f, 0x60, 2, 0x7f, 0x7f, 0)...) // types
	m = append(m, section(3, 3, 0, 1, 0)...)                                        // functions
	m = append(m, section(5, 1, 0, pages)...)                                       // memory
	m = append(m, section(7, exports...)...)
	m = append(m, section(10, code...)...)
	return m
}

// testModule calls a module's exports, failing the test on error.
type testModule struct {
	t   *testing.T
	mod api.Module
}

func (m *testModule) call(name string, params ...uint64) uint64 {
	m.t.Helper()
	res, err := m.mod.ExportedFunction(name).Call(context.Background(), params...)
	if err != nil {
		m.t.Fatalf("%s(%v): %v", name, params, err)
	}
	if len(res) == 0 {
		return 0
	}
	return uint64(uint32(res[0]))
}
