package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/kv/natsnode"
)

// startNode starts an embedded node (a temporary store unless o.Dir or o.URL is set) and
// closes it when the test ends.
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

func open(tb testing.TB, n *natsnode.Node, ns string, o Options) Store {
	tb.Helper()
	s, err := Open(context.Background(), n, ns, o)
	if err != nil {
		tb.Fatalf("Open(%q): %v", ns, err)
	}
	return s
}

func newStore(tb testing.TB) Store {
	tb.Helper()
	return open(tb, startNode(tb, natsnode.Options{}), "test", Options{})
}

func put(tb testing.TB, s Store, key, value string) uint64 {
	tb.Helper()
	rev, err := s.Put(context.Background(), key, []byte(value), 0)
	if err != nil {
		tb.Fatalf("Put(%q): %v", key, err)
	}
	return rev
}

func TestPutGet(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if s.Namespace() != "test" {
		t.Fatalf("Namespace() = %q; want %q", s.Namespace(), "test")
	}
	if _, err := s.Get(ctx, "k"); err != ErrNotFound {
		t.Fatalf("Get of a new key: got %v; want ErrNotFound itself", err)
	}
	before := time.Now()
	rev1 := put(t, s, "k", "v1")
	rev2 := put(t, s, "k", "v2")
	if rev1 == 0 || rev2 <= rev1 {
		t.Fatalf("revisions %d then %d; want increasing from above 0", rev1, rev2)
	}
	e, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if e.Key != "k" || string(e.Value) != "v2" || e.Revision != rev2 {
		t.Fatalf("got %q=%q@%d; want k=v2@%d", e.Key, e.Value, e.Revision, rev2)
	}
	if e.Created.Before(before.Add(-time.Second)) || e.Created.After(time.Now().Add(time.Second)) {
		t.Fatalf("Created = %v; want about now", e.Created)
	}
	if _, err := s.Put(ctx, "empty", nil, 0); err != nil {
		t.Fatalf("Put of an empty value: %v", err)
	}
	if e, err := s.Get(ctx, "empty"); err != nil || len(e.Value) != 0 || e.Revision == 0 {
		t.Fatalf("Get of an empty value: %+v, %v", e, err)
	}
}

