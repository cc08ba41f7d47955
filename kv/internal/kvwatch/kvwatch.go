// Package kvwatch keeps a watch of a JetStream key-value bucket going for as long as its owner
// wants it, across lost connections, and says when the watcher must start over.
package kvwatch

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wispfn/wisp/kv/natsnode"
)

// Kind says what an Update carries.
type Kind uint8

const (
	// Entry carries a key's new value, or its deletion (Entry.Operation says which).
	Entry Kind = iota
	// Ready follows the keys' state at the start of the watch (at once with UpdatesOnly).
	// Every later Update is a change.
	Ready
	// Reset says the watch was interrupted and started over: changes between the last Update
	// and this one may be missing. The state follows again (unless UpdatesOnly), then Ready.
	Reset
)

// Update is one message of a watch.
type Update struct {
	Kind  Kind
	Entry jetstream.KeyValueEntry // set for Kind Entry
}

// Options configures Start.
type Options struct {
	// Filters are the subject filters of the keys to watch ("fn.*", "a.>"); none means all.
	Filters []string
	// UpdatesOnly skips the state at the start: only changes are delivered.
	UpdatesOnly bool
}

// Retry delays after a watch is lost.
const (
	minRetry = 50 * time.Millisecond
	maxRetry = 5 * time.Second
)

// Start watches kv, a bucket of node n, and hands each update to deliver, in order, on a
// goroutine of its own. The first watch is made before Start returns, so an error (no such
// bucket) comes back at once; later interruptions are repaired in the background: when the
// connection to NATS comes back (n.Reconnected) or the watch ends by itself, the watch is
// made again, with growing delays while that fails, and Reset delivered before its first
// update.
//
// Delivery stops when ctx ends, n closes, or deliver returns false; then end is called, once.
// deliver holds up the watch while it runs, so it must return when ctx ends or n closes.
func Start(ctx context.Context, n *natsnode.Node, kv jetstream.KeyValue, o Options, deliver func(Update) bool, end func()) error {
	reconnected := n.Reconnected()
	w, err := watch(ctx, kv, o)
	if err != nil {
		return err
	}
	go func() {
		w := run(ctx, n, kv, o, w, reconnected, deliver)
		end()
		// Stopping a watch deletes its consumer, a request that waits out its timeout while
		// NATS is unreachable: the owner need not wait for that.
		if w != nil {
			stop(w)
		}
	}()
	return nil
}

func watch(ctx context.Context, kv jetstream.KeyValue, o Options) (jetstream.KeyWatcher, error) {
	var opts []jetstream.WatchOpt
	if o.UpdatesOnly {
		opts = append(opts, jetstream.UpdatesOnly())
	}
	filters := append([]string(nil), o.Filters...) // WatchFiltered rewrites its argument
	return kv.WatchFiltered(ctx, filters, opts...)
}

// run delivers updates until the owner stops, and returns the watch still open then, if any.
func run(ctx context.Context, n *natsnode.Node, kv jetstream.KeyValue, o Options, w jetstream.KeyWatcher, reconnected <-chan struct{}, deliver func(Update) bool) jetstream.KeyWatcher {
	send := func(u Update) bool {
		select {
		case <-ctx.Done():
			return false
		case <-n.Done():
			return false
		default:
			return deliver(u)
		}
	}
	if o.UpdatesOnly && !send(Update{Kind: Ready}) {
		return w
	}
	for {
		if !pump(ctx, n, w, reconnected, send) {
			return w
		}
		stop(w)
		// Lost: make the watch again until that works or the owner stops.
		for delay := minRetry; ; delay = min(2*delay, maxRetry) {
			select {
			case <-ctx.Done():
				return nil
			case <-n.Done():
				return nil
			case <-time.After(delay):
			}
			reconnected = n.Reconnected()
			var err error
			if w, err = watch(ctx, kv, o); err == nil {
				break
			}
		}
		if !send(Update{Kind: Reset}) || o.UpdatesOnly && !send(Update{Kind: Ready}) {
			return w
		}
	}
}

// pump forwards w's updates until the watch is lost (true) or the owner stops (false).
func pump(ctx context.Context, n *natsnode.Node, w jetstream.KeyWatcher, reconnected <-chan struct{}, send func(Update) bool) bool {
	for {
		select {
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return true
			case e == nil:
				if !send(Update{Kind: Ready}) {
					return false
				}
			default:
				if !send(Update{Kind: Entry, Entry: e}) {
					return false
				}
			}
		case <-reconnected:
			return true
		case <-ctx.Done():
			return false
		case <-n.Done():
			return false
		}
	}
}

// stop stops w and drains its channel, so that the subscription's callback, which may be
// blocked sending to a full channel, can return and the channel be closed.
func stop(w jetstream.KeyWatcher) {
	_ = w.Stop()
	for range w.Updates() {
	}
}
