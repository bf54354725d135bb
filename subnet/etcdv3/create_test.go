package etcdv3_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
)

// CreateLease's guards: a subnet belongs to one key, whatever the other subnet of the key.

func dualAttrs(pub, pub6 string) subnet.LeaseAttrs {
	a := attrs(pub)
	a.PublicIPv6 = netip.MustParseAddr(pub6)
	return a
}

// create splits a lease key ("10.244.5.0-24&fd00:0:0:7::-64") and creates it with a TTL
// (ttl > 0) or as a reservation.
func create(t *testing.T, e env, key string, ttl time.Duration) error {
	t.Helper()
	v4, v6, err := subnet.ParseLeaseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	a := subnet.LeaseAttrs{BackendType: "vxlan"}
	if v4.IsValid() {
		a.PublicIP = netip.MustParseAddr("192.0.2.7")
	}
	if v6.IsValid() {
		a.PublicIPv6 = netip.MustParseAddr("2001:db8::7")
	}
	_, err = e.reg.CreateLease(ctxT(t), v4, v6, a, ttl)
	return err
}

// mustCreate creates key and fails the test if the store refuses it.
func mustCreate(t *testing.T, e env, key string, ttl time.Duration) {
	t.Helper()
	if err := create(t, e, key, ttl); err != nil {
		t.Fatalf("create %s: %v", key, err)
	}
}

// refused creates key, expects ErrTaken, and checks that nothing is left of the attempt:
// the key as it was (absent, or the older key of that name untouched), no new etcd lease.
func refused(t *testing.T, e env, key string, ttl time.Duration) {
	t.Helper()
	leasesBefore := e.etcdLeaseCount(t)
	revBefore := e.modRevision(t, leaseKey(key))
	err := create(t, e, key, ttl)
	if !errors.Is(err, subnet.ErrTaken) {
		t.Fatalf("create %s: %v, want ErrTaken", key, err)
	}
	t.Logf("create %s: %v", key, err)
	if rev := e.modRevision(t, leaseKey(key)); rev != revBefore {
		t.Errorf("the refused key %s is at revision %d, was %d (0: absent)", key, rev, revBefore)
	}
	if n := e.etcdLeaseCount(t); n != leasesBefore {
		t.Errorf("%d etcd leases after the refused create, %d before: its grant was not revoked", n, leasesBefore)
	}
}

