package subnet_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/subnettest"
)

func lease(sn, publicIP, btype string) subnet.Lease {
	return subnet.Lease{Subnet: pfx(sn), Attrs: subnettest.MustAttrs(publicIP, btype)}
}

func TestAdmissionCheck(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	own := lease("10.244.1.0/24", "192.0.2.1", "vxlan")
	badData := errors.New("no VtepMAC")
	vxlan := subnet.PeerRule{BackendType: "vxlan", CheckData: func(a subnet.LeaseAttrs) error {
		if a.PublicIP == netip.MustParseAddr("192.0.2.66") {
			return badData
		}
		return nil
	}}
	udp := subnet.PeerRule{BackendType: "udp", AnyBackendType: true}
	for _, tc := range []struct {
		name   string
		rule   subnet.PeerRule
		l      subnet.Lease
		reason string // "" = admitted
	}{
		{"a peer", vxlan, lease("10.244.2.0/24", "192.0.2.2", "vxlan"), ""},
		{"the whole network", vxlan, lease("10.244.0.0/16", "192.0.2.77", "vxlan"), subnet.IgnoredOutside},
		{"the default route", vxlan, lease("0.0.0.0/0", "192.0.2.77", "vxlan"), subnet.IgnoredOutside},
		{"outside the network", vxlan, lease("192.168.0.0/24", "192.0.2.2", "vxlan"), subnet.IgnoredOutside},
		{"a /32 for some host", vxlan, lease("10.244.7.9/32", "192.0.2.2", "vxlan"), subnet.IgnoredOutside},
		{"another length", vxlan, lease("10.244.2.0/25", "192.0.2.2", "vxlan"), subnet.IgnoredOutside},
		{"a /25 inside my /24", vxlan, lease("10.244.1.128/25", "192.0.2.2", "vxlan"), subnet.IgnoredOutside},
		{"my own public IP", vxlan, lease("10.244.3.0/24", "192.0.2.1", "vxlan"), subnet.IgnoredOwnIP},
		{"a loopback public IP", vxlan, lease("10.244.3.0/24", "127.0.0.1", "vxlan"), subnet.IgnoredPublicIP},
		{"a multicast public IP", vxlan, lease("10.244.3.0/24", "224.0.0.1", "vxlan"), subnet.IgnoredPublicIP},
		{"the broadcast public IP", vxlan, lease("10.244.3.0/24", "255.255.255.255", "vxlan"), subnet.IgnoredPublicIP},
		{"an unspecified public IP", vxlan, lease("10.244.3.0/24", "0.0.0.0", "vxlan"), subnet.IgnoredPublicIP},
		{"another backend", vxlan, lease("10.244.3.0/24", "192.0.2.3", "host-gw"), subnet.IgnoredBackendType},
		{"flanneld's udp lease on vxlan", vxlan, lease("10.244.3.0/24", "192.0.2.3", ""), subnet.IgnoredBackendType},
		{"bad backend data", vxlan, lease("10.244.3.0/24", "192.0.2.66", "vxlan"), subnet.IgnoredBackendData},
		{"udp admits any backend type", udp, lease("10.244.3.0/24", "192.0.2.3", "vxlan"), ""},
		{"udp admits flanneld's udp lease", udp, lease("10.244.3.0/24", "192.0.2.3", ""), ""},
		{"udp still refuses what is outside", udp, lease("0.0.0.0/0", "192.0.2.3", ""), subnet.IgnoredOutside},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adm := subnet.Admission{Network: cfg, Own: own, Rule: tc.rule}
			reason, detail, ok := adm.Check(tc.l, nil)
			if ok != (tc.reason == "") || reason != tc.reason {
				t.Fatalf("Check(%s %s %q) = %q %q %v, want %q", tc.l.Subnet, tc.l.Attrs.PublicIP, tc.l.Attrs.BackendType, reason, detail, ok, tc.reason)
			}
			if !ok && detail == "" {
				t.Error("no detail for an ignored lease")
			}
		})
	}
}

type ignoredCounts struct {
	mu   sync.Mutex
	last map[string]int
}

func (o *ignoredCounts) LeaseRenewed(subnet.Lease)       {}
func (o *ignoredCounts) LeaseRenewFailed(error)          {}
func (o *ignoredCounts) WatchResynced()                  {}
func (o *ignoredCounts) StoreError(string, error)        {}
func (o *ignoredCounts) LeasesIgnored(by map[string]int) { o.mu.Lock(); o.last = by; o.mu.Unlock() }
func (o *ignoredCounts) get() map[string]int             { o.mu.Lock(); defer o.mu.Unlock(); return o.last }

