package kvwatch

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wispfn/wisp/kv/natsnode"
)

func setup(t *testing.T) (*natsnode.Node, jetstream.KeyValue) {
	t.Helper()
	n, err := natsnode.Start(context.Background(), natsnode.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	kv, err := n.JetStream().CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "kvwatch"})
	if err != nil {
		t.Fatal(err)
	}
	return n, kv
}

// collect starts a watch that reports its updates as strings on the returned channel, and
// closes it when the watch ends.
func collect(t *testing.T, ctx context.Context, n *natsnode.Node, kv jetstream.KeyValue, o Options, stopAfter int) <-chan string {
	t.Helper()
	out := make(chan string, 100)
	delivered := 0
	deliver := func(u Update) bool {
		switch u.Kind {
		case Ready:
			out <- "ready"
		case Reset:
			out <- "reset"
		default:
			out <- fmt.Sprintf("%s=%s", u.Entry.Key(), u.Entry.Value())
		}
		delivered++
		return delivered != stopAfter
	}
	// end closes out: a second call would panic.
	if err := Start(ctx, n, kv, o, deliver, func() { close(out) }); err != nil {
		t.Fatal(err)
	}
	return out
}

func put(t *testing.T, kv jetstream.KeyValue, key, value string) {
	t.Helper()
	if _, err := kv.PutString(context.Background(), key, value); err != nil {
		t.Fatal(err)
	}
}

func expect(t *testing.T, ch <-chan string, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatalf("watch ended; want %q", w)
			}
			if got != w {
				t.Fatalf("got %q; want %q", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("nothing within 10s; want %q", w)
		}
	}
}

func expectEnd(t *testing.T, ch <-chan string) {
	t.Helper()
	select {
	case got, ok := <-ch:
		if ok {
			t.Fatalf("got %q; want the end of the watch", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch not ended within 10s")
	}
}

func TestStateThenReadyThenChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, kv := setup(t)
	put(t, kv, "a.1", "x")
	put(t, kv, "b.1", "y")
	all := collect(t, ctx, n, kv, Options{Filters: []string{"a.>"}}, 0)
	updates := collect(t, ctx, n, kv, Options{UpdatesOnly: true}, 0)
	expect(t, all, "a.1=x", "ready")
	expect(t, updates, "ready")
	put(t, kv, "a.2", "z")
	expect(t, all, "a.2=z")
	expect(t, updates, "a.2=z")
	cancel()
	for _, ch := range []<-chan string{all, updates} {
		for range ch {
		}
	}
}

func TestDeliverFalseEnds(t *testing.T) {
	ctx := context.Background()
	n, kv := setup(t)
	ch := collect(t, ctx, n, kv, Options{UpdatesOnly: true}, 2)
	expect(t, ch, "ready")
	put(t, kv, "k", "1")
	expect(t, ch, "k=1")
	put(t, kv, "k", "2")
	expectEnd(t, ch)
}

func TestNodeCloseEnds(t *testing.T) {
	n, kv := setup(t)
	ch := collect(t, context.Background(), n, kv, Options{}, 0)
	expect(t, ch, "ready")
	n.Close()
	expectEnd(t, ch)
}

func TestStartFailsOnMissingBucket(t *testing.T) {
	n, kv := setup(t)
	if err := n.JetStream().DeleteKeyValue(context.Background(), "kvwatch"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := Start(ctx, n, kv, Options{}, func(Update) bool { return true }, func() {})
	if err == nil {
		t.Fatal("Start succeeded on a deleted bucket")
	}
}
