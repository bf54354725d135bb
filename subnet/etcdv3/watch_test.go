package etcdv3_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
)

func TestWatchFromListRevision(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	if _, err := e.reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour); err != nil {
		t.Fatal(err)
	}
	list, err := e.reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// "Changes after revision rev": the lease already listed is not delivered again.
	ch := e.reg.WatchLeases(ctx, list.Revision)
	y, err := e.reg.CreateLease(ctx, sn("10.244.2.0/24"), netip.Prefix{}, attrs("192.0.2.2"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b := next(t, ch, 10*time.Second)
	if b.Err != nil || len(b.Events) != 1 || b.Events[0].Type != subnet.Added || b.Events[0].Lease.Subnet != y.Subnet {
		t.Fatalf("first batch %+v, want Added 10.244.2.0/24 only", b)
	}
	got := b.Events[0].Lease
	if got.TTLID != y.TTLID || got.Revision != y.Revision || !got.Attrs.Equal(y.Attrs) || b.Revision != y.Revision {
		t.Fatalf("watched %+v at %d, want %+v at its revision", got, b.Revision, y)
	}

	// Resuming from a batch's Revision delivers only what came after it.
	ch2 := e.reg.WatchLeases(ctx, b.Revision)
	if err := e.reg.DeleteLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	b2 := next(t, ch2, 10*time.Second)
	if len(b2.Events) != 1 || b2.Events[0].Type != subnet.Removed || b2.Events[0].Lease.Subnet != sn("10.244.1.0/24") {
		t.Fatalf("resumed batch %+v, want Removed 10.244.1.0/24", b2)
	}
	if rm := b2.Events[0].Lease; rm.Attrs.PublicIP.String() != "192.0.2.1" || rm.Revision != b2.Revision {
		t.Fatalf("removed lease %+v: want previous attributes and the delete revision", rm)
	}
}

func TestExpiryAndRenewal(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	// A TTL long enough that renewals every 400 ms keep the lease through a stall of the
	// loaded machine; the waits below are twice it or more.
	const ttl = 8 * time.Second
	kept, err := e.reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), ttl)
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := e.reg.CreateLease(ctx, sn("10.244.2.0/24"), netip.Prefix{}, attrs("192.0.2.2"), ttl)
	if err != nil {
		t.Fatal(err)
	}
	ch := e.reg.WatchLeases(ctx, dropped.Revision)

	renewCtx, stopRenew := context.WithCancel(ctx)
	renewErr := make(chan error, 1)
	go func() {
		defer close(renewErr)
		tick := time.NewTicker(400 * time.Millisecond)
		defer tick.Stop()
		prev := kept.Expiration
		for i := 0; i < 200; i++ { // bounded: 80 s at most, the test ends far sooner
			select {
			case <-renewCtx.Done():
				return
			case <-tick.C:
			}
			before := time.Now()
			l, err := e.reg.RenewLease(renewCtx, kept)
			if err != nil {
				if renewCtx.Err() == nil {
					renewErr <- err
				}
				return
			}
			// The new expiration is one TTL from the renewal (however long the call took)
			// and later than the previous one.
			if l.Expiration.Sub(before) < ttl-time.Second || !l.Expiration.After(prev) {
				renewErr <- fmt.Errorf("renewal did not extend the expiration: %v after the call began (TTL %v), previous %v, now %v",
					l.Expiration.Sub(before), ttl, prev.Format(time.StampMilli), l.Expiration.Format(time.StampMilli))
				return
			}
			prev = l.Expiration
		}
	}()

	waiting := time.Now()
	evs, _ := collect(t, ch, 1, 3*ttl)
	if evs[0].Type != subnet.Removed || evs[0].Lease.Subnet != dropped.Subnet {
		t.Fatalf("event %+v, want the unrenewed lease Removed", evs[0])
	}
	t.Logf("the unrenewed lease (TTL %v) was removed %v after the wait for it began", ttl, time.Since(waiting).Round(time.Millisecond))
	// The renewed lease, created first, would be gone by now without its renewals: keep
	// renewing one more TTL past the other's expiry, then check what is left.
	time.Sleep(ttl)
	stopRenew()
	if err := <-renewErr; err != nil {
		t.Fatalf("renewal: %v", err)
	}
	list, err := e.reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Leases) != 1 || list.Leases[0].Subnet != kept.Subnet {
		t.Fatalf("after expiry: %+v, want only the renewed lease", list.Leases)
	}
	if _, err := e.reg.RenewLease(ctx, dropped); !errors.Is(err, subnet.ErrNotFound) {
		t.Fatalf("renew of an expired lease: %v, want ErrNotFound", err)
	}
	select {
	case b := <-ch:
		t.Fatalf("unexpected batch %+v: the renewed lease must not be removed", b)
	default:
	}
}

