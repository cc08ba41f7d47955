package nodes

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/kv/natsnode"
)

func startNode(t *testing.T, o natsnode.Options) *natsnode.Node {
	t.Helper()
	if o.Dir == "" && o.URL == "" {
		o.Dir = t.TempDir()
	}
	n, err := natsnode.Start(context.Background(), o)
	if err != nil {
		t.Fatalf("natsnode.Start: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// recorder keeps what Watch reports.
type recorder struct {
	mu   sync.Mutex
	last []Member
	seen chan struct{}
}

func newRecorder() *recorder { return &recorder{seen: make(chan struct{}, 100)} }

func (r *recorder) onChange(ms []Member) {
	r.mu.Lock()
	r.last = ms
	r.mu.Unlock()
	select {
	case r.seen <- struct{}{}:
	default:
	}
}

// waitFor waits until the membership's URLs are want, in order.
func (r *recorder) waitFor(t *testing.T, want ...string) []Member {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		r.mu.Lock()
		var got []string
		for _, m := range r.last {
			got = append(got, m.URL)
		}
		last := r.last
		r.mu.Unlock()
		if strings.Join(got, " ") == strings.Join(want, " ") {
			return last
		}
		select {
		case <-r.seen:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("membership %v; want %v", got, want)
		}
	}
}

func TestAnnounceWatchLeave(t *testing.T) {
	n := startNode(t, natsnode.Options{})
	ctx := t.Context()
	d, err := Open(ctx, n, Options{TTL: 2 * time.Second, Heartbeat: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a := Member{URL: "http://127.0.0.1:1001", Pool: "shared", Weight: 1}
	actx, stopA := context.WithCancel(ctx)
	doneA, err := d.Announce(actx, a)
	if err != nil {
		t.Fatal(err)
	}

	r := newRecorder()
	if err := d.Watch(ctx, r.onChange); err != nil {
		t.Fatal(err)
	}
	got := r.waitFor(t, a.URL) // reported before Watch returned
	if got[0].Pool != "shared" || got[0].Weight != 1 || got[0].Seen.IsZero() {
		t.Fatalf("member %+v", got[0])
	}

	b := Member{URL: "http://127.0.0.1:1002", Pool: "private", Weight: 3}
	bctx, stopB := context.WithCancel(ctx)
	defer stopB()
	if _, err := d.Announce(bctx, b); err != nil {
		t.Fatal(err)
	}
	got = r.waitFor(t, a.URL, b.URL)
	if got[1].Pool != "private" || got[1].Weight != 3 {
		t.Fatalf("member %+v", got[1])
	}

	// Heartbeats keep a member past its TTL.
	time.Sleep(3 * time.Second)
	r.waitFor(t, a.URL, b.URL)

	// Leaving removes it at once.
	stopA()
	<-doneA
	r.waitFor(t, b.URL)
}

// A node that stops announcing without leaving (killed) drops out after the TTL.
func TestSilentMemberExpires(t *testing.T) {
	n := startNode(t, natsnode.Options{})
	ctx := t.Context()
	d, err := Open(ctx, n, Options{TTL: 2 * time.Second, Heartbeat: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	if err := d.Watch(ctx, r.onChange); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t)
	m := Member{URL: "http://127.0.0.1:1003", Pool: "shared", Weight: 1}
	// One put, as a node that announced once and died would leave.
	if _, err := d.kv.Put(ctx, key(m.URL), []byte(`{"url":"http://127.0.0.1:1003","pool":"shared","weight":1}`)); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, m.URL)
	start := time.Now()
	r.waitFor(t)
	if gone := time.Since(start); gone < time.Second {
		t.Fatalf("a silent member dropped out after %s; want about the TTL (2s)", gone)
	}
}

// Entries that are not announcements are ignored, not trusted.
func TestIgnoresForeignEntries(t *testing.T) {
	n := startNode(t, natsnode.Options{})
	ctx := t.Context()
	d, err := Open(ctx, n, Options{})
	if err != nil {
		t.Fatal(err)
	}
	good := Member{URL: "http://127.0.0.1:1004", Pool: "shared", Weight: 2}
	for k, v := range map[string]string{
		"n.junk":                     "not json",
		key("http://x"):              `{"url":"http://x","pool":"shared","weight":1}`,              // no port
		"n.misplaced":                `{"url":"http://127.0.0.1:1005","pool":"shared","weight":1}`, // key not its URL's
		key("http://127.0.0.1:1006"): `{"url":"http://127.0.0.1:1006","pool":"Bad Pool","weight":1}`,
	} {
		if _, err := d.kv.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Announce(ctx, good); err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	if err := d.Watch(ctx, r.onChange); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, good.URL)
}

func TestBadInput(t *testing.T) {
	n := startNode(t, natsnode.Options{})
	ctx := t.Context()
	for _, o := range []Options{{TTL: 500 * time.Millisecond}, {TTL: 2 * time.Second, Heartbeat: 1500 * time.Millisecond}, {Heartbeat: -1}} {
		if _, err := Open(ctx, n, o); err == nil {
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
	d, err := Open(ctx, n, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []Member{
		{URL: "", Pool: "shared", Weight: 1},
		{URL: "https://127.0.0.1:1", Pool: "shared", Weight: 1},
		{URL: "http://127.0.0.1", Pool: "shared", Weight: 1},
		{URL: "http://127.0.0.1:1/x", Pool: "shared", Weight: 1},
		{URL: "http://127.0.0.1:1", Pool: "", Weight: 1},
		{URL: "http://127.0.0.1:1", Pool: "Shared", Weight: 1},
		{URL: "http://127.0.0.1:1", Pool: "shared", Weight: 0},
		{URL: "http://127.0.0.1:1", Pool: "shared", Weight: 1001},
	} {
		if _, err := d.Announce(ctx, m); err == nil {
			t.Errorf("Announce(%+v) succeeded", m)
		}
	}
}
