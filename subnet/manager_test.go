package subnet_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/subnettest"
)

func mustConfig(t *testing.T, js string) *subnet.Config {
	t.Helper()
	c, err := subnet.ParseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newManager(t *testing.T, reg subnet.Registry, cfg *subnet.Config) *subnet.Manager {
	return subnet.NewManager(subnet.ManagerConfig{
		Registry: reg, Network: cfg, Log: ktesting.NewLogger(t, ktesting.NewConfig()),
		TTL: time.Hour, RenewMargin: 10 * time.Minute,
		Rand: rand.New(rand.NewPCG(1, 2)), Peers: subnet.PeerRule{AnyBackendType: true},
	})
}

var pfx = netip.MustParsePrefix

func TestAcquireOrder(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	ctx := context.Background()
	me := subnettest.MustAttrs("192.0.2.1", "host-gw")

	t.Run("existing lease with my PublicIP is reused in place", func(t *testing.T) {
		reg := subnettest.New()
		first, err := newManager(t, reg, cfg).Acquire(ctx, me, subnet.Lease{})
		if err != nil {
			t.Fatal(err)
		}
		again, err := newManager(t, reg, cfg).Acquire(ctx, me, subnet.Lease{Subnet: pfx("10.244.99.0/24")})
		if err != nil {
			t.Fatal(err)
		}
		if again.Subnet != first.Subnet || again.Revision != first.Revision {
			t.Fatalf("reacquire: got %s rev %d, want %s rev %d (renewed, not rewritten)", again.Subnet, again.Revision, first.Subnet, first.Revision)
		}
	})
	t.Run("changed attributes rewrite my lease, same subnet", func(t *testing.T) {
		reg := subnettest.New()
		first, _ := newManager(t, reg, cfg).Acquire(ctx, me, subnet.Lease{})
		other := me
		other.BackendData = []byte(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`)
		again, err := newManager(t, reg, cfg).Acquire(ctx, other, subnet.Lease{})
		if err != nil || again.Subnet != first.Subnet || again.Revision == first.Revision {
			t.Fatalf("got %+v, %v", again, err)
		}
	})
	t.Run("hint from the old subnet file is taken when free", func(t *testing.T) {
		reg := subnettest.New()
		l, err := newManager(t, reg, cfg).Acquire(ctx, me, subnet.Lease{Subnet: pfx("10.244.42.1/24")})
		if err != nil || l.Subnet != pfx("10.244.42.0/24") {
			t.Fatalf("got %v, %v; want 10.244.42.0/24", l.Subnet, err)
		}
	})
	t.Run("hint taken by another node is not used", func(t *testing.T) {
		reg := subnettest.New()
		if _, err := newManager(t, reg, cfg).Acquire(ctx, subnettest.MustAttrs("192.0.2.9", "host-gw"), subnet.Lease{Subnet: pfx("10.244.42.0/24")}); err != nil {
			t.Fatal(err)
		}
		l, err := newManager(t, reg, cfg).Acquire(ctx, me, subnet.Lease{Subnet: pfx("10.244.42.0/24")})
		if err != nil || l.Subnet == pfx("10.244.42.0/24") || !cfg.InRange(l.Subnet) {
			t.Fatalf("got %v, %v", l.Subnet, err)
		}
	})
	t.Run("hint outside the range is ignored", func(t *testing.T) {
		reg := subnettest.New()
		l, err := newManager(t, reg, cfg).Acquire(ctx, me, subnet.Lease{Subnet: pfx("10.99.0.0/24")})
		if err != nil || !cfg.InRange(l.Subnet) {
			t.Fatalf("got %v, %v", l.Subnet, err)
		}
	})
}

func TestReservationHonoured(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16"}`)
	ctx := context.Background()
	reg := subnettest.New()
	reg.PutRaw("10.244.7.0-24", []byte(`{"PublicIP":"192.0.2.7","PublicIPv6":null}`), true)
	// Another node never gets the reserved subnet, even as its hint.
	for i := 0; i < 20; i++ {
		l, err := newManager(t, reg, cfg).Acquire(ctx, subnettest.MustAttrs("192.0.2.100", "vxlan"), subnet.Lease{Subnet: pfx("10.244.7.0/24")})
		if err != nil {
			t.Fatal(err)
		}
		if l.Subnet == pfx("10.244.7.0/24") {
			t.Fatal("reserved subnet handed to another node")
		}
		_ = reg.DeleteLease(ctx, l.Subnet, netip.Prefix{})
	}
	// The named node takes it and it stays a reservation (no TTL).
	l, err := newManager(t, reg, cfg).Acquire(ctx, subnettest.MustAttrs("192.0.2.7", "vxlan"), subnet.Lease{})
	if err != nil || l.Subnet != pfx("10.244.7.0/24") || !l.Reserved() {
		t.Fatalf("got %+v, %v; want the reservation 10.244.7.0/24 without TTL", l, err)
	}
}

func TestRangeFullAndRaces(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.0","SubnetMax":"10.244.4.0"}`)
	ctx := context.Background()
	reg := subnettest.New()
	got := map[netip.Prefix]bool{}
	for i := 1; i <= 4; i++ {
		l, err := newManager(t, reg, cfg).Acquire(ctx, subnettest.MustAttrs(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String(), "vxlan"), subnet.Lease{})
		if err != nil {
			t.Fatal(err)
		}
		got[l.Subnet] = true
	}
	if len(got) != 4 {
		t.Fatalf("want 4 distinct subnets, got %v", got)
	}
	_, err := newManager(t, reg, cfg).Acquire(ctx, subnettest.MustAttrs("192.0.2.5", "vxlan"), subnet.Lease{})
	if !errors.Is(err, subnet.ErrNoFreeSubnet) {
		t.Fatalf("fifth node: got %v, want ErrNoFreeSubnet", err)
	}
	if want := "10.244.1.0 to 10.244.4.0"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name the range %q", err, want)
	}

	// Losing create races is retried with another subnet, never fatal.
	reg2 := subnettest.New()
	stolen := 0
	reg2.BeforeCreate = func(sn netip.Prefix) {
		if stolen < 3 {
			stolen++
			_, _ = reg2.CreateLease(ctx, sn, netip.Prefix{}, subnettest.MustAttrs("192.0.2.200", "vxlan"), time.Hour)
		}
	}
	l, err := newManager(t, reg2, cfg).Acquire(ctx, subnettest.MustAttrs("192.0.2.1", "vxlan"), subnet.Lease{})
	if err != nil || stolen != 3 {
		t.Fatalf("after 3 lost races: %v, %v (stolen %d)", l.Subnet, err, stolen)
	}
}

func TestFreeSubnets(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/22","SubnetLen":24}`)
	free := subnet.FreeSubnets(cfg, []netip.Prefix{pfx("10.244.2.0/24")}, 10)
	want := []netip.Prefix{pfx("10.244.1.0/24"), pfx("10.244.3.0/24")}
	if len(free) != len(want) || free[0] != want[0] || free[1] != want[1] {
		t.Fatalf("FreeSubnets = %v, want %v", free, want)
	}
	if got := subnet.FreeSubnets(cfg, nil, 1); len(got) != 1 {
		t.Fatalf("limit not honoured: %v", got)
	}
}

func TestReservationPreferredOverOrdinaryLease(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16"}`)
	reg := subnettest.New()
	ctx := context.Background()
	me := subnettest.MustAttrs("192.0.2.1", "vxlan")
	if _, err := reg.CreateLease(ctx, pfx("10.244.1.0/24"), netip.Prefix{}, me, time.Hour); err != nil {
		t.Fatal(err)
	}
	reg.PutRaw("10.244.9.0-24", []byte(`{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan"}`), true)
	l, err := newManager(t, reg, cfg).Acquire(ctx, me, subnet.Lease{})
	if err != nil || l.Subnet != pfx("10.244.9.0/24") || !l.Reserved() {
		t.Fatalf("got %+v, %v; want the reservation 10.244.9.0/24", l, err)
	}
}