func TestMalformed(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	good := `{"PublicIP":"192.0.2.1","PublicIPv6":null}`
	bad := map[string]string{
		leaseKey("garbage"):                     good,
		leaseKey("10.244.9.0-24"):               `{not json`,
		leaseKey("10.244.10.0-24"):              `{"PublicIP":"fd00::1","PublicIPv6":null}`,
		leaseKey("10.244.1.0-24/extra"):         good,
		leaseKey("10.244.3.0-24&fd00:0:0::-64"): good, // not canonical: Key() would name another key
		leaseKey("10.244.4.1-24"):               good,
	}
	for k, v := range bad {
		e.rawPut(t, k, v)
	}
	e.rawPut(t, leaseKey("10.244.1.0-24"), good)
	e.rawPut(t, testPrefix+"/subnetsX/10.244.2.0-24", good) // outside the subnets directory
	list, err := e.reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Leases) != 1 || list.Leases[0].Subnet != sn("10.244.1.0/24") {
		t.Fatalf("leases %+v, want only 10.244.1.0/24", list.Leases)
	}
	if len(list.Malformed) != len(bad) {
		t.Fatalf("malformed %+v, want %d entries", list.Malformed, len(bad))
	}
	for _, m := range list.Malformed {
		if _, ok := bad[m.Key]; !ok || m.Err == nil {
			t.Errorf("malformed entry %q (%v): want a full key from the bad set and an error", m.Key, m.Err)
		}
	}

	ch := e.reg.WatchLeases(ctx, list.Revision)
	e.rawPut(t, leaseKey("junk"), good)                                                                    // malformed key
	c, err := e.reg.CreateLease(ctx, sn("10.244.20.0/24"), netip.Prefix{}, attrs("192.0.2.20"), time.Hour) // Added
	if err != nil {
		t.Fatal(err)
	}
	e.rawPut(t, leaseKey("10.244.20.0-24"), `{"PublicIP":`)        // garbage over a lease: Malformed + Removed
	if _, err := e.cli.Delete(ctx, leaseKey("junk")); err != nil { // never a lease: nothing
		t.Fatal(err)
	}
	d, err := e.reg.CreateLease(ctx, sn("10.244.21.0/24"), netip.Prefix{}, attrs("192.0.2.21"), time.Hour) // still delivered
	if err != nil {
		t.Fatal(err)
	}
	evs, mal := collect(t, ch, 3, 10*time.Second)
	want := []struct {
		typ subnet.EventType
		sn  string
	}{{subnet.Added, "10.244.20.0/24"}, {subnet.Removed, "10.244.20.0/24"}, {subnet.Added, "10.244.21.0/24"}}
	if len(evs) != len(want) {
		t.Fatalf("events %+v, want %v", evs, want)
	}
	for i, w := range want {
		if evs[i].Type != w.typ || evs[i].Lease.Subnet != sn(w.sn) {
			t.Fatalf("event %d = %v %v, want %v %v", i, evs[i].Type, evs[i].Lease.Subnet, w.typ, w.sn)
		}
	}
	if evs[1].Lease.Attrs.PublicIP != c.Attrs.PublicIP || evs[2].Lease.TTLID != d.TTLID {
		t.Fatalf("events %+v: want the removed lease's previous attributes and the new lease's TTLID", evs)
	}
	if len(mal) != 2 || mal[0].Key != leaseKey("junk") || mal[1].Key != leaseKey("10.244.20.0-24") {
		t.Fatalf("malformed in watch %+v, want junk then 10.244.20.0-24 by full key", mal)
	}
}

