package natsnode

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func startEmbedded(t *testing.T, o Options) *Node {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	o.Logf = t.Logf
	n, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// roundTrip writes a key through n and reads it back through other.
func roundTrip(t *testing.T, n, other *Node, key, value string) {
	t.Helper()
	ctx := context.Background()
	kv, err := n.JetStream().CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "natsnode_test"})
	if err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	if _, err := kv.PutString(ctx, key, value); err != nil {
		t.Fatalf("put: %v", err)
	}
	kv2, err := other.JetStream().KeyValue(ctx, "natsnode_test")
	if err != nil {
		t.Fatalf("open bucket: %v", err)
	}
	e, err := kv2.Get(ctx, key)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got := string(e.Value()); got != value {
		t.Fatalf("got %q; want %q", got, value)
	}
}

func TestEmbeddedNoListener(t *testing.T) {
	n := startEmbedded(t, Options{})
	if u := n.URL(); u != "" {
		t.Fatalf("URL() = %q; want \"\" without a listener", u)
	}
	roundTrip(t, n, n, "k", "v")
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n.srv.Running() {
		t.Fatal("server still running after Close")
	}
}

func TestEmbeddedReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	n := startEmbedded(t, Options{Dir: dir, Sync: "2m"})
	roundTrip(t, n, n, "k", "kept")
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	n2 := startEmbedded(t, Options{Dir: dir})
	kv, err := n2.JetStream().KeyValue(context.Background(), "natsnode_test")
	if err != nil {
		t.Fatalf("open bucket after restart: %v", err)
	}
	e, err := kv.Get(context.Background(), "k")
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if got := string(e.Value()); got != "kept" {
		t.Fatalf("got %q; want %q", got, "kept")
	}
}

func TestExternalSeesEmbedded(t *testing.T) {
	n := startEmbedded(t, Options{Listen: "127.0.0.1:0"})
	u := n.URL()
	if !strings.HasPrefix(u, "nats://127.0.0.1:") || strings.HasSuffix(u, ":0") {
		t.Fatalf("URL() = %q; want nats://127.0.0.1:<port>", u)
	}
	ext, err := Start(context.Background(), Options{URL: u, Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start external: %v", err)
	}
	defer ext.Close()
	if got := ext.URL(); got != u {
		t.Fatalf("external URL() = %q; want %q", got, u)
	}
	roundTrip(t, n, ext, "from-embedded", "1")
	roundTrip(t, ext, n, "from-external", "2")
	if err := ext.Close(); err != nil {
		t.Fatalf("Close external: %v", err)
	}
	if !n.srv.Running() {
		t.Fatal("closing the external node stopped the embedded server")
	}
}

func TestExternalUnreachable(t *testing.T) {
	// A port that was free a moment ago: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = Start(ctx, Options{URL: url})
	if err == nil {
		t.Fatal("Start succeeded with nothing listening")
	}
	if want := "cannot connect to NATS at \"" + url + "\""; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func TestStartRejects(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no dir", Options{}, "no store directory"},
		{"bad sync", Options{Dir: "x", Sync: "sometimes"}, `invalid sync policy "sometimes"`},
		{"negative sync", Options{Dir: "x", Sync: "-1s"}, `invalid sync policy "-1s"`},
		{"sync with url", Options{URL: "nats://127.0.0.1:1", Sync: "always"}, "external server's own jetstream sync"},
		{"bad listen", Options{Dir: "x", Listen: "localhost"}, `invalid NATS listen address "localhost"`},
		{"bad port", Options{Dir: "x", Listen: "127.0.0.1:99999"}, "port must be 0..65535"},
		{"store is a file", Options{Dir: file}, "cannot start JetStream in " + `"` + file + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Start(context.Background(), tt.o)
			if err == nil {
				n.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseSync(t *testing.T) {
	tests := []struct {
		in       string
		always   bool
		interval time.Duration
	}{
		{"", true, 0},
		{"always", true, 0},
		{"2m", false, 2 * time.Minute},
		{"10ms", false, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		always, interval, err := parseSync(tt.in)
		if err != nil || always != tt.always || interval != tt.interval {
			t.Errorf("parseSync(%q) = %v, %v, %v; want %v, %v, nil", tt.in, always, interval, err, tt.always, tt.interval)
		}
	}
}

func TestExternalReconnects(t *testing.T) {
	dir := t.TempDir()
	srv := startEmbedded(t, Options{Dir: dir, Listen: "127.0.0.1:0"})
	u := srv.URL()
	ext, err := Start(context.Background(), Options{URL: u, Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start external: %v", err)
	}
	defer ext.Close()
	reconnected := ext.Reconnected()
	if !ext.Connected() {
		t.Fatal("Connected() = false right after Start")
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ext.Connected(); {
		if time.Now().After(deadline) {
			t.Fatal("Connected() still true 5s after the server stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-reconnected:
		t.Fatal("Reconnected fired while the server is down")
	default:
	}

	startEmbedded(t, Options{Dir: dir, Listen: strings.TrimPrefix(u, "nats://")})
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("Reconnected did not fire within 10s of the server's restart")
	}
	if !ext.Connected() {
		t.Fatal("Connected() = false after Reconnected fired")
	}
	if ext.Reconnected() == reconnected {
		t.Fatal("Reconnected returned the closed channel again")
	}
	roundTrip(t, ext, ext, "after-reconnect", "ok")
}

func TestDoneClosesOnClose(t *testing.T) {
	n := startEmbedded(t, Options{})
	select {
	case <-n.Done():
		t.Fatal("Done closed before Close")
	default:
	}
	n.Close()
	select {
	case <-n.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}