func TestConditionalWrites(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	rev, err := s.Create(ctx, "k", []byte("a"), 0)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := s.Create(ctx, "k", []byte("b"), 0); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("Create of an existing key: %v; want ErrRevisionMismatch", err)
	}
	if _, err := s.Update(ctx, "k", []byte("b"), rev+100, 0); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("Update at a wrong revision: %v; want ErrRevisionMismatch", err)
	}
	if _, err := s.Update(ctx, "missing", []byte("b"), rev, 0); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("Update of a missing key: %v; want ErrRevisionMismatch", err)
	}
	rev2, err := s.Update(ctx, "k", []byte("b"), rev, 0)
	if err != nil {
		t.Fatalf("Update at the current revision: %v", err)
	}
	if _, err := s.Update(ctx, "k", []byte("c"), rev, 0); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("second Update at the old revision: %v; want ErrRevisionMismatch", err)
	}
	if err := s.Delete(ctx, "k", rev); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("Delete at an old revision: %v; want ErrRevisionMismatch", err)
	}
	if e, err := s.Get(ctx, "k"); err != nil || string(e.Value) != "b" {
		t.Fatalf("after failed writes: %q, %v; want b", e.Value, err)
	}
	if err := s.Delete(ctx, "k", rev2); err != nil {
		t.Fatalf("Delete at the current revision: %v", err)
	}
	if _, err := s.Get(ctx, "k"); err != ErrNotFound {
		t.Fatalf("Get after Delete: %v; want ErrNotFound", err)
	}
	if _, err := s.Create(ctx, "k", []byte("again"), 0); err != nil {
		t.Fatalf("Create over a deleted key: %v", err)
	}
	if err := s.Delete(ctx, "never-written", 0); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	if _, err := s.Update(ctx, "k", []byte("x"), 0, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Update at revision 0: %v; want ErrInvalid", err)
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for _, k := range []string{"a", "a.b", "a.bc", "a.b.c", "ab", "b.c", "gone", "a.gone"} {
		put(t, s, k, "v")
	}
	put(t, s, "a", "twice")
	for _, k := range []string{"gone", "a.gone"} {
		if err := s.Delete(ctx, k, 0); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a", "a.b", "a.b.c", "a.bc", "ab", "b.c"}},
		{"a", []string{"a", "a.b", "a.b.c", "a.bc", "ab"}},
		{"a.", []string{"a.b", "a.b.c", "a.bc"}},
		{"a.b", []string{"a.b", "a.b.c", "a.bc"}},
		{"a.b.", []string{"a.b.c"}},
		{"b", []string{"b.c"}},
		{"x", nil},
		{"x.y.", nil},
	}
	for _, tt := range tests {
		got, err := s.Keys(ctx, tt.prefix)
		if err != nil {
			t.Fatalf("Keys(%q): %v", tt.prefix, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Keys(%q) = %q; want %q", tt.prefix, got, tt.want)
		}
	}
}

func TestGetMany(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	revs := map[string]uint64{}
	for i := range 300 {
		k := fmt.Sprintf("k.%03d", i)
		if i%3 == 2 {
			continue // never written
		}
		revs[k] = put(t, s, k, "value of "+k)
	}
	if err := s.Delete(ctx, "k.000", 0); err != nil {
		t.Fatal(err)
	}
	delete(revs, "k.000")

	var keys []string
	for i := 299; i >= 0; i-- { // not in stream order; spans two batches
		keys = append(keys, fmt.Sprintf("k.%03d", i))
	}
	keys = append(keys, "k.001", "k.001", "k.002") // repeated keys
	got, err := s.GetMany(ctx, keys)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	if len(got) != len(keys) {
		t.Fatalf("got %d entries for %d keys", len(got), len(keys))
	}
	for i, k := range keys {
		e := got[i]
		rev, ok := revs[k]
		switch {
		case !ok && e.Revision != 0:
			t.Errorf("keys[%d] = %q does not exist; got revision %d", i, k, e.Revision)
		case ok && (e.Key != k || e.Revision != rev || string(e.Value) != "value of "+k):
			t.Errorf("keys[%d] = %q: got %q=%q@%d; want revision %d", i, k, e.Key, e.Value, e.Revision, rev)
		}
	}

	if got, err := s.GetMany(ctx, []string{"none.1", "none.2"}); err != nil || len(got) != 2 || got[0].Revision != 0 || got[1].Revision != 0 {
		t.Fatalf("GetMany of missing keys: %+v, %v; want two empty entries", got, err)
	}
	if got, err := s.GetMany(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("GetMany(nil) = %v, %v", got, err)
	}
	if _, err := s.GetMany(ctx, []string{"ok", "bad key"}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("GetMany with a bad key: %v; want ErrInvalidKey", err)
	}
}

// next receives one event or fails after 10s.
func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	panic("unreachable")
}

func describe(ev Event) string {
	return fmt.Sprintf("%s %s=%s", ev.Op, ev.Key, ev.Value)
}

func expect(t *testing.T, ch <-chan Event, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := describe(next(t, ch)); got != w {
			t.Fatalf("got event %q; want %q", got, w)
		}
	}
}

func TestWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newStore(t)
	put(t, s, "p.a", "1")
	put(t, s, "p.gone", "1")
	put(t, s, "q.a", "1")
	if err := s.Delete(ctx, "p.gone", 0); err != nil {
		t.Fatal(err)
	}

	all, err := s.Watch(ctx, "p.", WatchOptions{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	updates, err := s.Watch(ctx, "p", WatchOptions{UpdatesOnly: true})
	if err != nil {
		t.Fatalf("Watch updates only: %v", err)
	}
	expect(t, all, "put p.a=1", "ready =")
	expect(t, updates, "ready =")

	rev := put(t, s, "p.b", "2")
	put(t, s, "q.b", "2") // outside both prefixes
	if err := s.Delete(ctx, "p.a", 0); err != nil {
		t.Fatal(err)
	}
	put(t, s, "pz", "3") // only in "p"
	for _, ch := range []<-chan Event{all, updates} {
		ev := next(t, ch)
		if describe(ev) != "put p.b=2" || ev.Revision != rev {
			t.Fatalf("got %q@%d; want put p.b=2@%d", describe(ev), ev.Revision, rev)
		}
		expect(t, ch, "delete p.a=")
	}
	expect(t, updates, "put pz=3")

	cancel()
	for _, ch := range []<-chan Event{all, updates} {
		select {
		case _, ok := <-ch:
			for ok {
				_, ok = <-ch
			}
		case <-time.After(5 * time.Second):
			t.Fatal("watch channel not closed 5s after its context ended")
		}
	}
}

func TestTTL(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	w, err := s.Watch(ctx, "", WatchOptions{UpdatesOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, w, "ready =")
	if _, err := s.Put(ctx, "short", []byte("v"), 1500*time.Millisecond); err != nil {
		t.Fatalf("Put with ttl: %v", err)
	}
	if _, err := s.Create(ctx, "created", []byte("v"), time.Second); err != nil {
		t.Fatalf("Create with ttl: %v", err)
	}
	rev, err := s.Put(ctx, "kept", []byte("v"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "kept", []byte("v2"), rev, 0); err != nil {
		t.Fatalf("Update without ttl: %v", err)
	}
	expect(t, w, "put short=v", "put created=v", "put kept=v", "put kept=v2")

	start := time.Now()
	gone := map[string]bool{}
	for len(gone) < 2 {
		ev := next(t, w)
		if ev.Op != OpDelete {
			t.Fatalf("got %q; want expiry deletions", describe(ev))
		}
		gone[ev.Key] = true
	}
	if !gone["short"] || !gone["created"] {
		t.Fatalf("expired %v; want short and created", gone)
	}
	t.Logf("keys with a ttl expired %s after being written", time.Since(start).Round(time.Millisecond))
	for _, k := range []string{"short", "created"} {
		if _, err := s.Get(ctx, k); err != ErrNotFound {
			t.Fatalf("Get(%q) after its ttl: %v; want ErrNotFound", k, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if e, err := s.Get(ctx, "kept"); err != nil || string(e.Value) != "v2" {
		t.Fatalf("key updated without ttl: %q, %v; want it kept", e.Value, err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, natsnode.Options{})
	s := open(t, n, "bad", Options{MaxValueBytes: 100})
	big := bytes.Repeat([]byte("x"), 101)
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"empty key", func() error { _, err := s.Get(ctx, ""); return err }, ErrInvalidKey},
		{"space", func() error { _, err := s.Put(ctx, "a b", nil, 0); return err }, ErrInvalidKey},
		{"wildcard", func() error { _, err := s.Get(ctx, "a.*"); return err }, ErrInvalidKey},
		{"tail wildcard", func() error { _, err := s.Get(ctx, "a.>"); return err }, ErrInvalidKey},
		{"leading dot", func() error { _, err := s.Create(ctx, ".a", nil, 0); return err }, ErrInvalidKey},
		{"trailing dot", func() error { return s.Delete(ctx, "a.", 0) }, ErrInvalidKey},
		{"double dot", func() error { _, err := s.Update(ctx, "a..b", nil, 1, 0); return err }, ErrInvalidKey},
		{"long key", func() error { _, err := s.Get(ctx, strings.Repeat("k", MaxKeyBytes+1)); return err }, ErrInvalidKey},
		{"bad prefix", func() error { _, err := s.Keys(ctx, "a*"); return err }, ErrInvalidKey},
		{"bad watch prefix", func() error { _, err := s.Watch(ctx, ".a", WatchOptions{}); return err }, ErrInvalidKey},
		{"big put", func() error { _, err := s.Put(ctx, "k", big, 0); return err }, ErrTooLarge},
		{"big create", func() error { _, err := s.Create(ctx, "k", big, 0); return err }, ErrTooLarge},
		{"big update", func() error { _, err := s.Update(ctx, "k", big, 1, 0); return err }, ErrTooLarge},
		{"short ttl", func() error { _, err := s.Put(ctx, "k", nil, time.Millisecond); return err }, ErrInvalid},
		{"negative ttl", func() error { _, err := s.Put(ctx, "k", nil, -time.Second); return err }, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v does not wrap ErrInvalid", err)
			}
		})
	}
	if _, err := s.Put(ctx, "k", big[:100], 0); err != nil {
		t.Fatalf("Put at the size limit: %v", err)
	}
	// The bucket's own limit holds writers that skip the store's check.
	if _, err := n.JetStream().Publish(ctx, "$KV.wisp_kv_bad.raw", big); err == nil {
		t.Fatal("the bucket accepted a value over its limit")
	}
}

func TestOpenRejects(t *testing.T) {
	n := startNode(t, natsnode.Options{})
	tests := []struct {
		name string
		ns   string
		o    Options
		want string
	}{
		{"empty namespace", "", Options{}, `invalid namespace ""`},
		{"upper case", "Users", Options{}, `invalid namespace "Users"`},
		{"dot", "a.b", Options{}, `invalid namespace "a.b"`},
		{"history", "ns", Options{History: 65}, "invalid history 65"},
		{"negative value size", "ns", Options{MaxValueBytes: -1}, "invalid max value size -1"},
		{"value over max_payload", "ns", Options{MaxValueBytes: 1 << 20}, "raise the server's max_payload"},
		{"negative bucket size", "ns", Options{MaxBytes: -1}, "invalid max bucket size -1"},
		{"storage", "ns", Options{Storage: "tape"}, `invalid storage "tape"`},
		{"marker ttl", "ns", Options{MarkerTTL: time.Millisecond}, "invalid marker ttl 1ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), n, tt.ns, tt.o)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want ErrInvalid with %q", err, tt.want)
			}
		})
	}
}

