package guest_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/wispfn/wisp/loadtest/guest"
)

func TestHelloIsAValidModuleAndDistinctCopiesDiffer(t *testing.T) {
	wasm, err := guest.Hello()
	if err != nil {
		t.Fatal(err)
	}
	a, b := guest.Distinct(wasm, 1), guest.Distinct(wasm, 2)
	if bytes.Equal(a, b) || bytes.Equal(a, wasm) {
		t.Fatal("distinct copies are not distinct")
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	for _, m := range [][]byte{wasm, a} {
		cm, err := rt.CompileModule(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := cm.ExportedFunctions()["wisp_handle"]; !ok {
			t.Fatal("embedded hello lacks wisp_handle")
		}
	}
}
