package subnettest

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
)

// TestContractAdditions: the in-memory registry follows subnet/etcdv3 on the calls weftctl
// makes (compare-and-swap config write, delete at a revision, time to live).
func TestContractAdditions(t *testing.T) {
	ctx := context.Background()
	r := New()
	sn := netip.MustParsePrefix("10.244.1.0/24")
	list, _ := r.ListLeases(ctx)
	l, err := r.CreateLease(ctx, sn, netip.Prefix{}, MustAttrs("192.0.2.1", "vxlan"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutConfig(ctx, []byte("a"), list.Revision); !errors.Is(err, subnet.ErrTaken) {
		t.Errorf("PutConfig guarded by a listing older than a lease: %v", err)
	}
	if _, err := r.PutConfig(ctx, []byte("b"), l.Revision); err != nil {
		t.Errorf("PutConfig guarded by a current listing: %v", err)
	}
	if raw, _, _ := r.GetConfig(ctx); string(raw) != "b" {
		t.Errorf("config %q", raw)
	}
	if ttl, err := r.TimeToLive(ctx, l); err != nil || ttl <= 59*time.Minute {
		t.Errorf("TimeToLive = %v, %v", ttl, err)
	}
	if _, err := r.DeleteLeaseAt(ctx, sn, netip.Prefix{}, l.Revision-1); !errors.Is(err, subnet.ErrTaken) {
		t.Errorf("DeleteLeaseAt at a stale revision: %v", err)
	}
	if _, err := r.DeleteLeaseAt(ctx, sn, netip.Prefix{}, l.Revision); err != nil {
		t.Errorf("DeleteLeaseAt: %v", err)
	}
	if _, err := r.TimeToLive(ctx, l); !errors.Is(err, subnet.ErrNotFound) {
		t.Errorf("TimeToLive after delete: %v", err)
	}
}
