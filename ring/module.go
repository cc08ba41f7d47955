package ring

import (
	"context"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Instantiate defines the host module "wisp" in r. Call it once per wazero runtime, before
// instantiating guests that import it; the module serves every Instance of this Host.
func (h *Host) Instantiate(ctx context.Context, r wazero.Runtime) error {
	i32 := api.ValueTypeI32
	b := r.NewHostModuleBuilder(ModuleName)
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostSubmit), []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("event_id", "provider_id", "data_ptr", "data_len").
		Export("submit")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostPoll), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("event_id_ptr", "size_ptr").
		Export("poll")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostWait), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("event_id_ptr", "size_ptr").
		Export("wait")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostRead), []api.ValueType{i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("event_id", "provider_id", "data_ptr").
		Export("read")
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("cannot instantiate the %q host module: %w", ModuleName, err)
	}
	return nil
}

// The host functions translate guest pointers and hand over to the Instance found in ctx.
// A pointer that does not lie in guest memory yields CodeBadAddress; nothing here panics on guest
// input.

func hostSubmit(ctx context.Context, mod api.Module, stack []uint64) {
	in := instanceFrom(ctx)
	if in == nil {
		stack[0] = api.EncodeI32(CodeNoRequest.ret())
		return
	}
	id, provider := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	ptr, n := api.DecodeU32(stack[2]), api.DecodeU32(stack[3])
	if int64(n) > int64(in.lim.MaxPayload) {
		stack[0] = api.EncodeI32(refuse(CodeTooLarge))
		return
	}
	payload, ok := mod.Memory().Read(ptr, n)
	if !ok {
		stack[0] = api.EncodeI32(refuse(CodeBadAddress))
		return
	}
	stack[0] = api.EncodeI32(in.Submit(id, provider, payload))
}

func hostPoll(ctx context.Context, mod api.Module, stack []uint64) {
	next(ctx, mod, stack, (*Instance).Poll)
}

func hostWait(ctx context.Context, mod api.Module, stack []uint64) {
	next(ctx, mod, stack, (*Instance).Wait)
}

func next(ctx context.Context, mod api.Module, stack []uint64, op func(*Instance) (uint32, uint32, int32)) {
	in := instanceFrom(ctx)
	if in == nil {
		stack[0] = api.EncodeI32(CodeNoRequest.ret())
		return
	}
	idPtr, sizePtr := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	mem := mod.Memory()
	// Check both pointers before taking a completion, so a bad one loses nothing.
	if _, ok := mem.Read(idPtr, 4); !ok {
		stack[0] = api.EncodeI32(refuse(CodeBadAddress))
		return
	}
	if _, ok := mem.Read(sizePtr, 4); !ok {
		stack[0] = api.EncodeI32(refuse(CodeBadAddress))
		return
	}
	id, size, ret := op(in)
	if ret >= 0 {
		mem.WriteUint32Le(idPtr, id)
		mem.WriteUint32Le(sizePtr, size)
	}
	stack[0] = api.EncodeI32(ret)
}

func hostRead(ctx context.Context, mod api.Module, stack []uint64) {
	in := instanceFrom(ctx)
	if in == nil {
		stack[0] = api.EncodeI32(CodeNoRequest.ret())
		return
	}
	id, provider, ptr := api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	c, code := in.take(id, provider)
	if code != CodeOK {
		stack[0] = api.EncodeI32(refuse(code))
		return
	}
	if !mod.Memory().Write(ptr, c.out) {
		stack[0] = api.EncodeI32(refuse(CodeBadAddress))
		return
	}
	in.release(c)
	stack[0] = 0
}
