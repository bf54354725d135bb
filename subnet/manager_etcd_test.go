package subnet_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
	"github.com/weftnet/weft/test/etcdtest"
)

// The Manager over a real etcd (never a mock): concurrency, range exhaustion, renewal and
// expiry as peers see them.

func newEtcdRegistry(t *testing.T, srv *etcdtest.Server) *etcdv3.Registry {
	t.Helper()
	reg, err := etcdv3.New(etcdv3.Config{Endpoints: []string{srv.Endpoint()}}, ktesting.NewLogger(t, ktesting.NewConfig()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

func nodeIP(i int) string { return fmt.Sprintf("192.0.%d.%d", 2+i/250, 1+i%250) }

func TestHundredManagersAcquireDistinctSubnets(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A few registries (connections) shared by 100 managers, as 100 nodes would race.
	regs := []*etcdv3.Registry{newEtcdRegistry(t, srv), newEtcdRegistry(t, srv), newEtcdRegistry(t, srv), newEtcdRegistry(t, srv)}
	var wg sync.WaitGroup
	leases := make([]subnet.Lease, 100)
	errs := make([]error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := subnet.NewManager(subnet.ManagerConfig{Registry: regs[i%len(regs)], Network: cfg, TTL: time.Hour})
			leases[i], errs[i] = m.Acquire(ctx, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(nodeIP(i)), BackendType: "vxlan"}, subnet.Lease{})
		}()
	}
	wg.Wait()
	seen := map[netip.Prefix]int{}
	for i, l := range leases {
		if errs[i] != nil {
			t.Fatalf("manager %d: %v", i, errs[i])
		}
		if !cfg.InRange(l.Subnet) {
			t.Errorf("manager %d got %s outside the range", i, l.Subnet)
		}
		if j, dup := seen[l.Subnet]; dup {
			t.Errorf("managers %d and %d both got %s", j, i, l.Subnet)
		}
		seen[l.Subnet] = i
	}
	list, err := regs[0].ListLeases(ctx)
	if err != nil || len(list.Leases) != 100 {
		t.Fatalf("etcd holds %d leases (%v), want 100", len(list.Leases), err)
	}
}

func TestRangeOfFourFifthNodeGetsFullError(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	reg := newEtcdRegistry(t, srv)
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16","SubnetMin":"10.244.10.0","SubnetMax":"10.244.13.0"}`)
	ctx := context.Background()
	for i := range 4 {
		if _, err := newManager(t, reg, cfg).Acquire(ctx, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(nodeIP(i))}, subnet.Lease{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := newManager(t, reg, cfg).Acquire(ctx, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(nodeIP(4))}, subnet.Lease{})
	if !errors.Is(err, subnet.ErrNoFreeSubnet) {
		t.Fatalf("fifth node: %v, want ErrNoFreeSubnet", err)
	}
	t.Logf("fifth node's error: %v", err)
}

func TestRenewalKeepsShortLeaseAliveAndExpiryIsSeen(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ttl := 3 * time.Second
	holder := subnet.NewManager(subnet.ManagerConfig{Registry: newEtcdRegistry(t, srv), Network: cfg, TTL: ttl, RenewMargin: 2 * time.Second})
	mine, err := holder.Acquire(ctx, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.1")}, subnet.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	// A peer watches.
	peer := subnet.NewManager(subnet.ManagerConfig{Registry: newEtcdRegistry(t, srv), Network: cfg, TTL: time.Hour})
	if _, err := peer.Acquire(ctx, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.2")}, subnet.Lease{}); err != nil {
		t.Fatal(err)
	}
	events := make(chan []subnet.Event, 16)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() { _ = peer.WatchPeers(wctx, events) }()
	if got := summary(recv(t, events)); got[mine.Subnet] != subnet.Added {
		t.Fatalf("peer's initial view: %v", got)
	}

	hctx, stopHolding := context.WithCancel(ctx)
	held := make(chan error, 1)
	go func() { held <- holder.Hold(hctx, mine, nil) }()
	// Three TTLs later the lease is still there, thanks to renewal.
	select {
	case evs := <-events:
		t.Fatalf("peer saw %v while the lease was being renewed", evs)
	case <-time.After(3 * ttl):
	}
	stopHolding()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	// Without renewal it expires within a TTL (plus etcd's expiry granularity) and the
	// peer sees it go.
	select {
	case evs := <-events:
		if got := summary(evs); got[mine.Subnet] != subnet.Removed {
			t.Fatalf("peer saw %v, want %s removed", got, mine.Subnet)
		}
	case <-time.After(ttl + 5*time.Second):
		t.Fatal("the unrenewed lease did not expire")
	}
}

func TestReservationInEtcd(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	reg := newEtcdRegistry(t, srv)
	ctx := context.Background()
	// A reservation as an operator writes it: a key with no etcd lease.
	if _, err := reg.Client().Put(ctx, "/coreos.com/network/subnets/10.244.1.0-24", `{"PublicIP":"192.0.2.50","PublicIPv6":null}`); err != nil {
		t.Fatal(err)
	}
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.0","SubnetMax":"10.244.2.0"}`)
	other, err := newManager(t, reg, cfg).Acquire(ctx, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.9")}, subnet.Lease{Subnet: pfx("10.244.1.0/24")})
	if err != nil || other.Subnet != pfx("10.244.2.0/24") {
		t.Fatalf("another node got %v (%v); the reservation must be skipped", other.Subnet, err)
	}
	mine, err := newManager(t, reg, cfg).Acquire(ctx, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.50"), BackendType: "host-gw"}, subnet.Lease{})
	if err != nil || mine.Subnet != pfx("10.244.1.0/24") || !mine.Reserved() {
		t.Fatalf("reserved node got %+v (%v)", mine, err)
	}
	resp, err := reg.Client().Get(ctx, "/coreos.com/network/subnets/10.244.1.0-24")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease != 0 {
		t.Fatalf("the reservation must stay without an etcd lease: %+v %v", resp.Kvs, err)
	}
	if got := string(resp.Kvs[0].Value); got != `{"PublicIP":"192.0.2.50","PublicIPv6":null,"BackendType":"host-gw"}` {
		t.Fatalf("reservation value %s", got)
	}
}
