package subnet_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/subnettest"
)

// recv waits (bounded) for the next batch of events.
func recv(t *testing.T, ch <-chan []subnet.Event) []subnet.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no events within 5s")
		return nil
	}
}

func noEvents(t *testing.T, ch <-chan []subnet.Event) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Fatalf("unexpected events %v", ev)
	case <-time.After(100 * time.Millisecond):
	}
}

func summary(evs []subnet.Event) map[netip.Prefix]subnet.EventType {
	m := map[netip.Prefix]subnet.EventType{}
	for _, e := range evs {
		m[e.Lease.Subnet] = e.Type
	}
	return m
}

func TestWatchPeers(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16"}`)
	reg := subnettest.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchPeers returned %v", err)
		}
	}()
	peerA := subnettest.MustAttrs("192.0.2.2", "vxlan")
	if _, err := reg.CreateLease(ctx, pfx("10.244.2.0/24"), netip.Prefix{}, peerA, time.Hour); err != nil {
		t.Fatal(err)
	}
	reg.PutRaw("10.244.66.0-24", []byte(`{"PublicIP":"not-an-ip"}`), false)
	reg.PutRaw("garbage-key", []byte(`{}`), false)

	m := newManager(t, reg, cfg)
	own, err := m.Acquire(ctx, subnettest.MustAttrs("192.0.2.1", "vxlan"), subnet.Lease{Subnet: pfx("10.244.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan []subnet.Event, 16)
	go func() { done <- m.WatchPeers(ctx, ch) }()

	// Initial state: peer A only (own lease filtered, malformed skipped).
	if got := summary(recv(t, ch)); len(got) != 1 || got[pfx("10.244.2.0/24")] != subnet.Added {
		t.Fatalf("initial events %v", got)
	}
	// A join, an identical rewrite (no event), a change (event), a leave.
	if _, err := reg.CreateLease(ctx, pfx("10.244.3.0/24"), netip.Prefix{}, subnettest.MustAttrs("192.0.2.3", "vxlan"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := summary(recv(t, ch)); got[pfx("10.244.3.0/24")] != subnet.Added {
		t.Fatalf("join: %v", got)
	}
	list, _ := reg.ListLeases(ctx)
	var a subnet.Lease
	for _, l := range list.Leases {
		if l.Subnet == pfx("10.244.2.0/24") {
			a = l
		}
	}
	if _, err := reg.UpdateLease(ctx, a, peerA, time.Hour); err != nil {
		t.Fatal(err)
	}
	noEvents(t, ch)
	reg.Expire(pfx("10.244.3.0/24"))
	if got := summary(recv(t, ch)); got[pfx("10.244.3.0/24")] != subnet.Removed {
		t.Fatalf("expiry: %v", got)
	}
	// A peer lease turning malformed counts as removed; the watch keeps going.
	reg.PutRaw("10.244.2.0-24", []byte(`{"PublicIP":`), false)
	if got := summary(recv(t, ch)); got[pfx("10.244.2.0/24")] != subnet.Removed {
		t.Fatalf("malformed rewrite: %v", got)
	}

	// Compaction while changes happen: a resync emits only the differences.
	if _, err := reg.CreateLease(ctx, pfx("10.244.4.0/24"), netip.Prefix{}, subnettest.MustAttrs("192.0.2.4", "vxlan"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := summary(recv(t, ch)); got[pfx("10.244.4.0/24")] != subnet.Added {
		t.Fatalf("join 4: %v", got)
	}
	reg.SetFail(errors.New("etcd down")) // breaks the watch
	reg.Compact()
	reg.SetFail(nil)
	if _, err := reg.CreateLease(ctx, pfx("10.244.5.0/24"), netip.Prefix{}, subnettest.MustAttrs("192.0.2.5", "vxlan"), time.Hour); err != nil {
		t.Fatal(err)
	}
	reg.Expire(pfx("10.244.4.0/24"))
	reg.Compact()
	got := summary(recv(t, ch))
	if len(got) != 2 || got[pfx("10.244.5.0/24")] != subnet.Added || got[pfx("10.244.4.0/24")] != subnet.Removed {
		t.Fatalf("resync diff: %v", got)
	}
	_ = own
}

func TestHoldRenewsAndDetectsLoss(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16"}`)
	reg := subnettest.New()
	m := subnet.NewManager(subnet.ManagerConfig{Peers: subnet.PeerRule{AnyBackendType: true}, Registry: reg, Network: cfg, TTL: 300 * time.Millisecond, RenewMargin: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := m.Acquire(ctx, subnettest.MustAttrs("192.0.2.1", "vxlan"), subnet.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	renewals := make(chan subnet.Lease, 100)
	held := make(chan error, 1)
	go func() { held <- m.Hold(ctx, l, func(l subnet.Lease) { renewals <- l }) }()
	for i := 0; i < 3; i++ {
		select {
		case <-renewals:
		case <-time.After(3 * time.Second):
			t.Fatal("no renewal")
		}
	}
	// The watch sees my lease deleted: Hold reports ErrLeaseLost.
	evs := make(chan []subnet.Event, 16)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go func() { _ = m.WatchPeers(wctx, evs) }()
	recv(t, evs)
	if err := reg.DeleteLease(ctx, l.Subnet, netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-held:
		if !errors.Is(err, subnet.ErrLeaseLost) {
			t.Fatalf("Hold returned %v, want ErrLeaseLost", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Hold did not notice the deleted lease")
	}
	// Re-acquiring with the lost subnet as hint gets it back.
	again, err := m.Acquire(ctx, subnettest.MustAttrs("192.0.2.1", "vxlan"), subnet.Lease{Subnet: l.Subnet})
	if err != nil || again.Subnet != l.Subnet {
		t.Fatalf("re-acquire: %v, %v", again.Subnet, err)
	}
}

func TestHoldSurvivesStoreOutage(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16"}`)
	reg := subnettest.New()
	m := subnet.NewManager(subnet.ManagerConfig{Peers: subnet.PeerRule{AnyBackendType: true}, Registry: reg, Network: cfg, TTL: time.Hour, RenewMargin: time.Hour - 50*time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := m.Acquire(ctx, subnettest.MustAttrs("192.0.2.1", "vxlan"), subnet.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	reg.SetFail(errors.New("etcd down"))
	renewed := make(chan struct{}, 10)
	hctx, hcancel := context.WithCancel(ctx)
	held := make(chan error, 1)
	go func() { held <- m.Hold(hctx, l, func(subnet.Lease) { renewed <- struct{}{} }) }()
	time.Sleep(300 * time.Millisecond)
	reg.SetFail(nil)
	select {
	case <-renewed:
	case <-time.After(15 * time.Second): // a retry comes 1-2 s after a failure; this bounds a hang
		t.Fatal("no renewal after the outage ended")
	}
	hcancel()
	if err := <-held; err != nil {
		t.Fatalf("Hold after cancel: %v", err)
	}
}

func TestRenewsAsSoonAsTheStoreIsBack(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16"}`)
	reg := subnettest.New()
	m := newManager(t, reg, cfg) // TTL 1h, margin 10m: no renewal is due on its own
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	l, err := m.Acquire(ctx, subnettest.MustAttrs("192.0.2.1", "vxlan"), subnet.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	renewed := make(chan subnet.Lease, 4)
	go func() { _ = m.Hold(ctx, l, func(l subnet.Lease) { renewed <- l }) }()
	evs := make(chan []subnet.Event, 16)
	go func() { _ = m.WatchPeers(ctx, evs) }()
	recv(t, evs)
	reg.SetFail(errors.New("etcd down")) // the watch breaks
	time.Sleep(200 * time.Millisecond)
	reg.SetFail(nil)
	select {
	case <-renewed:
	case <-time.After(15 * time.Second): // a retry comes 1-2 s after a failure; this bounds a hang
		t.Fatal("no renewal after the store came back")
	}
}