func TestOpenOptions(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, natsnode.Options{})
	open(t, n, "mem", Options{Storage: StorageMemory, History: 5, MaxBytes: 1 << 20, MaxValueBytes: 1000, MarkerTTL: time.Hour})
	kv, err := n.JetStream().KeyValue(ctx, "wisp_kv_mem")
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := st.Config()
	if c.Storage.String() != "Memory" || c.History != 5 || c.MaxBytes != 1<<20 || c.MaxValueSize != 1000 || c.LimitMarkerTTL != time.Hour {
		t.Fatalf("bucket config %+v; want memory, history 5, 1 MiB, values up to 1000 bytes, markers for 1h", c)
	}
	// Reopening with other options keeps the bucket as created.
	open(t, n, "mem", Options{})
	if st, err = kv.Status(ctx); err != nil || st.Config().History != 5 {
		t.Fatalf("after reopening: history %d, %v; want 5", st.Config().History, err)
	}
}

func TestNamespacesAreSeparate(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, natsnode.Options{})
	a, b := open(t, n, "a", Options{}), open(t, n, "b", Options{})
	put(t, a, "k", "in a")
	if _, err := b.Get(ctx, "k"); err != ErrNotFound {
		t.Fatalf("namespace b sees a's key: %v", err)
	}
}

func TestDeletedBucket(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, natsnode.Options{})
	s := open(t, n, "doomed", Options{})
	put(t, s, "k", "v")
	if err := n.JetStream().DeleteKeyValue(ctx, "wisp_kv_doomed"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	const want = `namespace "doomed": its bucket KV_wisp_kv_doomed no longer exists`
	_, err := s.Get(ctx, "k")
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Get from a deleted bucket: %v; want an error with %q", err, want)
	}
	_, err = s.Put(ctx, "k", []byte("v"), 0)
	if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Put to a deleted bucket: %v; want an error with %q", err, want)
	}
	if _, err = s.GetMany(ctx, []string{"k"}); err == nil || !strings.Contains(err.Error(), "no longer exists") {
		t.Fatalf("GetMany from a deleted bucket: %v; want it to say the bucket no longer exists", err)
	}
	// Opening it again creates it anew.
	s = open(t, n, "doomed", Options{})
	if _, err := s.Get(ctx, "k"); err != ErrNotFound {
		t.Fatalf("Get from the recreated bucket: %v; want ErrNotFound", err)
	}
}

func TestValidKey(t *testing.T) {
	for _, k := range []string{"a", "A-Z_0=9/x", "a.b.c", "user/42.profile", strings.Repeat("k", MaxKeyBytes)} {
		if err := ValidKey(k); err != nil {
			t.Errorf("ValidKey(%q) = %v; want nil", k, err)
		}
	}
	for _, k := range []string{"", ".", "a.", ".a", "a..b", "a b", "a*", "a>", "ä", "a\x00", "a,b", strings.Repeat("k", MaxKeyBytes+1)} {
		if err := ValidKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidKey(%q) = %v; want ErrInvalidKey", k, err)
		}
	}
}

func TestFilterFor(t *testing.T) {
	tests := map[string]string{"": ">", "a": ">", "a.": "a.>", "a.b": "a.>", "a.b.": "a.b.>", "a.bc.d": "a.bc.>"}
	for prefix, want := range tests {
		if got := filterFor(prefix); got != want {
			t.Errorf("filterFor(%q) = %q; want %q", prefix, got, want)
		}
	}
}

func TestCheckTTL(t *testing.T) {
	tests := []struct{ in, want time.Duration }{
		{0, 0}, {time.Second, time.Second}, {1500 * time.Millisecond, 2 * time.Second}, {time.Hour, time.Hour},
	}
	for _, tt := range tests {
		if got, err := checkTTL(tt.in); err != nil || got != tt.want {
			t.Errorf("checkTTL(%s) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}
