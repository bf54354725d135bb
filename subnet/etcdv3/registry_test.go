package etcdv3_test

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcdv3"
)

func TestLeaseLifecycle(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	s := sn("10.244.5.0/24")

	before := time.Now()
	l, err := e.reg.CreateLease(ctx, s, netip.Prefix{}, attrs("192.0.2.1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != s || l.TTLID == 0 || l.Revision == 0 || l.Reserved() {
		t.Fatalf("created lease %+v: want subnet, TTLID and revision set", l)
	}
	// The expiration is one TTL from a moment during the call, however long it took.
	if after := time.Now(); l.Expiration.Before(before.Add(time.Hour-time.Second)) || l.Expiration.After(after.Add(time.Hour)) {
		t.Fatalf("expiration %v after the call began (it took %v), want 1h from during the call", l.Expiration.Sub(before), after.Sub(before))
	}
	if _, id, ok := e.rawGet(t, leaseKey("10.244.5.0-24")); !ok || id != l.TTLID {
		t.Fatalf("stored key: present %v, etcd lease %x; want the returned TTLID %x", ok, id, l.TTLID)
	}

	if _, err := e.reg.CreateLease(ctx, s, netip.Prefix{}, attrs("192.0.2.2"), time.Hour); !errors.Is(err, subnet.ErrTaken) {
		t.Fatalf("second create: %v, want ErrTaken", err)
	}
	if n := e.etcdLeaseCount(t); n != 1 {
		t.Fatalf("%d etcd leases after a lost create, want 1 (the loser's grant must be revoked)", n)
	}

	list, err := e.reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Leases) != 1 || len(list.Malformed) != 0 {
		t.Fatalf("list = %+v, want the one lease", list)
	}
	got := list.Leases[0]
	if got.Subnet != s || got.TTLID != l.TTLID || got.Revision != l.Revision || !got.Attrs.Equal(l.Attrs) || !got.Expiration.IsZero() {
		t.Fatalf("listed %+v, want %+v with zero Expiration", got, l)
	}
	if list.Revision < l.Revision {
		t.Fatalf("list revision %d before the create's %d", list.Revision, l.Revision)
	}

	// Update under a fresh TTL: new etcd lease, the old one revoked.
	up, err := e.reg.UpdateLease(ctx, got, attrs("192.0.2.9"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if up.TTLID == 0 || up.TTLID == l.TTLID || up.Revision <= l.Revision || up.Attrs.PublicIP.String() != "192.0.2.9" {
		t.Fatalf("updated lease %+v", up)
	}
	if e.leaseAlive(t, l.TTLID) {
		t.Fatal("old etcd lease still alive after update")
	}
	if v, id, _ := e.rawGet(t, leaseKey("10.244.5.0-24")); id != up.TTLID || v != `{"PublicIP":"192.0.2.9","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}}` {
		t.Fatalf("stored %s under %x after update", v, id)
	}

	// A stale revision loses, and its grant does not linger.
	if _, err := e.reg.UpdateLease(ctx, got, attrs("192.0.2.3"), time.Hour); !errors.Is(err, subnet.ErrTaken) {
		t.Fatalf("stale update: %v, want ErrTaken", err)
	}
	if n := e.etcdLeaseCount(t); n != 1 {
		t.Fatalf("%d etcd leases after a lost update, want 1", n)
	}

	// Renew keeps the value and revision, and moves the expiration.
	time.Sleep(1100 * time.Millisecond)
	rn, err := e.reg.RenewLease(ctx, up)
	if err != nil {
		t.Fatal(err)
	}
	if rn.TTLID != up.TTLID || rn.Revision != up.Revision || !rn.Attrs.Equal(up.Attrs) || !rn.Expiration.After(up.Expiration) {
		t.Fatalf("renewed %+v from %+v: want same lease, later expiration", rn, up)
	}

	if err := e.reg.DeleteLease(ctx, s, netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := e.rawGet(t, leaseKey("10.244.5.0-24")); ok {
		t.Fatal("key still there after delete")
	}
	if e.leaseAlive(t, up.TTLID) {
		t.Fatal("etcd lease still alive after delete")
	}
	if err := e.reg.DeleteLease(ctx, s, netip.Prefix{}); err != nil {
		t.Fatalf("deleting a missing lease: %v", err)
	}
	if _, err := e.reg.RenewLease(ctx, rn); !errors.Is(err, subnet.ErrNotFound) {
		t.Fatalf("renew after delete: %v, want ErrNotFound", err)
	}
	if _, err := e.reg.UpdateLease(ctx, rn, attrs("192.0.2.1"), time.Hour); !errors.Is(err, subnet.ErrTaken) {
		t.Fatalf("update after delete: %v, want ErrTaken", err)
	}
	// A deleted subnet can be created again.
	if _, err := e.reg.CreateLease(ctx, s, netip.Prefix{}, attrs("192.0.2.4"), time.Hour); err != nil {
		t.Fatalf("re-create after delete: %v", err)
	}
}

func TestRenewDetectsLoss(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)

	// The etcd lease is revoked (key deleted with it).
	a, err := e.reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.Revoke(ctx, clientv3.LeaseID(a.TTLID)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.RenewLease(ctx, a); !errors.Is(err, subnet.ErrNotFound) {
		t.Fatalf("renew of a revoked lease: %v, want ErrNotFound", err)
	}

	// The key was taken over under another etcd lease; ours still exists.
	b, err := e.reg.CreateLease(ctx, sn("10.244.2.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.UpdateLease(ctx, b, attrs("192.0.2.2"), time.Hour); err != nil {
		t.Fatal(err)
	}
	b.TTLID = mustGrant(t, e) // a live etcd lease that the key does not carry
	if _, err := e.reg.RenewLease(ctx, b); !errors.Is(err, subnet.ErrNotFound) {
		t.Fatalf("renew of a lease whose key moved to another etcd lease: %v, want ErrNotFound", err)
	}
}

// TestRenewAfterPinned: a lease that an operator turned into a reservation of the same node
// renews into that reservation, whether the old etcd lease was revoked (weftctl reserve,
// UpdateLease) or left alive unused (etcdctl put without a lease, flannel's documented way);
// a reservation for another node is a loss.
func TestRenewAfterPinned(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)

	for _, tc := range []struct {
		name, subnet string
		pin          func(l subnet.Lease) // turns l's key into a reservation
		wantPub      string               // "" when the renewal must report a loss
	}{
		{"revoked by UpdateLease", "10.244.1.0/24", func(l subnet.Lease) {
			if _, err := e.reg.UpdateLease(ctx, l, l.Attrs, 0); err != nil {
				t.Fatal(err)
			}
		}, "192.0.2.1"},
		{"put without a lease", "10.244.2.0/24", func(l subnet.Lease) {
			v, _, _ := e.rawGet(t, leaseKey(l.Key()))
			e.rawPut(t, leaseKey(l.Key()), v)
		}, "192.0.2.1"},
		{"reserved for another node", "10.244.3.0/24", func(l subnet.Lease) {
			e.rawPut(t, leaseKey(l.Key()), `{"PublicIP":"192.0.2.99","PublicIPv6":null}`)
		}, ""},
	} {
		l, err := e.reg.CreateLease(ctx, sn(tc.subnet), netip.Prefix{}, attrs("192.0.2.1"), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tc.pin(l)
		rn, err := e.reg.RenewLease(ctx, l)
		if tc.wantPub == "" {
			if !errors.Is(err, subnet.ErrNotFound) || !strings.Contains(err.Error(), "reservation for 192.0.2.99") {
				t.Errorf("%s: renew = %+v, %v; want ErrNotFound naming the other node", tc.name, rn, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: renew of a pinned lease: %v", tc.name, err)
			continue
		}
		if !rn.Reserved() || !rn.Expiration.IsZero() || rn.Subnet != l.Subnet || rn.Attrs.PublicIP.String() != tc.wantPub || rn.Revision <= l.Revision {
			t.Errorf("%s: renewed %+v, want the reservation read from the store", tc.name, rn)
		}
		// And it renews as a reservation from then on.
		if again, err := e.reg.RenewLease(ctx, rn); err != nil || !again.Reserved() {
			t.Errorf("%s: renew of the reservation: %+v %v", tc.name, again, err)
		}
	}
}

// TestDeleteLeaseAt: the delete happens only at the revision the caller saw, for valid and
// malformed keys alike, and takes the key's etcd lease with it.
func TestDeleteLeaseAt(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)

	l, err := e.reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	up, err := e.reg.UpdateLease(ctx, l, attrs("192.0.2.1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.DeleteLeaseAt(ctx, l.Subnet, netip.Prefix{}, l.Revision); !errors.Is(err, subnet.ErrTaken) {
		t.Fatalf("delete at a stale revision: %v, want ErrTaken", err)
	}
	if _, _, ok := e.rawGet(t, leaseKey("10.244.1.0-24")); !ok {
		t.Fatal("a lost delete removed the key")
	}
	rev, err := e.reg.DeleteLeaseAt(ctx, up.Subnet, netip.Prefix{}, up.Revision)
	if err != nil || rev <= up.Revision {
		t.Fatalf("delete at the current revision: %d, %v", rev, err)
	}
	if _, _, ok := e.rawGet(t, leaseKey("10.244.1.0-24")); ok {
		t.Fatal("key still there")
	}
	if e.leaseAlive(t, up.TTLID) {
		t.Error("the deleted key's etcd lease was not revoked")
	}
	if _, err := e.reg.DeleteLeaseAt(ctx, up.Subnet, netip.Prefix{}, up.Revision); !errors.Is(err, subnet.ErrTaken) {
		t.Fatalf("delete of a vanished key: %v, want ErrTaken", err)
	}

	// A malformed key, listed with its bookkeeping, is deleted at its revision.
	id := mustGrant(t, e)
	putRev := e.rawPut(t, leaseKey("10.244.2.0-24"), "{broken", clientv3.WithLease(clientv3.LeaseID(id)))
	list, err := e.reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Malformed) != 1 || list.Malformed[0].Revision != putRev || list.Malformed[0].TTLID != id {
		t.Fatalf("malformed %+v, want revision %d and etcd lease %x", list.Malformed, putRev, id)
	}
	if _, err := e.reg.DeleteLeaseAt(ctx, sn("10.244.2.0/24"), netip.Prefix{}, list.Malformed[0].Revision); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := e.rawGet(t, leaseKey("10.244.2.0-24")); ok || e.leaseAlive(t, id) {
		t.Errorf("malformed key present %v, etcd lease alive %v after delete", ok, e.leaseAlive(t, id))
	}
	if _, err := e.reg.DeleteLeaseAt(ctx, sn("10.244.3.0/24"), netip.Prefix{}, 0); err == nil || errors.Is(err, subnet.ErrTaken) {
		t.Errorf("delete without a revision: %v, want a plain error", err)
	}
}

// TestTimeToLive: the etcd lease's remaining time, ErrNotFound once it is gone, and an
// error for a reservation.
func TestTimeToLive(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	l, err := e.reg.CreateLease(ctx, sn("10.244.1.0/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ttl, err := e.reg.TimeToLive(ctx, l)
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("TimeToLive = %v, %v; want just under an hour", ttl, err)
	}
	if _, err := e.cli.Revoke(ctx, clientv3.LeaseID(l.TTLID)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.TimeToLive(ctx, l); !errors.Is(err, subnet.ErrNotFound) {
		t.Fatalf("TimeToLive of a revoked etcd lease: %v, want ErrNotFound", err)
	}
	r, err := e.reg.CreateLease(ctx, sn("10.244.2.0/24"), netip.Prefix{}, attrs("192.0.2.2"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.TimeToLive(ctx, r); err == nil || errors.Is(err, subnet.ErrNotFound) {
		t.Fatalf("TimeToLive of a reservation: %v, want a plain error", err)
	}
}

func TestCreateRace(t *testing.T) {
	t.Parallel()
	e := setup(t)
	other := newReg(t, e.srv) // a second node with its own connection
	ctx := ctxT(t)
	regs := []*etcdv3.Registry{e.reg, other}

	const subnets, contenders = 5, 8
	for i := range subnets {
		s := sn("10.244." + strconv.Itoa(10+i) + ".0/24")
		var wg sync.WaitGroup
		errs := make([]error, contenders)
		start := make(chan struct{})
		for c := range contenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[c] = regs[c%2].CreateLease(ctx, s, netip.Prefix{}, attrs("192.0.2."+strconv.Itoa(c+1)), time.Hour)
			}()
		}
		close(start)
		wg.Wait()
		wins := 0
		for c, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, subnet.ErrTaken):
				t.Fatalf("subnet %v contender %d: %v, want nil or ErrTaken", s, c, err)
			}
		}
		if wins != 1 {
			t.Fatalf("subnet %v: %d winners, want exactly 1", s, wins)
		}
	}
	if n := e.etcdLeaseCount(t); n != subnets {
		t.Fatalf("%d etcd leases after the races, want %d: losers must revoke their grants", n, subnets)
	}
}

func TestReservation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)

	// An operator's reservation: a key with no etcd lease (etcdctl put).
	e.rawPut(t, leaseKey("10.244.7.0-24"), `{"PublicIP":"192.0.2.7","PublicIPv6":null}`)
	list, err := e.reg.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Leases) != 1 || !list.Leases[0].Reserved() || list.Leases[0].TTLID != 0 {
		t.Fatalf("list = %+v, want one reservation with TTLID 0", list)
	}
	res := list.Leases[0]

	rn, err := e.reg.RenewLease(ctx, res)
	if err != nil {
		t.Fatalf("renewing a reservation: %v", err)
	}
	if !rn.Reserved() || !rn.Expiration.IsZero() || rn.Revision != res.Revision {
		t.Fatalf("renewed reservation %+v", rn)
	}

	// Rewriting the value keeps it a reservation.
	up, err := e.reg.UpdateLease(ctx, res, attrs("192.0.2.7"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !up.Reserved() || !up.Expiration.IsZero() {
		t.Fatalf("updated reservation %+v, want TTLID 0 and no expiration", up)
	}
	if _, id, _ := e.rawGet(t, leaseKey("10.244.7.0-24")); id != 0 {
		t.Fatalf("reservation now carries etcd lease %x", id)
	}
	if n := e.etcdLeaseCount(t); n != 0 {
		t.Fatalf("%d etcd leases exist, want none", n)
	}

	// A TTL lease turned into a reservation drops its etcd lease.
	l, err := e.reg.CreateLease(ctx, sn("10.244.8.0/24"), netip.Prefix{}, attrs("192.0.2.8"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := e.reg.UpdateLease(ctx, l, l.Attrs, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !pinned.Reserved() || e.leaseAlive(t, l.TTLID) {
		t.Fatalf("pinned %+v; old etcd lease alive %v", pinned, e.leaseAlive(t, l.TTLID))
	}
	if _, id, _ := e.rawGet(t, leaseKey("10.244.8.0-24")); id != 0 {
		t.Fatalf("pinned key carries etcd lease %x", id)
	}

	// Created directly as a reservation.
	c, err := e.reg.CreateLease(ctx, sn("10.244.9.0/24"), netip.Prefix{}, attrs("192.0.2.9"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Reserved() {
		t.Fatalf("created %+v, want a reservation", c)
	}

	if err := e.reg.DeleteLease(ctx, sn("10.244.7.0/24"), netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.RenewLease(ctx, up); !errors.Is(err, subnet.ErrNotFound) {
		t.Fatalf("renew of a deleted reservation: %v, want ErrNotFound", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := ctxT(t)
	if _, err := e.reg.CreateLease(ctx, sn("10.244.5.1/24"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour); err == nil {
		t.Error("create with host bits set succeeded")
	}
	if _, err := e.reg.CreateLease(ctx, sn("fd00::/64"), netip.Prefix{}, attrs("192.0.2.1"), time.Hour); err == nil {
		t.Error("create of an IPv6 subnet succeeded")
	}
	if _, err := e.reg.CreateLease(ctx, sn("10.244.5.0/24"), netip.Prefix{}, subnet.LeaseAttrs{}, time.Hour); err == nil {
		t.Error("create without PublicIP succeeded")
	}
	if _, err := e.reg.CreateLease(ctx, sn("10.244.5.0/24"), netip.Prefix{}, attrs("192.0.2.1"), -time.Second); err == nil {
		t.Error("create with a negative TTL succeeded")
	}
	if _, err := e.reg.UpdateLease(ctx, subnet.Lease{Subnet: sn("10.244.5.0/24")}, attrs("192.0.2.1"), time.Hour); err == nil || errors.Is(err, subnet.ErrTaken) {
		t.Errorf("update of a lease without revision: %v, want a plain error", err)
	}
	if n := e.etcdLeaseCount(t); n != 0 {
		t.Errorf("%d etcd leases granted by rejected calls", n)
	}
	if _, _, ok := e.rawGet(t, leaseKey("10.244.5.0-24")); ok {
		t.Error("a rejected call wrote the key")
	}
}
