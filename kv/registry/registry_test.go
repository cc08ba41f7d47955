package registry

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wispfn/wisp/kv/natsnode"
)

// startNode starts an embedded node on dir (a new temporary one if empty) and closes it when
// the test ends.
func startNode(tb testing.TB, o natsnode.Options) *natsnode.Node {
	tb.Helper()
	if o.Dir == "" && o.URL == "" {
		o.Dir = tb.TempDir()
	}
	n, err := natsnode.Start(context.Background(), o)
	if err != nil {
		tb.Fatalf("natsnode.Start: %v", err)
	}
	tb.Cleanup(func() { n.Close() })
	return n
}

func openRegistry(tb testing.TB, n *natsnode.Node, opts ...Option) *Registry {
	tb.Helper()
	r, err := Open(context.Background(), n, opts...)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return r
}

func newRegistry(tb testing.TB, opts ...Option) *Registry {
	tb.Helper()
	return openRegistry(tb, startNode(tb, natsnode.Options{}), opts...)
}

// module returns size bytes that start like a wasm module and compress about as well as one.
func module(seed uint64, size int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	words := make([][]byte, 64)
	for i := range words {
		w := make([]byte, 2+rng.IntN(10))
		for j := range w {
			w[j] = byte(rng.Uint32())
		}
		words[i] = w
	}
	b := append(make([]byte, 0, size+16), 0, 'a', 's', 'm', 1, 0, 0, 0)
	for len(b) < size {
		b = append(b, words[rng.IntN(len(words))]...)
	}
	return b[:size]
}

func putCode(tb testing.TB, r *Registry, wasm []byte) string {
	tb.Helper()
	d, err := r.PutCode(context.Background(), wasm)
	if err != nil {
		tb.Fatalf("PutCode: %v", err)
	}
	return d
}

func deploy(tb testing.TB, r *Registry, f Function) Function {
	tb.Helper()
	got, err := r.Deploy(context.Background(), f)
	if err != nil {
		tb.Fatalf("Deploy(%s): %v", f.Name, err)
	}
	return got
}

func TestDeployGetRoundTrip(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t)
	wasm := module(1, 4096)
	digest := putCode(t, r, wasm)

	in := Function{
		Name:    "hello",
		Version: 42, // ignored
		Size:    7,  // ignored
		Digest:  digest,
		Route:   "/hello",
		Host:    "hello.example.com",
		Limits:  Limits{MemoryMiB: 16, TimeoutMs: 250, MaxRequestBytes: 1 << 20, MaxResponseBytes: 2 << 20, MaxInstances: 8},
		Env:     map[string]string{"GREETING": "hi", "EMPTY": ""},
		Created: time.Unix(1, 0), // ignored
	}
	before := time.Now()
	out := deploy(t, r, in)
	if out.Version != 1 {
		t.Fatalf("first deploy: got version %d; want 1", out.Version)
	}
	if out.Size != int64(len(wasm)) {
		t.Fatalf("got size %d; want %d", out.Size, len(wasm))
	}
	if out.Created.Before(before) || out.Created.After(time.Now()) || out.Created.Location() != time.UTC {
		t.Fatalf("got created %v; want a UTC time during the deploy", out.Created)
	}
	want := in
	want.Version, want.Size, want.Created = 1, int64(len(wasm)), out.Created
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("Deploy returned\n%+v\nwant\n%+v", out, want)
	}

	got, err := r.Get(ctx, "hello")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !got.Created.Equal(want.Created) {
		t.Fatalf("got created %v; want %v", got.Created, want.Created)
	}
	got.Created = want.Created
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Get returned\n%+v\nwant\n%+v", got, want)
	}

	v1, err := r.Version(ctx, "hello", 1)
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	v1.Created = want.Created
	if !reflect.DeepEqual(v1, want) {
		t.Fatalf("Version(1) returned\n%+v\nwant\n%+v", v1, want)
	}

	if _, err := r.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(nope): got %v; want ErrNotFound", err)
	}
	if _, err := r.Version(ctx, "hello", 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Version(hello, 2): got %v; want ErrNotFound", err)
	}
}