// modRevision is key's modification revision, 0 when it is absent.
func (e env) modRevision(t *testing.T, key string) int64 {
	t.Helper()
	resp, err := e.cli.Get(ctxT(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].ModRevision
}

func TestCreateLeaseRefusesSecondKeyOfAnIPv4Subnet(t *testing.T) {
	for _, ttl := range []time.Duration{time.Hour, 0} {
		t.Run("ttl="+ttl.String(), func(t *testing.T) {
			e := setup(t)
			mustCreate(t, e, "10.244.5.0-24&fd00:0:0:7::-64", ttl)
			refused(t, e, "10.244.5.0-24&fd00:0:0:9::-64", ttl)
			refused(t, e, "10.244.5.0-24", ttl)
			refused(t, e, "10.244.5.0-24&fd00:0:0:7::-64", ttl) // the same key, as before
		})
	}
}

func TestCreateLeaseDualStackAfterIPv4OnlyKey(t *testing.T) {
	e := setup(t)
	// An IPv4-only reservation as flanneld's users write it: no etcd lease.
	e.rawPut(t, leaseKey("10.244.5.0-24"), `{"PublicIP":"192.0.2.50","PublicIPv6":null}`)
	refused(t, e, "10.244.5.0-24&fd00:0:0:9::-64", time.Hour)
	mustCreate(t, e, "10.244.6.0-24&fd00:0:0:9::-64", time.Hour)
}

// A key whose IPv4 part is a string prefix of another's (128.0.0.0-1 of 128.0.0.0-16) holds
// another subnet: it must not be refused.
func TestCreateLeaseStringPrefixIsNotACollision(t *testing.T) {
	e := setup(t)
	mustCreate(t, e, "128.0.0.0-16&fd00:0:0:1::-64", time.Hour)
	mustCreate(t, e, "128.0.0.0-1&fd00:0:0:2::-64", time.Hour)
	mustCreate(t, e, "64.0.0.0-24&fd00:0:0:3::-64", time.Hour)
	mustCreate(t, e, "64.0.0.0-2", 0)
	mustCreate(t, e, "192.0.0.0-24", time.Hour)
	mustCreate(t, e, "192.0.0.0-2&fd00:0:0:4::-64", time.Hour)
	list, err := e.reg.ListLeases(ctxT(t))
	if err != nil || len(list.Leases) != 6 {
		t.Fatalf("the store holds %d leases (%v), want 6", len(list.Leases), err)
	}
}

// The IPv6 subnet is a key's suffix: the later key of two holding it gives way, whatever
// their IPv4 subnets, and whether each is a lease, a reservation or an IPv6-only key.
func TestCreateLeaseRefusesLaterKeyOfAnIPv6Subnet(t *testing.T) {
	cases := []struct {
		name         string
		older, later string
		olderTTL     time.Duration
		laterTTL     time.Duration
	}{
		{"dual-stack leases", "10.244.5.0-24&fd00:0:0:7::-64", "10.244.6.0-24&fd00:0:0:7::-64", time.Hour, time.Hour},
		{"reservation then lease", "10.244.5.0-24&fd00:0:0:7::-64", "10.244.6.0-24&fd00:0:0:7::-64", 0, time.Hour},
		{"lease then reservation", "10.244.5.0-24&fd00:0:0:7::-64", "10.244.6.0-24&fd00:0:0:7::-64", time.Hour, 0},
		{"IPv6-only then dual-stack", "0.0.0.0-0&fd00:0:0:7::-64", "10.244.6.0-24&fd00:0:0:7::-64", time.Hour, time.Hour},
		{"dual-stack then IPv6-only", "10.244.5.0-24&fd00:0:0:7::-64", "0.0.0.0-0&fd00:0:0:7::-64", time.Hour, time.Hour},
		{"IPv6-only twice", "0.0.0.0-0&fd00:0:0:7::-64", "0.0.0.0-0&fd00:0:0:7::-64", time.Hour, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := setup(t)
			mustCreate(t, e, c.older, c.olderTTL)
			refused(t, e, c.later, c.laterTTL)
			if _, _, ok := e.rawGet(t, leaseKey(c.older)); !ok {
				t.Fatalf("the older key %s is gone", c.older)
			}
			// Another IPv6 subnet under the same IPv4 subnet is free.
			if c.later != c.older {
				later6, _ := netip.ParsePrefix("fd00:0:0:8::/64")
				v4, _, _ := subnet.ParseLeaseKey(c.later)
				mustCreate(t, e, subnet.LeaseKey(v4, later6), c.laterTTL)
			}
		})
	}
}

// A key written by hand (or by flanneld) counts by its name, even when its value does
// not parse.
func TestCreateLeaseMalformedValueStillHoldsItsSubnets(t *testing.T) {
	e := setup(t)
	e.rawPut(t, leaseKey("10.244.5.0-24&fd00:0:0:7::-64"), `not json`)
	refused(t, e, "10.244.5.0-24&fd00:0:0:9::-64", time.Hour)
	refused(t, e, "10.244.6.0-24&fd00:0:0:7::-64", time.Hour)
}

// The guards are about creating: the holder of a dual-stack lease updates and renews it as
// before.
func TestDualStackLeaseUpdatesAndRenewsUnderGuard(t *testing.T) {
	e := setup(t)
	ctx := ctxT(t)
	l, err := e.reg.CreateLease(ctx, sn("10.244.5.0/24"), sn("fd00:0:0:7::/64"), dualAttrs("192.0.2.1", "2001:db8::1"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.RenewLease(ctx, l); err != nil {
		t.Fatalf("renew: %v", err)
	}
	u, err := e.reg.UpdateLease(ctx, l, dualAttrs("192.0.2.1", "2001:db8::2"), time.Hour)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, err := e.reg.RenewLease(ctx, u); err != nil {
		t.Fatalf("renew after update: %v", err)
	}
	if _, err := e.reg.UpdateLease(ctx, u, u.Attrs, 0); err != nil {
		t.Fatalf("turn into a reservation: %v", err)
	}
}
