package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/kv/natsnode"
)

func versionList(fns []Function) string {
	var b strings.Builder
	for _, f := range fns {
		fmt.Fprintf(&b, "%d", f.Version)
		if f.RollbackOf != 0 {
			fmt.Fprintf(&b, "(of %d)", f.RollbackOf)
		}
		b.WriteByte(' ')
	}
	return strings.TrimSpace(b.String())
}

func TestVersionsAndRollback(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t)
	d1 := putCode(t, r, module(1, 100))
	d2 := putCode(t, r, module(2, 200))
	d3 := putCode(t, r, module(3, 300))
	deploy(t, r, Function{Name: "fn", Digest: d1, Route: "/one", Env: map[string]string{"V": "1"}})
	deploy(t, r, Function{Name: "fn", Digest: d2, Route: "/two"})
	deploy(t, r, Function{Name: "fn", Digest: d3, Route: "/three", RollbackOf: 7}) // RollbackOf is ignored

	vs, err := r.Versions(ctx, "fn")
	if err != nil {
		t.Fatal(err)
	}
	if got := versionList(vs); got != "1 2 3" {
		t.Fatalf("Versions: %s; want 1 2 3", got)
	}

	// 0 goes back to the version before the current one.
	before := time.Now()
	f, err := r.Rollback(ctx, "fn", 0)
	if err != nil {
		t.Fatalf("Rollback to the previous version: %v", err)
	}
	if f.Version != 4 || f.RollbackOf != 2 || f.Digest != d2 || f.Route != "/two" || f.Size != 200 || f.Created.Before(before) {
		t.Fatalf("Rollback: got %+v; want version 4, a copy of version 2 created now", f)
	}
	if cur, err := r.Get(ctx, "fn"); err != nil || cur.Version != 4 || cur.Digest != d2 {
		t.Fatalf("current after Rollback: %+v, %v; want version 4 with version 2's code", cur, err)
	}

	// An explicit version, itself from before a rollback.
	f, err = r.Rollback(ctx, "fn", 1)
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 5 || f.RollbackOf != 1 || f.Digest != d1 || f.Env["V"] != "1" {
		t.Fatalf("Rollback to 1: got %+v", f)
	}
	// 0 after a rollback goes to the version that was current before it.
	if f, err = r.Rollback(ctx, "fn", 0); err != nil || f.RollbackOf != 4 || f.Digest != d2 {
		t.Fatalf("Rollback after a rollback: %+v, %v; want a copy of version 4", f, err)
	}
	// A later deploy moves on as usual.
	if f := deploy(t, r, Function{Name: "fn", Digest: d3}); f.Version != 7 || f.RollbackOf != 0 {
		t.Fatalf("deploy after rollbacks: %+v; want version 7", f)
	}
	vs, err = r.Versions(ctx, "fn")
	if err != nil {
		t.Fatal(err)
	}
	if got := versionList(vs); got != "1 2 3 4(of 2) 5(of 1) 6(of 4) 7" {
		t.Fatalf("Versions: %s", got)
	}
	if l, err := r.List(ctx); err != nil || len(l) != 1 || l[0].Version != 7 {
		t.Fatalf("List: %+v, %v", l, err)
	}

	deploy(t, r, Function{Name: "single", Digest: d1})
	tests := []struct {
		name    string
		fn      string
		version uint64
		want    error
		text    string
	}{
		{"current version", "fn", 7, ErrInvalid, "it is the current version"},
		{"first version", "single", 0, ErrInvalid, "version 1 is its first"},
		{"no such version", "fn", 99, ErrNotFound, "version 99"},
		{"no such function", "nothing", 1, ErrNotFound, `"nothing"`},
		{"bad name", "Bad", 1, ErrInvalid, `"Bad"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Rollback(ctx, tt.fn, tt.version)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("got %v; want %v with %q", err, tt.want, tt.text)
			}
		})
	}
	if _, err := r.Versions(ctx, "nothing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Versions of a missing function: %v; want ErrNotFound", err)
	}
	if err := r.Delete(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Versions(ctx, "fn"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Versions after Delete: %v; want ErrNotFound", err)
	}
}

func TestWatchSeesRollback(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newRegistry(t)
	d1 := putCode(t, r, module(1, 100))
	d2 := putCode(t, r, module(2, 100))
	deploy(t, r, Function{Name: "fn", Digest: d1})
	deploy(t, r, Function{Name: "fn", Digest: d2})
	ch, err := r.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Function == nil || ev.Function.Version != 2 {
		t.Fatalf("got %+v; want fn@2", ev)
	}
	if ev := next(t, ch); !ev.Ready {
		t.Fatalf("got %+v; want Ready", ev)
	}
	if _, err := r.Rollback(ctx, "fn", 0); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Name != "fn" || ev.Function == nil || ev.Function.Version != 3 || ev.Function.Digest != d1 || ev.Function.RollbackOf != 1 {
		t.Fatalf("got %+v; want the rollback as fn@3 with version 1's code", ev)
	}
}

// TestRollbackRacesDeploys: rollbacks and deploys of one name get distinct versions, and the
// current version is the highest one.
func TestRollbackRacesDeploys(t *testing.T) {
	ctx := context.Background()
	r := openRegistry(t, startNode(t, natsnode.Options{Sync: "2m"}))
	digest := putCode(t, r, module(1, 100))
	deploy(t, r, Function{Name: "hot", Digest: digest})
	deploy(t, r, Function{Name: "hot", Digest: digest})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[uint64]bool{}
	)
	record := func(f Function, err error) {
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[f.Version] {
			t.Errorf("version %d handed out twice", f.Version)
		}
		seen[f.Version] = true
	}
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if w == 0 {
					record(r.Rollback(ctx, "hot", 1))
				} else {
					record(r.Deploy(ctx, Function{Name: "hot", Digest: digest}))
				}
			}
		}()
	}
	wg.Wait()
	cur, err := r.Get(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(2 + 15); cur.Version != want {
		t.Fatalf("current version %d; want %d, the highest", cur.Version, want)
	}
}

// TestWatchAcrossReconnect: changes made while a watcher's connection is down are reported
// once it is back, as differences from what the watcher was told.
func TestWatchAcrossReconnect(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	srv := startNode(t, natsnode.Options{Dir: dir, Listen: "127.0.0.1:0"})
	addr := strings.TrimPrefix(srv.URL(), "nats://")
	client := startNode(t, natsnode.Options{URL: srv.URL()})
	r := openRegistry(t, srv)
	digest := putCode(t, r, module(1, 100))
	for _, name := range []string{"kept", "removed", "changed"} {
		deploy(t, r, Function{Name: name, Digest: digest})
	}
	ch, err := openRegistry(t, client).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if ev := next(t, ch); ev.Function == nil {
			t.Fatalf("got %+v; want the initial state", ev)
		}
	}
	if ev := next(t, ch); !ev.Ready {
		t.Fatalf("got %+v; want Ready", ev)
	}

	srv.Close()
	for client.Connected() {
		time.Sleep(10 * time.Millisecond)
	}
	// The server comes back and functions change before the client reconnects (it waits
	// a second between attempts).
	r2 := openRegistry(t, startNode(t, natsnode.Options{Dir: dir, Listen: addr}))
	if err := r2.Delete(ctx, "removed"); err != nil {
		t.Fatal(err)
	}
	deploy(t, r2, Function{Name: "changed", Digest: digest})
	deploy(t, r2, Function{Name: "added", Digest: digest})

	got := map[string]string{}
	for len(got) < 3 {
		ev := next(t, ch)
		if ev.Ready {
			t.Fatal("a second Ready event")
		}
		desc := "deleted"
		if ev.Function != nil {
			desc = fmt.Sprintf("version %d", ev.Function.Version)
		}
		if _, dup := got[ev.Name]; dup {
			t.Fatalf("two events for %q", ev.Name)
		}
		got[ev.Name] = desc
	}
	want := map[string]string{"removed": "deleted", "changed": "version 2", "added": "version 1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events after reconnecting: %v; want %v", got, want)
	}
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %+v (kept did not change)", ev)
	case <-time.After(200 * time.Millisecond):
	}
}