func TestVersionsIncrease(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t)
	var digests []string
	for i := range 3 {
		d := putCode(t, r, module(uint64(i), 1000))
		digests = append(digests, d)
		f := deploy(t, r, Function{Name: "fn", Digest: d})
		if want := uint64(i + 1); f.Version != want {
			t.Fatalf("deploy %d: got version %d; want %d", i, f.Version, want)
		}
	}
	cur, err := r.Get(ctx, "fn")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Version != 3 || cur.Digest != digests[2] {
		t.Fatalf("Get: got version %d digest %s; want 3 %s", cur.Version, cur.Digest, digests[2])
	}
	for i, d := range digests {
		f, err := r.Version(ctx, "fn", uint64(i+1))
		if err != nil {
			t.Fatalf("Version(%d): %v", i+1, err)
		}
		if f.Digest != d {
			t.Fatalf("Version(%d): got digest %s; want %s", i+1, f.Digest, d)
		}
	}
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Version != 3 {
		t.Fatalf("List: got %+v; want one function at version 3", list)
	}
}

func TestConcurrentDeploysGetDistinctVersions(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, natsnode.Options{})
	// Two registries on one node stand for two processes sharing NATS.
	regs := []*Registry{openRegistry(t, n), openRegistry(t, n)}
	digest := putCode(t, regs[0], module(7, 512))

	const writers, each = 8, 5
	var (
		mu      sync.Mutex
		owner   = map[uint64]string{}
		wg      sync.WaitGroup
		errs    = make(chan error, writers*each)
		highest uint64
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := regs[w%len(regs)]
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				f, err := r.Deploy(ctx, Function{Name: "busy", Digest: digest, Env: map[string]string{"ID": id}})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, ok := owner[f.Version]; ok {
					errs <- fmt.Errorf("version %d given to both %s and %s", f.Version, prev, id)
				}
				owner[f.Version] = id
				highest = max(highest, f.Version)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(owner) != writers*each {
		t.Fatalf("got %d distinct versions; want %d", len(owner), writers*each)
	}
	cur, err := regs[1].Get(ctx, "busy")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Version != highest {
		t.Fatalf("current version %d; want the highest deployed, %d", cur.Version, highest)
	}
	for v, id := range owner {
		f, err := regs[0].Version(ctx, "busy", v)
		if err != nil {
			t.Fatalf("Version(%d): %v", v, err)
		}
		if f.Env["ID"] != id {
			t.Fatalf("Version(%d) holds deploy %s; want %s", v, f.Env["ID"], id)
		}
	}
}

func TestCodeRoundTrip(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t)
	wasm := module(3, 2<<20)
	digest := putCode(t, r, wasm)
	sum := sha256.Sum256(wasm)
	if want := hex.EncodeToString(sum[:]); digest != want {
		t.Fatalf("got digest %s; want %s", digest, want)
	}
	got, err := r.Code(ctx, digest)
	if err != nil {
		t.Fatalf("Code: %v", err)
	}
	if !bytes.Equal(got, wasm) {
		t.Fatalf("Code returned %d bytes differing from the %d stored", len(got), len(wasm))
	}

	info, err := r.code.GetInfo(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size >= uint64(len(wasm)) {
		t.Fatalf("stored %d bytes for a %d-byte module; want it compressed", info.Size, len(wasm))
	}
	again := putCode(t, r, wasm)
	if again != digest {
		t.Fatalf("second PutCode: got digest %s; want %s", again, digest)
	}
	info2, err := r.code.GetInfo(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	if info2.NUID != info.NUID {
		t.Fatal("second PutCode of the same bytes stored them again")
	}

	missing := strings.Repeat("0", 64)
	if _, err := r.Code(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Code(missing): got %v; want ErrNotFound", err)
	}
	if _, err := r.Code(ctx, "../etc/passwd"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Code(bad digest): got %v; want ErrInvalid", err)
	}
}

func TestCodeDetectsDigestMismatch(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t)
	good, evil := module(1, 1000), module(2, 1000)
	sum := sha256.Sum256(good)
	digest := hex.EncodeToString(sum[:])
	// Store other bytes under good's digest, as a corrupted or tampered store would.
	packed := r.enc.EncodeAll(evil, nil)
	if _, err := r.code.Put(ctx, jetstream.ObjectMeta{Name: digest, Metadata: map[string]string{"size": "1000"}}, bytes.NewReader(packed)); err != nil {
		t.Fatal(err)
	}
	_, err := r.Code(ctx, digest)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Code of tampered object: got %v; want a corruption error", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Fatalf("corruption reported as ErrNotFound: %v", err)
	}

	// Bytes that are not zstd at all.
	if _, err := r.code.PutBytes(ctx, digest, []byte("not zstd")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Code(ctx, digest); err == nil || !strings.Contains(err.Error(), "cannot decompress") {
		t.Fatalf("Code of garbage: got %v; want a decompression error", err)
	}
}