// The watch sends only admitted peers, lists the others with their reasons, and removes a
// peer whose lease turns unusable.
func TestWatchPeersAdmission(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	reg := subnettest.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := false
	defer func() {
		cancel()
		if started {
			<-done
		}
	}()
	put := func(sn, ip, bt string) {
		t.Helper()
		if _, err := reg.CreateLease(ctx, pfx(sn), netip.Prefix{}, subnettest.MustAttrs(ip, bt), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	put("10.244.2.0/24", "192.0.2.2", "host-gw")
	put("10.244.0.0/16", "192.0.2.77", "host-gw")
	// A registry refuses to write it; another etcd writer may.
	reg.PutRaw("0.0.0.0-0", []byte(`{"PublicIP":"192.0.2.77","PublicIPv6":null,"BackendType":"host-gw"}`), false)
	put("10.244.5.0/25", "192.0.2.5", "host-gw")
	put("10.244.7.0/24", "192.0.2.7", "vxlan")
	obs := &ignoredCounts{}
	m := subnet.NewManager(subnet.ManagerConfig{Registry: reg, Network: cfg, TTL: time.Hour,
		Log: ktesting.NewLogger(t, ktesting.NewConfig()), Observer: obs, Peers: subnet.PeerRule{BackendType: "host-gw"}})
	if _, err := m.Acquire(ctx, subnettest.MustAttrs("192.0.2.1", "host-gw"), subnet.Lease{Subnet: pfx("10.244.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	put("10.244.6.0/24", "192.0.2.1", "host-gw") // my own public IP: a stale lease of mine
	ch := make(chan []subnet.Event, 16)
	started = true
	go func() { done <- m.WatchPeers(ctx, ch) }()

	if got := summary(recv(t, ch)); len(got) != 1 || got[pfx("10.244.2.0/24")] != subnet.Added {
		t.Fatalf("initial peers %v, want only 10.244.2.0/24", got)
	}
	reasons := map[string]string{}
	for _, ig := range m.Ignored() {
		reasons[ig.Key] = ig.Reason
	}
	want := map[string]string{
		"10.244.0.0-16": subnet.IgnoredOutside, "0.0.0.0-0": subnet.IgnoredOutside, "10.244.5.0-25": subnet.IgnoredOutside,
		"10.244.6.0-24": subnet.IgnoredOwnIP, "10.244.7.0-24": subnet.IgnoredBackendType,
	}
	if len(reasons) != len(want) {
		t.Errorf("Ignored() = %v, want %v", reasons, want)
	}
	for k, r := range want {
		if reasons[k] != r {
			t.Errorf("Ignored()[%s] = %q, want %q", k, reasons[k], r)
		}
	}
	if got := obs.get(); got[subnet.IgnoredOutside] != 3 || got[subnet.IgnoredOwnIP] != 1 || got[subnet.IgnoredBackendType] != 1 {
		t.Errorf("observer counts %v", got)
	}

	// The peer turns unusable (another node's type): it is removed, and listed as ignored.
	list, _ := reg.ListLeases(ctx)
	for _, l := range list.Leases {
		if l.Subnet == pfx("10.244.2.0/24") {
			if _, err := reg.UpdateLease(ctx, l, subnettest.MustAttrs("192.0.2.2", "vxlan"), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := summary(recv(t, ch)); got[pfx("10.244.2.0/24")] != subnet.Removed {
		t.Fatalf("a peer turning unusable: %v, want Removed", got)
	}
	// An ignored lease that becomes usable is added; one deleted leaves the list.
	list, _ = reg.ListLeases(ctx)
	for _, l := range list.Leases {
		if l.Subnet == pfx("10.244.7.0/24") {
			if _, err := reg.UpdateLease(ctx, l, subnettest.MustAttrs("192.0.2.7", "host-gw"), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := summary(recv(t, ch)); got[pfx("10.244.7.0/24")] != subnet.Added {
		t.Fatalf("an ignored lease turning usable: %v, want Added", got)
	}
	if err := reg.DeleteLease(ctx, pfx("0.0.0.0/0"), netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	noEvents(t, ch)
	for _, ig := range m.Ignored() {
		if ig.Key == "0.0.0.0-0" || ig.Key == "10.244.7.0-24" {
			t.Errorf("%s still listed as ignored: %+v", ig.Key, ig)
		}
	}
}

// The same subnet under two keys (an IPv4 key and a dual-stack key) is one peer: the first
// admitted keeps it, the other is ignored as an overlap and takes over when the first goes.
func TestWatchPeersSameSubnetTwoKeys(t *testing.T) {
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16"}`)
	reg := subnettest.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := false
	defer func() {
		cancel()
		if started {
			<-done
		}
	}()
	reg.PutRaw("10.244.2.0-24", []byte(`{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan"}`), false)
	reg.PutRaw("10.244.2.0-24&fd00:0:0:2::-64", []byte(`{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"vxlan"}`), false)
	m := newManager(t, reg, cfg)
	if _, err := m.Acquire(ctx, subnettest.MustAttrs("192.0.2.1", "vxlan"), subnet.Lease{Subnet: pfx("10.244.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	ch := make(chan []subnet.Event, 16)
	started = true
	go func() { done <- m.WatchPeers(ctx, ch) }()
	evs := recv(t, ch)
	if len(evs) != 1 || evs[0].Lease.Attrs.PublicIP != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("initial %v, want the IPv4 key's lease only", evs)
	}
	if ig := m.Ignored(); len(ig) != 1 || ig[0].Reason != subnet.IgnoredOverlap {
		t.Fatalf("Ignored() = %+v, want the dual-stack key as an overlap", ig)
	}
	if err := reg.DeleteLease(ctx, pfx("10.244.2.0/24"), netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	evs = recv(t, ch)
	if len(evs) != 2 || evs[0].Type != subnet.Removed || evs[1].Type != subnet.Added || evs[1].Lease.Attrs.PublicIP != netip.MustParseAddr("192.0.2.3") {
		t.Fatalf("after the first key went: %v, want Removed then Added of 192.0.2.3", evs)
	}
}
