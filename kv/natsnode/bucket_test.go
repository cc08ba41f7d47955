package natsnode

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestLastSeesMarkers checks that Last reports the revision of a delete marker, so that a
// compare-and-set on it fails once the key has been written and deleted again, where Create
// would succeed.
func TestLastSeesMarkers(t *testing.T) {
	ctx := context.Background()
	home, edge := startRegions(t)
	cfg := jetstream.KeyValueConfig{Bucket: "last_test", History: 1}
	hb, err := home.OpenKeyValue(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := edge.OpenKeyValue(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kv := hb.Read

	if _, err := kv.PutString(ctx, "other", "x"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "*", ">", "fn.*", "a b"} {
		if v, _, _, err := hb.Last(ctx, bad); err == nil {
			t.Errorf("Last(%q) = %q; want an error", bad, v)
		}
	}
	for _, b := range []*Bucket{hb, eb} {
		if v, rev, live, err := b.Last(ctx, "never"); err != nil || live || rev != 0 || v != nil {
			t.Fatalf("Last(never written) = %q, %d, %v, %v; want nil, 0, false, nil", v, rev, live, err)
		}
	}
	putRev, err := kv.PutString(ctx, "k", "one")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []*Bucket{hb, eb} {
		if v, rev, live, err := b.Last(ctx, "k"); err != nil || !live || rev != putRev || string(v) != "one" {
			t.Fatalf("Last(k) = %q, %d, %v, %v; want \"one\", %d, true, nil", v, rev, live, err, putRev)
		}
	}
	if err := kv.Purge(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	_, marker, live, err := eb.Last(ctx, "k")
	if err != nil || live || marker <= putRev {
		t.Fatalf("Last(purged k) = rev %d, live %v, %v; want the marker's revision after %d, false", marker, live, err, putRev)
	}

	// Written and deleted again since the marker was read: Create succeeds over the new
	// marker, a compare-and-set on the one Last returned does not.
	if _, err := kv.PutString(ctx, "k", "two"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, "k", []byte("three"), marker); err == nil {
		t.Fatal("Update on a marker revision read before a write and delete succeeded")
	}
	_, marker, _, err = hb.Last(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, "k", []byte("three"), marker); err != nil {
		t.Fatalf("Update on the current marker's revision: %v", err)
	}
	if v, _, live, err := hb.Last(ctx, "k"); err != nil || !live || string(v) != "three" {
		t.Fatalf("Last(k) = %q, %v, %v; want \"three\"", v, live, err)
	}
}