func TestPutCodeRejects(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t, WithMaxCodeBytes(1024))
	if _, err := r.PutCode(ctx, module(1, 1024)); err != nil {
		t.Fatalf("PutCode at the limit: %v", err)
	}
	tests := []struct {
		name string
		wasm []byte
		want string
	}{
		{"empty", nil, "invalid code: empty module"},
		{"oversized", module(1, 1025), "module is 1025 bytes, over the limit of 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.PutCode(ctx, tt.wasm)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
}

func TestDefaultMaxCode(t *testing.T) {
	r := newRegistry(t)
	_, err := r.PutCode(context.Background(), make([]byte, DefaultMaxCodeBytes+1))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("PutCode over 64 MiB: got %v; want ErrInvalid", err)
	}
}

func TestDeployRejects(t *testing.T) {
	r := newRegistry(t)
	digest := putCode(t, r, module(1, 100))
	tests := []struct {
		name string
		f    Function
		want string
	}{
		{"bad name", Function{Name: "Hello", Digest: digest}, `invalid function name "Hello"`},
		{"name escaping its key", Function{Name: "a.>", Digest: digest}, `invalid function name "a.>"`},
		{"missing digest", Function{Name: "a"}, "invalid digest: missing"},
		{"malformed digest", Function{Name: "a", Digest: "sha256:abc"}, `invalid digest "sha256:abc"`},
		{"unknown digest", Function{Name: "a", Digest: strings.Repeat("f", 64)}, "no such code; store it with PutCode first"},
		{"route", Function{Name: "a", Digest: digest, Route: "hello"}, `invalid route "hello"`},
		{"negative limit", Function{Name: "a", Digest: digest, Limits: Limits{TimeoutMs: -1}}, "must not be negative"},
		{"env with =", Function{Name: "a", Digest: digest, Env: map[string]string{"A=B": "c"}}, `invalid environment variable "A=B"`},
		{"env with NUL", Function{Name: "a", Digest: digest, Env: map[string]string{"A": "x\x00"}}, `invalid environment variable "A"`},
		{"tenant", Function{Name: "a", Digest: digest, Tenant: "Acme Corp"}, `invalid tenant "Acme Corp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Deploy(context.Background(), tt.f)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
	if list, err := r.List(context.Background()); err != nil || len(list) != 0 {
		t.Fatalf("List after rejected deploys: got %+v, %v; want nothing", list, err)
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"0", true},
		{"hello-world", true},
		{"fn-2", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-a", false},
		{"Hello", false},
		{"a_b", false},
		{"a.b", false},
		{"a*", false},
		{"a>", false},
		{"a/b", false},
		{"a b", false},
		{"ä", false},
		{"a\n", false},
	}
	for _, tt := range tests {
		err := ValidName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidName(%q) = %v; want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "1 to 63 characters of a-z, 0-9 and '-'")) {
			t.Errorf("ValidName(%q) = %q; want ErrInvalid stating the rule", tt.name, err)
		}
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t)
	digest := putCode(t, r, module(1, 100))
	deploy(t, r, Function{Name: "doomed", Digest: digest})
	deploy(t, r, Function{Name: "doomed", Digest: digest})
	deploy(t, r, Function{Name: "doomed-not", Digest: digest})

	if err := r.Delete(ctx, "doomed"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := r.Get(ctx, "doomed"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: got %v; want ErrNotFound", err)
	}
	for v := uint64(1); v <= 2; v++ {
		if _, err := r.Version(ctx, "doomed", v); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Version(%d) after Delete: got %v; want ErrNotFound", v, err)
		}
	}
	if err := r.Delete(ctx, "doomed"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: got %v; want ErrNotFound", err)
	}
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "doomed-not" {
		t.Fatalf("List after Delete: got %+v; want only doomed-not", list)
	}
	if _, err := r.Code(ctx, digest); err != nil {
		t.Fatalf("Delete removed code still used by others: %v", err)
	}
	if f := deploy(t, r, Function{Name: "doomed", Digest: digest}); f.Version != 1 {
		t.Fatalf("deploy after Delete: got version %d; want 1", f.Version)
	}
}

func TestList(t *testing.T) {
	r := newRegistry(t)
	digest := putCode(t, r, module(1, 100))
	for _, name := range []string{"c", "a", "b"} {
		deploy(t, r, Function{Name: name, Digest: digest})
	}
	deploy(t, r, Function{Name: "b", Digest: digest})
	list, err := r.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range list {
		got = append(got, f.Name+"@"+strconv.FormatUint(f.Version, 10))
	}
	if want := []string{"a@1", "b@2", "c@1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("List: got %v; want %v", got, want)
	}
}

// next receives one event or fails the test after a while.
func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event within 5s")
	}
	panic("unreachable")
}

func TestWatch(t *testing.T) {
	r := newRegistry(t)
	digest := putCode(t, r, module(1, 100))
	deploy(t, r, Function{Name: "before", Digest: digest})
	deploy(t, r, Function{Name: "gone", Digest: digest})
	if err := r.Delete(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Name != "before" || ev.Function == nil || ev.Function.Version != 1 {
		t.Fatalf("first event %+v; want the existing function before@1", ev)
	}
	if ev := next(t, ch); !ev.Ready || ev.Name != "" || ev.Function != nil {
		t.Fatalf("second event %+v; want Ready", ev)
	}

	deploy(t, r, Function{Name: "after", Digest: digest, Route: "/after"})
	if ev := next(t, ch); ev.Name != "after" || ev.Function == nil || ev.Function.Route != "/after" {
		t.Fatalf("got %+v; want the deploy of after", ev)
	}
	deploy(t, r, Function{Name: "before", Digest: digest})
	if ev := next(t, ch); ev.Name != "before" || ev.Function == nil || ev.Function.Version != 2 {
		t.Fatalf("got %+v; want before@2", ev)
	}
	if err := r.Delete(context.Background(), "before"); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Name != "before" || ev.Function != nil {
		t.Fatalf("got %+v; want the delete of before", ev)
	}

	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed 5s after its context ended")
		}
	}
}

// TestDeployDeleteHammer races deploys and deletes of one name and checks that the current
// record always has its version record, and that a watcher ends up at the final state.
func TestDeployDeleteHammer(t *testing.T) {
	r := newRegistry(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	digest := putCode(t, r, module(1, 100))
	ch, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				_, err := r.Deploy(ctx, Function{Name: "hot", Digest: digest, Env: map[string]string{"ID": fmt.Sprint(w, i)}})
				if err != nil && !errors.Is(err, ErrConflict) {
					errs <- fmt.Errorf("Deploy: %w", err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 8 {
			if err := r.Delete(ctx, "hot"); err != nil && !errors.Is(err, ErrNotFound) {
				errs <- fmt.Errorf("Delete: %w", err)
			}
			if f, err := r.Get(ctx, "hot"); err == nil {
				if _, err := r.Version(ctx, "hot", f.Version); err != nil {
					errs <- fmt.Errorf("current version %d has no version record: %w", f.Version, err)
				}
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	cur, err := r.Get(ctx, "hot")
	if err == nil {
		if _, err := r.Version(ctx, "hot", cur.Version); err != nil {
			t.Fatalf("final current version %d has no version record: %v", cur.Version, err)
		}
	} else if !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}

	// Events arrive in order: once the marker deploy shows up, the last event for "hot" must
	// be the final state.
	deploy(t, r, Function{Name: "marker", Digest: digest})
	var last *Event
	for {
		ev := next(t, ch)
		if ev.Name == "marker" {
			break
		}
		last = &ev
	}
	switch {
	case last == nil:
		t.Fatal("watch saw no event for hot")
	case errors.Is(err, ErrNotFound) && last.Function != nil:
		t.Fatalf("hot is deleted but the last event is version %d", last.Function.Version)
	case err == nil && (last.Function == nil || last.Function.Version != cur.Version):
		t.Fatalf("hot is at version %d but the last event is %+v", cur.Version, last.Function)
	}
}

func TestOpenIsIdempotent(t *testing.T) {
	n := startNode(t, natsnode.Options{})
	r1 := openRegistry(t, n)
	digest := putCode(t, r1, module(1, 100))
	deploy(t, r1, Function{Name: "kept", Digest: digest})
	r2 := openRegistry(t, n)
	if f, err := r2.Get(context.Background(), "kept"); err != nil || f.Digest != digest {
		t.Fatalf("Get through a second Open: got %+v, %v", f, err)
	}
}

func TestReopenAfterCleanClose(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, natsnode.Options{Dir: dir})
	r := openRegistry(t, n)
	wasm := module(9, 10000)
	digest := putCode(t, r, wasm)
	deploy(t, r, Function{Name: "durable", Digest: digest})
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	checkDurable(t, dir, "durable", 1, wasm)
}

func checkDurable(t *testing.T, dir, name string, version uint64, wasm []byte) {
	t.Helper()
	ctx := context.Background()
	r := openRegistry(t, startNode(t, natsnode.Options{Dir: dir}))
	f, err := r.Get(ctx, name)
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if f.Version != version {
		t.Fatalf("after restart: got version %d; want %d", f.Version, version)
	}
	got, err := r.Code(ctx, f.Digest)
	if err != nil {
		t.Fatalf("Code after restart: %v", err)
	}
	if !bytes.Equal(got, wasm) {
		t.Fatal("code changed across restart")
	}
}

const (
	crashDirEnv  = "WISP_REGISTRY_CRASH_DIR"
	crashSyncEnv = "WISP_REGISTRY_CRASH_SYNC"
)

// TestCrashChild is the process TestSurvivesKill9 kills; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestSurvivesKill9")
	}
	ctx := context.Background()
	n, err := natsnode.Start(ctx, natsnode.Options{Dir: dir, Sync: os.Getenv(crashSyncEnv)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := r.PutCode(ctx, module(5, 300000))
	if err != nil {
		t.Fatal(err)
	}
	var f Function
	for range 5 {
		if f, err = r.Deploy(ctx, Function{Name: "crash", Digest: digest}); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("DEPLOYED %d\n", f.Version)
	// Die at once, before the server's background flusher could run.
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(time.Minute)
	t.Fatal("not killed")
}

// TestSurvivesKill9 deploys in a child process that kills itself with SIGKILL as soon as the
// deploy is acknowledged (no shutdown, no final flush), then finds the deploy and its code in
// the store. Both sync policies hand writes to the kernel before acknowledging them; what
// "always" adds, surviving a power loss, cannot be shown from inside one machine.
func TestSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for _, sync := range []string{"always", "2m"} {
		t.Run("sync="+sync, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
			cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashSyncEnv+"="+sync)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()

			var version uint64
			var log []string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				if v, ok := strings.CutPrefix(line, "DEPLOYED "); ok {
					version, _ = strconv.ParseUint(v, 10, 64)
					break
				}
				log = append(log, line)
			}
			err = cmd.Wait()
			if version == 0 {
				t.Fatalf("child did not deploy (%v):\n%s\n%s", err, strings.Join(log, "\n"), stderr.String())
			}
			if err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("child: got %v; want it killed", err)
			}
			checkDurable(t, dir, "crash", version, module(5, 300000))
		})
	}
}

func TestExternalNodeSeesRegistry(t *testing.T) {
	ctx := context.Background()
	embedded := startNode(t, natsnode.Options{Listen: "127.0.0.1:0"})
	r1 := openRegistry(t, embedded)
	external := startNode(t, natsnode.Options{URL: embedded.URL()})
	r2 := openRegistry(t, external)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := r2.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}

	if ev := next(t, ch); !ev.Ready {
		t.Fatalf("external watch got %+v; want Ready for the empty registry", ev)
	}
	wasm := module(4, 5000)
	digest := putCode(t, r1, wasm)
	deploy(t, r1, Function{Name: "shared", Digest: digest})
	if ev := next(t, ch); ev.Name != "shared" || ev.Function == nil || ev.Function.Version != 1 {
		t.Fatalf("external watch got %+v; want shared@1", ev)
	}
	got, err := r2.Code(ctx, digest)
	if err != nil || !bytes.Equal(got, wasm) {
		t.Fatalf("Code through the external node: %d bytes, %v", len(got), err)
	}
	if f := deploy(t, r2, Function{Name: "shared", Digest: digest}); f.Version != 2 {
		t.Fatalf("deploy through the external node: got version %d; want 2", f.Version)
	}
	if f, err := r1.Get(ctx, "shared"); err != nil || f.Version != 2 {
		t.Fatalf("embedded side: got %+v, %v; want version 2", f, err)
	}
}

func TestCodeOverLimitIsNotDecompressed(t *testing.T) {
	n := startNode(t, natsnode.Options{})
	big := openRegistry(t, n)
	digest := putCode(t, big, module(1, 4096))
	small := openRegistry(t, n, WithMaxCodeBytes(1024))
	_, err := small.Code(context.Background(), digest)
	if err == nil || !strings.Contains(err.Error(), "the limit is 1024 bytes") {
		t.Fatalf("Code of a module over the limit: got %v; want an error naming the limit", err)
	}
}

func TestWatchEndsWhenNodeCloses(t *testing.T) {
	n := startNode(t, natsnode.Options{})
	r := openRegistry(t, n)
	ch, err := r.Watch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	deadline := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case _, ok := <-ch:
			done = !ok
		case <-deadline:
			t.Fatal("watch channel not closed 5s after the node closed")
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}
