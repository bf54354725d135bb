package etcdv3_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/subnet"
)

// TestPutConfig: an unguarded write, and the compare-and-swap against the leases: a lease
// created or changed after the caller's listing fails it (nothing written), a deleted one
// does not.
func TestPutConfig(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)

	first := `{"Network":"10.244.0.0/16"}`
	rev, err := e.reg.PutConfig(ctx, []byte(first), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, at, err := e.reg.GetConfig(ctx); err != nil || string(got) != first || at < rev {
		t.Fatalf("after PutConfig at %d: %q at %d, %v", rev, got, at, err)
	}

	// Guarded by an empty listing: no lease exists, the write wins.
	list, err := e.reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second := `{"Network":"10.245.0.0/16"}`
	if _, err := e.reg.PutConfig(ctx, []byte(second), list.Revision); err != nil {
		t.Fatalf("guarded write without leases: %v", err)
	}

	// A lease created after the listing fails the guard.
	l, err := e.reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	third := `{"Network":"10.246.0.0/16"}`
	if _, err := e.reg.PutConfig(ctx, []byte(third), list.Revision); !errors.Is(err, subnet.ErrTaken) {
		t.Fatalf("write guarded by a listing older than a new lease: %v, want ErrTaken", err)
	}
	if got, _, _ := e.reg.GetConfig(ctx); string(got) != second {
		t.Fatalf("config %q after a lost compare-and-swap, want %q", got, second)
	}

	// A listing that saw the lease passes; a lease changed after it does not.
	list, err = e.reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.PutConfig(ctx, []byte(third), list.Revision); err != nil {
		t.Fatalf("write guarded by a current listing: %v", err)
	}
	if _, err := e.reg.UpdateLease(ctx, l, attrs("192.0.2.1"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.PutConfig(ctx, []byte(first), list.Revision); !errors.Is(err, subnet.ErrTaken) {
		t.Fatalf("write after a lease changed: %v, want ErrTaken", err)
	}

	// A deletion after the listing does not count: it cannot make a lease stop fitting.
	list, err = e.reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.reg.DeleteLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.PutConfig(ctx, []byte(first), list.Revision); err != nil {
		t.Fatalf("write after a lease was deleted: %v", err)
	}
	// Keys outside subnets/ never count.
	e.rawPut(t, testPrefix+"/other", "x")
	if _, err := e.reg.PutConfig(ctx, []byte(second), list.Revision); err != nil {
		t.Fatalf("write after an unrelated key changed: %v", err)
	}
}
