package tenants

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wispfn/wisp/kv/natsnode"
)

func startNode(t *testing.T) *natsnode.Node {
	t.Helper()
	n, err := natsnode.Start(context.Background(), natsnode.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("natsnode.Start: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// eventually waits until ok holds.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10s", what)
		}
	}
}

func TestCreateCheckRevoke(t *testing.T) {
	n := startNode(t)
	ctx := t.Context()
	a, err := Open(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, n) // another node of the same deployment
	if err != nil {
		t.Fatal(err)
	}
	acme1, err := a.Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	acme2, err := b.Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	other, err := a.Create(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if acme1 == acme2 || !strings.HasPrefix(acme1, "wt_acme_") {
		t.Fatalf("tokens %q and %q", acme1, acme2)
	}
	if got, ok := a.Tenant([]byte(acme1)); !ok || got != "acme" {
		t.Fatalf("the creating node: %q %v", got, ok)
	}
	for _, tok := range []string{acme1, acme2} {
		eventually(t, "both nodes know "+tok, func() bool {
			x, ok1 := a.Tenant([]byte(tok))
			y, ok2 := b.Tenant([]byte(tok))
			return ok1 && ok2 && x == "acme" && y == "acme"
		})
	}
	for _, bad := range []string{"", "wt_acme_", acme1 + "x", strings.ToUpper(acme1), strings.Repeat("a", 300)} {
		if tenant, ok := a.Tenant([]byte(bad)); ok {
			t.Errorf("token %q accepted for %q", bad, tenant)
		}
	}

	// Revoke through a removes the tokens made through either node, and only acme's.
	if n, err := a.Revoke(ctx, "acme"); err != nil || n != 2 {
		t.Fatalf("Revoke: %d %v; want 2", n, err)
	}
	if _, ok := a.Tenant([]byte(acme2)); ok {
		t.Fatal("the revoking node still accepts a revoked token")
	}
	eventually(t, "b forgets acme's tokens", func() bool {
		_, ok1 := b.Tenant([]byte(acme1))
		_, ok2 := b.Tenant([]byte(acme2))
		return !ok1 && !ok2
	})
	if got, ok := b.Tenant([]byte(other)); !ok || got != "other" {
		t.Fatalf("another tenant's token after acme's revocation: %q %v", got, ok)
	}
	// A node opened now sees what is left.
	c, err := Open(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Tenant([]byte(acme1)); ok {
		t.Fatal("a new node accepts a revoked token")
	}
	if got, ok := c.Tenant([]byte(other)); !ok || got != "other" {
		t.Fatalf("a new node: %q %v", got, ok)
	}
}

func TestBadNames(t *testing.T) {
	n := startNode(t)
	ctx := t.Context()
	tk, err := Open(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "Acme", "a.b", "a_b", "-a", strings.Repeat("a", 64)} {
		if _, err := tk.Create(ctx, name); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%q): %v; want ErrInvalid", name, err)
		}
		if _, err := tk.Revoke(ctx, name); !errors.Is(err, ErrInvalid) {
			t.Errorf("Revoke(%q): %v; want ErrInvalid", name, err)
		}
	}
	// Entries that are not tokens are ignored.
	kv, err := tk.b.Origin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"t.junk": "not json", "t.bad": `{"tenant":"Bad Name"}`, "x.y": `{"tenant":"acme"}`} {
		if _, err := kv.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	// A watch delivers in order: once a node that did not make it sees a later token, it has
	// seen the entries before it.
	other, err := Open(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tk.Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the token is seen", func() bool { _, ok := other.Tenant([]byte(tok)); return ok })
	other.mu.RLock()
	defer other.mu.RUnlock()
	if len(other.byHash) != 1 {
		t.Fatalf("foreign entries taken as tokens: %v", other.byHash)
	}
}
