package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

const hostGWConfig = `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`

// TestReserveThenAcquire: a reservation written by weftctl is what weftd's Manager takes
// for that public IP, and it stays a reservation.
func TestReserveThenAcquire(t *testing.T) {
	e := newEnv(t)
	e.putConfig(hostGWConfig)
	// Free subnets elsewhere, so that only the reservation explains the choice.
	r := e.run("reserve", "10.244.77.0/24", "192.0.2.7").must(t, 0)
	if r.stdout != "reserved 10.244.77.0/24 for 192.0.2.7\n" {
		t.Errorf("reserve: %s", r)
	}
	value, leaseID, ok := e.raw("10.244.77.0-24")
	if !ok || value != `{"PublicIP":"192.0.2.7","PublicIPv6":null}` || leaseID != 0 {
		t.Fatalf("stored %q with etcd lease %x (present %v), want flannel's reservation value without a lease", value, leaseID, ok)
	}

	cfg, err := subnet.ParseConfig([]byte(hostGWConfig))
	if err != nil {
		t.Fatal(err)
	}
	mgr := subnet.NewManager(subnet.ManagerConfig{Registry: e.reg, Network: cfg, Log: logr.Discard()})
	l, err := mgr.Acquire(ctxT(t), subnet.LeaseAttrs{PublicIP: addr("192.0.2.7"), BackendType: "host-gw"}, subnet.Lease{Subnet: pfx("10.244.5.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != pfx("10.244.77.0/24") || !l.Reserved() {
		t.Fatalf("Acquire took %s (reserved %v), want the reservation 10.244.77.0/24", l.Subnet, l.Reserved())
	}
	// Another node does not get it.
	other := subnet.NewManager(subnet.ManagerConfig{Registry: e.reg, Network: cfg, Log: logr.Discard()})
	if l2, err := other.Acquire(ctxT(t), subnet.LeaseAttrs{PublicIP: addr("192.0.2.8"), BackendType: "host-gw"}, subnet.Lease{Subnet: pfx("10.244.77.0/24")}); err != nil || l2.Subnet == pfx("10.244.77.0/24") {
		t.Fatalf("another node acquired %v (%v)", l2.Subnet, err)
	}

	// Reserving again for the same node changes nothing (weftd rewrote the value).
	r = e.run("reserve", "10.244.77.0-24", "192.0.2.7", "-o", "json").must(t, 0)
	var res reserveResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Action != reserveUnchanged || res.Subnet != pfx("10.244.77.0/24") {
		t.Errorf("second reserve: %+v (%v): %s", res, err, r)
	}
	if value, _, _ := e.raw("10.244.77.0-24"); !strings.Contains(value, `"BackendType":"host-gw"`) {
		t.Errorf("value after an unchanged reserve: %s", value)
	}
}

func TestReserveRefusals(t *testing.T) {
	e := newEnv(t)
	r := e.run("reserve", "10.244.1.0/24", "192.0.2.1").must(t, 1)
	if !strings.Contains(r.stderr, "no network config at "+testPrefix+"/config") {
		t.Errorf("no config: %s", r)
	}
	e.putConfig(hostGWConfig)
	e.lease("10.244.20.0/24", "192.0.2.20", "host-gw", time.Hour)
	e.lease("10.244.21.0/24", "192.0.2.21", "", 0)
	if _, err := e.reg.Client().Put(ctxT(t), testPrefix+"/subnets/10.244.30.0-24", "{broken"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"10.245.0.0/24", "192.0.2.1"}, "subnet 10.245.0.0/24 does not fit the network config (Network 10.244.0.0/16, SubnetLen /24)"},
		{[]string{"10.244.8.0/25", "192.0.2.1"}, "subnet 10.244.8.0/25 does not fit the network config"},
		{[]string{"10.244.20.0/24", "192.0.2.99"}, "subnet 10.244.20.0/24 is held by 192.0.2.20 (a lease), not 192.0.2.99"},
		{[]string{"10.244.21.0/24", "192.0.2.99"}, "subnet 10.244.21.0/24 is held by 192.0.2.21 (a reservation), not 192.0.2.99"},
		{[]string{"10.244.30.0/24", "192.0.2.30"}, "key " + testPrefix + "/subnets/10.244.30.0-24 exists but does not parse"},
	} {
		r := e.run(append([]string{"reserve"}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("reserve %v: want exit 1 and %q, got %s", tc.args, tc.want, r)
		}
	}
	if value, id, _ := e.raw("10.244.20.0-24"); !strings.Contains(value, "192.0.2.20") || id == 0 {
		t.Errorf("refused reserve changed the lease: %s %x", value, id)
	}
	if _, _, ok := e.raw("10.245.0.0-24"); ok {
		t.Error("a subnet outside the config was written")
	}
}

// TestReserveConvertsOwnLease: reserving the subnet a node already leases drops the TTL and
// keeps the value byte for byte.
func TestReserveConvertsOwnLease(t *testing.T) {
	e := newEnv(t)
	e.putConfig(hostGWConfig)
	l, err := e.reg.CreateLease(ctxT(t), pfx("10.244.9.0/24"), netip.Prefix{}, subnet.LeaseAttrs{
		PublicIP: addr("192.0.2.9"), BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}`),
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	before, _, _ := e.raw("10.244.9.0-24")
	e.lease("10.244.12.0/24", "192.0.2.9", "vxlan", time.Hour) // a second lease of the same node

	r := e.run("reserve", "10.244.9.0/24", "192.0.2.9").must(t, 0)
	if !strings.Contains(r.stdout, "now a reservation") {
		t.Errorf("convert: %s", r)
	}
	if !strings.Contains(r.stderr, "warning: 192.0.2.9 also holds") || !strings.Contains(r.stderr, "10.244.12.0/24") {
		t.Errorf("no warning about the node's other lease: %s", r)
	}
	after, id, ok := e.raw("10.244.9.0-24")
	if !ok || id != 0 || after != before {
		t.Fatalf("after convert: %q etcd lease %x, want %q without lease", after, id, before)
	}
	ttl, err := e.reg.Client().TimeToLive(ctxT(t), clientv3.LeaseID(l.TTLID))
	if err != nil || ttl.TTL != -1 {
		t.Errorf("old etcd lease %x still alive: %+v %v", l.TTLID, ttl, err)
	}
}

func TestUnreserve(t *testing.T) {
	e := newEnv(t)
	e.putConfig(hostGWConfig)
	e.run("reserve", "10.244.7.0/24", "192.0.2.7").must(t, 0)
	ordinary := e.lease("10.244.8.0/24", "192.0.2.8", "host-gw", time.Hour)

	r := e.run("unreserve", "10.244.7.0/24").must(t, 0)
	if r.stdout != "deleted the reservation of 192.0.2.7 for 10.244.7.0/24\n" {
		t.Errorf("unreserve: %s", r)
	}
	if _, _, ok := e.raw("10.244.7.0-24"); ok {
		t.Error("reservation still there")
	}

	r = e.run("unreserve", "10.244.7.0/24").must(t, 1)
	if !strings.Contains(r.stderr, "no reservation or lease for 10.244.7.0/24") {
		t.Errorf("missing: %s", r)
	}

	r = e.run("unreserve", "10.244.8.0/24").must(t, 1)
	if !strings.Contains(r.stderr, "10.244.8.0/24 is an ordinary lease held by 192.0.2.8") || !strings.Contains(r.stderr, "--force") {
		t.Errorf("ordinary lease: %s", r)
	}
	if _, _, ok := e.raw("10.244.8.0-24"); !ok {
		t.Fatal("ordinary lease deleted without --force")
	}

	r = e.run("unreserve", "--force", "-o", "json", "10.244.8.0-24").must(t, 0)
	var res unreserveResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Reservation || res.PublicIP != addr("192.0.2.8") || res.Revision == 0 {
		t.Errorf("--force JSON: %+v (%v): %s", res, err, r)
	}
	if _, _, ok := e.raw("10.244.8.0-24"); ok {
		t.Error("lease still there after --force")
	}
	if ttl, err := e.reg.Client().TimeToLive(ctxT(t), clientv3.LeaseID(ordinary.TTLID)); err != nil || ttl.TTL != -1 {
		t.Errorf("etcd lease of the deleted key not revoked: %+v %v", ttl, err)
	}

	// A reservation whose value does not parse can still be removed.
	if _, err := e.reg.Client().Put(ctxT(t), testPrefix+"/subnets/10.244.30.0-24", "{broken"); err != nil {
		t.Fatal(err)
	}
	r = e.run("unreserve", "10.244.30.0/24").must(t, 0)
	if r.stdout != "deleted the reservation for 10.244.30.0/24\n" {
		t.Errorf("malformed reservation: %s", r)
	}
}

// TestReserveLiveLeaseKeepsNodeHolding: reserving the subnet of a node that is running
// (a Manager holding and renewing its lease, watching peers) makes that lease a reservation
// without the node ever declaring it lost: its next renewal finds the reservation and keeps
// it, with nothing left to renew. Before, the conversion revoked the etcd lease the node
// renews, and the node's next renewal (a day later in production) reported the lease lost.
func TestReserveLiveLeaseKeepsNodeHolding(t *testing.T) {
	e := newEnv(t)
	e.putConfig(hostGWConfig)
	cfg, err := subnet.ParseConfig([]byte(hostGWConfig))
	if err != nil {
		t.Fatal(err)
	}
	// A short TTL so that renewals come every second or so.
	mgr := subnet.NewManager(subnet.ManagerConfig{Registry: e.reg, Network: cfg, TTL: 3 * time.Second, RenewMargin: 2 * time.Second, Log: logr.Discard()})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	l, err := mgr.Acquire(ctx, subnet.LeaseAttrs{PublicIP: addr("192.0.2.9"), BackendType: "host-gw"}, subnet.Lease{Subnet: pfx("10.244.9.0/24")})
	if err != nil || l.Subnet != pfx("10.244.9.0/24") || l.Reserved() {
		t.Fatalf("Acquire: %+v %v", l, err)
	}
	renewed := make(chan subnet.Lease, 100)
	held := make(chan error, 1)
	go func() { held <- mgr.Hold(ctx, l, func(l subnet.Lease) { renewed <- l }) }()
	peers := make(chan []subnet.Event, 100)
	watched := make(chan error, 1)
	go func() { watched <- mgr.WatchPeers(ctx, peers) }()
	select {
	case <-renewed: // the Hold loop runs
	case err := <-held:
		t.Fatalf("Hold ended before the first renewal: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no renewal within 10s")
	}

	r := e.run("reserve", "10.244.9.0/24", "192.0.2.9").must(t, 0)
	if !strings.Contains(r.stdout, "now a reservation") {
		t.Fatalf("reserve: %s", r)
	}
	// Several renewal periods: the node must keep its subnet, now as a reservation.
	deadline := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case err := <-held:
			t.Fatalf("the node lost its lease after weftctl reserve: %v", err)
		case <-renewed:
		case <-deadline:
			done = true
		}
	}
	if own := mgr.Own(); own.Subnet != pfx("10.244.9.0/24") || !own.Reserved() {
		t.Errorf("the node holds %s (reserved %v), want the reservation 10.244.9.0/24", own.Subnet, own.Reserved())
	}
	if _, id, ok := e.raw("10.244.9.0-24"); !ok || id != 0 {
		t.Errorf("key after reserve: present %v, etcd lease %x; want a reservation", ok, id)
	}
	cancel()
	if err := <-held; err != nil {
		t.Errorf("Hold: %v", err)
	}
	if err := <-watched; err != nil {
		t.Errorf("WatchPeers: %v", err)
	}
}