func TestWatchCompacted(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	first, err := e.reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	for i := range 5 {
		last = e.rawPut(t, leaseKey("10.244.2.0-24"), `{"PublicIP":"192.0.2.`+string(rune('2'+i))+`","PublicIPv6":null}`)
	}
	if _, err := e.cli.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	ch := e.reg.WatchLeases(ctx, first.Revision)
	b := next(t, ch, 10*time.Second)
	if !errors.Is(b.Err, subnet.ErrCompacted) {
		t.Fatalf("batch %+v, want an error wrapping ErrCompacted", b)
	}
	closed(t, ch, 5*time.Second)

	// Watching from the compaction point itself works.
	ch2 := e.reg.WatchLeases(ctx, last)
	if err := e.reg.DeleteLease(ctx, sn("10.244.2.0/24"), netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	if evs, _ := collect(t, ch2, 1, 10*time.Second); evs[0].Type != subnet.Removed {
		t.Fatalf("event %+v, want Removed", evs[0])
	}
}

func TestWatchEnds(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	leases := e.reg.WatchLeases(ctx, 0)
	cfg := e.reg.WatchConfig(ctx, 0)
	cancel()
	closed(t, leases, 10*time.Second)
	closed(t, cfg, 10*time.Second)

	// Close ends watches without anything further delivered.
	other := newReg(t, e.srv)
	leases = other.WatchLeases(ctxT(t), 0)
	cfg = other.WatchConfig(ctxT(t), 0)
	if err := other.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	closed(t, leases, 10*time.Second)
	closed(t, cfg, 10*time.Second)
	if err := other.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	start := time.Now()
	if _, err := other.ListLeases(ctxT(t)); !errors.Is(err, etcdv3.ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("list after Close: %v, want ErrClosed", err)
	}
	// At once, not after the context's 30 s: 10 s leaves room for a stalled machine.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("list after Close took %v, want it to fail at once", d)
	}
}

func TestWatchSurvivesEtcdRestart(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	a, err := e.reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ch := e.reg.WatchLeases(ctx, a.Revision)
	e.srv.Stop()
	stopped := time.Now()
	time.Sleep(500 * time.Millisecond)
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	down := time.Since(stopped)
	b, err := e.reg.CreateLease(ctx, sn("10.244.2.0/24"), netip.Prefix{}, attrs("192.0.2.2"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd down for %v (restart included; the watch's grace period is 5 s)", down.Round(time.Millisecond))
	deadline := time.Now().Add(20 * time.Second)
	for {
		wb := next(t, ch, time.Until(deadline))
		if wb.Err != nil {
			// A client reconnects with a backoff: after a slow restart on a loaded machine its
			// next attempt may fall past the grace period, and then ending the watch is right
			// (TestWatchEndsWhenEtcdStaysDown). Only a quick restart must be survived.
			if down < 2*time.Second {
				t.Fatalf("the watch ended after etcd was down only %v: %v", down, wb.Err)
			}
			t.Skipf("etcd took %v to restart here, too slow for a restart the watch must survive (it ended: %v)", down, wb.Err)
		}
		if len(wb.Events) == 0 {
			continue
		}
		if ev := wb.Events[0]; ev.Type != subnet.Added || ev.Lease.Subnet != b.Subnet {
			t.Fatalf("event after restart %+v, want Added %v", ev, b.Subnet)
		}
		return
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	if _, _, err := e.reg.GetConfig(ctx); !errors.Is(err, subnet.ErrNotFound) {
		t.Fatalf("GetConfig without a key: %v, want ErrNotFound", err)
	}
	first := `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`
	putRev := e.rawPut(t, testPrefix+"/config", first)
	got, rev, err := e.reg.GetConfig(ctx)
	if err != nil || string(got) != first || rev < putRev {
		t.Fatalf("GetConfig = %s, %d, %v; want %s at revision >= %d", got, rev, err, first, putRev)
	}

	ch := e.reg.WatchConfig(ctx, rev)
	second := `{"Network":"10.245.0.0/16"}`
	e.rawPut(t, testPrefix+"/config", second)
	e.rawPut(t, testPrefix+"/subnets/10.244.1.0-24", `{"PublicIP":"192.0.2.1","PublicIPv6":null}`) // not config
	if _, err := e.cli.Delete(ctx, testPrefix+"/config"); err != nil {
		t.Fatal(err)
	}
	e.rawPut(t, testPrefix+"/config", "")
	for i, want := range []*string{&second, nil, new(string)} {
		select {
		case v, ok := <-ch:
			switch {
			case !ok:
				t.Fatalf("config watch closed at change %d", i)
			case want == nil && v != nil:
				t.Fatalf("change %d = %q, want nil for a delete", i, v)
			case want != nil && (v == nil || string(v) != *want):
				t.Fatalf("change %d = %q, want %q (non-nil)", i, v, *want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no config change %d", i)
		}
	}

	// A compacted start revision ends the config watch; the caller re-reads.
	last := e.rawPut(t, testPrefix+"/config", first)
	if _, err := e.cli.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	closed(t, e.reg.WatchConfig(ctx, rev), 10*time.Second)
}

func TestErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	if _, err := e.reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour); err != nil {
		t.Fatal(err)
	}
	_, err := e.reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour)
	if !errors.Is(err, subnet.ErrTaken) || !strings.Contains(err.Error(), leaseKey("10.244.1.0-24")) {
		t.Fatalf("error %q: want ErrTaken naming the full key", err)
	}
}
