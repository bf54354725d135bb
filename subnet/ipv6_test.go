package subnet_test

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/subnettest"
)

// lease6 builds a lease with an IPv4 part (sn, pub: "" for none) and an IPv6 part (sn6,
// pub6: "" for none).
func lease6(sn, pub, sn6, pub6, btype string) subnet.Lease {
	l := subnet.Lease{Attrs: subnet.LeaseAttrs{BackendType: btype}}
	if sn != "" {
		l.Subnet = pfx(sn)
	}
	if pub != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(pub)
	}
	if sn6 != "" {
		l.IPv6Subnet = pfx(sn6)
	}
	if pub6 != "" {
		l.Attrs.PublicIPv6 = netip.MustParseAddr(pub6)
	}
	return l
}

func TestAdmissionIPv6(t *testing.T) {
	dual := mustConfig(t, `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`)
	only6 := mustConfig(t, `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`)
	only4 := mustConfig(t, `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	ownDual := lease6("10.244.1.0/24", "192.0.2.1", "fd00:10:244:1::/64", "2001:db8::1", "vxlan")
	own6 := lease6("", "", "fd00:10:244:1::/64", "", "vxlan")
	own6.Attrs.PublicIPv6 = netip.MustParseAddr("2001:db8::1")
	rule := subnet.PeerRule{BackendType: "vxlan"}
	for _, tc := range []struct {
		name   string
		cfg    *subnet.Config
		own    subnet.Lease
		l      subnet.Lease
		reason string // "" = admitted
	}{
		{"dual-stack peer", dual, ownDual, lease6("10.244.2.0/24", "192.0.2.2", "fd00:10:244:2::/64", "2001:db8::2", "vxlan"), ""},
		{"IPv4-only flanneld lease in a dual-stack network", dual, ownDual, lease6("10.244.2.0/24", "192.0.2.2", "", "", "vxlan"), ""},
		{"IPv6-only lease in a dual-stack network", dual, ownDual, lease6("", "", "fd00:10:244:2::/64", "2001:db8::2", "vxlan"), ""},
		{"IPv6 subnet outside", dual, ownDual, lease6("10.244.2.0/24", "192.0.2.2", "fd00:99::/64", "2001:db8::2", "vxlan"), subnet.IgnoredOutside},
		{"IPv6 subnet of another length", dual, ownDual, lease6("10.244.2.0/24", "192.0.2.2", "fd00:10:244:2::/80", "2001:db8::2", "vxlan"), subnet.IgnoredOutside},
		{"IPv6 subnet is mine", dual, ownDual, lease6("10.244.2.0/24", "192.0.2.2", "fd00:10:244:1::/64", "2001:db8::2", "vxlan"), subnet.IgnoredOverlap},
		{"no PublicIPv6", dual, ownDual, lease6("10.244.2.0/24", "192.0.2.2", "fd00:10:244:2::/64", "", "vxlan"), subnet.IgnoredPublicIP},
		{"link-local PublicIPv6", dual, ownDual, lease6("10.244.2.0/24", "192.0.2.2", "fd00:10:244:2::/64", "fe80::2", "vxlan"), subnet.IgnoredPublicIP},
		{"multicast PublicIPv6", dual, ownDual, lease6("10.244.2.0/24", "192.0.2.2", "fd00:10:244:2::/64", "ff02::1", "vxlan"), subnet.IgnoredPublicIP},
		{"v4-mapped PublicIPv6", dual, ownDual, lease6("10.244.2.0/24", "192.0.2.2", "fd00:10:244:2::/64", "::ffff:192.0.2.2", "vxlan"), subnet.IgnoredPublicIP},
		{"my PublicIPv6", dual, ownDual, lease6("10.244.2.0/24", "192.0.2.2", "fd00:10:244:2::/64", "2001:db8::1", "vxlan"), subnet.IgnoredOwnIP},
		{"IPv6-only peer", only6, own6, lease6("", "", "fd00:10:244:2::/64", "2001:db8::2", "vxlan"), ""},
		{"dual-stack lease in an IPv6-only network", only6, own6, lease6("10.244.2.0/24", "192.0.2.2", "fd00:10:244:2::/64", "2001:db8::2", "vxlan"), ""},
		{"IPv4-only lease in an IPv6-only network", only6, own6, lease6("10.244.2.0/24", "192.0.2.2", "", "", "vxlan"), subnet.IgnoredFamily},
		{"IPv6-only lease in an IPv4 network", only4, lease("10.244.1.0/24", "192.0.2.1", "vxlan"), lease6("", "", "fd00:10:244:2::/64", "2001:db8::2", "vxlan"), subnet.IgnoredFamily},
		{"dual-stack lease in an IPv4 network, bad IPv6 part not looked at", only4, lease("10.244.1.0/24", "192.0.2.1", "vxlan"), lease6("10.244.2.0/24", "192.0.2.2", "fd00:99::/64", "", "vxlan"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adm := subnet.Admission{Network: tc.cfg, Own: tc.own, Rule: rule}
			reason, detail, ok := adm.Check(tc.l, nil)
			if ok != (tc.reason == "") || reason != tc.reason {
				t.Fatalf("Check(%s) = %q %q %v, want reason %q", tc.l.Key(), reason, detail, ok, tc.reason)
			}
			if !ok && detail == "" {
				t.Fatalf("Check(%s) refused with reason %q but no detail", tc.l.Key(), reason)
			}
		})
	}
}

func TestAcquireIPv6(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, config string
		v4           bool
	}{
		{"dual stack", `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`, true},
		{"IPv6 only", `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/62","Backend":{"Type":"vxlan"}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustConfig(t, tc.config)
			reg := subnettest.New()
			seen4, seen6 := map[netip.Prefix]bool{}, map[netip.Prefix]bool{}
			var first subnet.Lease
			// A /62 of /64s has 3 to hand out (the first is skipped): the fourth node gets
			// ErrNoFreeSubnet.
			for i := 1; i <= 3; i++ {
				attrs := subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("2001:db8::" + strconv.Itoa(i)), BackendType: "vxlan"}
				if tc.v4 {
					attrs.PublicIP = netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
				}
				l, err := newManager(t, reg, cfg).Acquire(ctx, attrs, subnet.Lease{})
				if err != nil {
					t.Fatalf("node %d: %v", i, err)
				}
				if l.Subnet.IsValid() != tc.v4 || !cfg.ContainsIPv6(l.IPv6Subnet) || seen6[l.IPv6Subnet] || (tc.v4 && seen4[l.Subnet]) {
					t.Fatalf("node %d got %s, want a fresh subnet of each family the network runs", i, l.Key())
				}
				if !tc.v4 && !strings.HasPrefix(l.Key(), "0.0.0.0-0&fd00:10:244:") {
					t.Fatalf("IPv6-only key %q, want flanneld's 0.0.0.0-0&<v6>-<len>", l.Key())
				}
				seen4[l.Subnet], seen6[l.IPv6Subnet] = true, true
				if i == 1 {
					first = l
				}
			}
			// The same node again gets its lease back.
			attrs := first.Attrs
			again, err := newManager(t, reg, cfg).Acquire(ctx, attrs, subnet.Lease{})
			if err != nil || again.Key() != first.Key() {
				t.Fatalf("re-acquire = %s, %v; want %s", again.Key(), err, first.Key())
			}
			if !tc.v4 {
				attrs := subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("2001:db8::99"), BackendType: "vxlan"}
				if _, err := newManager(t, reg, cfg).Acquire(ctx, attrs, subnet.Lease{}); err == nil || !strings.Contains(err.Error(), "IPv6 subnets") {
					t.Fatalf("fourth node in a /62: %v, want a full IPv6 range", err)
				}
			}
		})
	}
}

func TestAcquireIPv6HintReused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := mustConfig(t, `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`)
	reg := subnettest.New()
	hint := subnet.Lease{Subnet: pfx("10.244.42.0/24"), IPv6Subnet: pfx("fd00:10:244:42::/64")}
	attrs := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.1"), PublicIPv6: netip.MustParseAddr("2001:db8::1"), BackendType: "vxlan"}
	l, err := newManager(t, reg, cfg).Acquire(ctx, attrs, hint)
	if err != nil || l.Key() != "10.244.42.0-24&fd00:10:244:42::-64" {
		t.Fatalf("Acquire with the subnet file's subnets = %s, %v", l.Key(), err)
	}
}

func TestWatchPeersIPv6OnlyPeersAreDistinct(t *testing.T) {
	cfg := mustConfig(t, `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}`)
	reg := subnettest.New()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 2; i <= 4; i++ {
		attrs := subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("2001:db8::" + strconv.Itoa(i)), BackendType: "host-gw"}
		if _, err := reg.CreateLease(ctx, netip.Prefix{}, pfx("fd00:10:244:"+strconv.Itoa(i)+"::/64"), attrs, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	m := subnet.NewManager(subnet.ManagerConfig{Registry: reg, Network: cfg, TTL: time.Hour,
		Log: ktesting.NewLogger(t, ktesting.NewConfig()), Peers: subnet.PeerRule{BackendType: "host-gw"}})
	me := subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("2001:db8::1"), BackendType: "host-gw"}
	if _, err := m.Acquire(ctx, me, subnet.Lease{}); err != nil {
		t.Fatal(err)
	}
	ch := make(chan []subnet.Event, 16)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.WatchPeers(wctx, ch) }()
	defer func() { wcancel(); <-done }()
	got := map[string]subnet.EventType{}
	for _, e := range recv(t, ch) {
		got[e.Lease.IPv6Subnet.String()] = e.Type
	}
	if len(got) != 3 {
		t.Fatalf("initial peers %v, want the three IPv6-only peers", got)
	}
	if err := reg.DeleteLease(ctx, netip.Prefix{}, pfx("fd00:10:244:3::/64")); err != nil {
		t.Fatal(err)
	}
	evs := recv(t, ch)
	if len(evs) != 1 || evs[0].Type != subnet.Removed || evs[0].Lease.IPv6Subnet != pfx("fd00:10:244:3::/64") {
		t.Fatalf("after deleting one IPv6-only lease: %+v, want it removed alone", evs)
	}
}

// TestAdmissionChecksOnlyTheFamiliesRun: the backend's data check sees only the families
// this node will program, so a dual-stack lease with unusable IPv6 data is an IPv4 peer of
// an IPv4 network (as for flanneld), and the other way round.
func TestAdmissionChecksOnlyTheFamiliesRun(t *testing.T) {
	only4 := mustConfig(t, `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	only6 := mustConfig(t, `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`)
	rule := subnet.PeerRule{BackendType: "vxlan", CheckData: func(a subnet.LeaseAttrs) error {
		if string(a.BackendData) == "broken" || string(a.BackendV6Data) == "broken" {
			return errors.New("broken data")
		}
		return nil
	}}
	l := lease6("10.244.2.0/24", "192.0.2.2", "fd00:10:244:2::/64", "2001:db8::2", "vxlan")
	l.Attrs.BackendV6Data = []byte("broken")
	own4 := lease("10.244.1.0/24", "192.0.2.1", "vxlan")
	if reason, detail, ok := (subnet.Admission{Network: only4, Own: own4, Rule: rule}).Check(l, nil); !ok {
		t.Errorf("IPv4 network: dual-stack lease with broken IPv6 data refused: %s %s", reason, detail)
	}
	own6 := lease6("", "", "fd00:10:244:1::/64", "2001:db8::1", "vxlan")
	if _, _, ok := (subnet.Admission{Network: only6, Own: own6, Rule: rule}).Check(l, nil); ok {
		t.Error("IPv6-only network: a lease with broken IPv6 data admitted")
	}
	l.Attrs.BackendV6Data, l.Attrs.BackendData = nil, []byte("broken")
	if reason, detail, ok := (subnet.Admission{Network: only6, Own: own6, Rule: rule}).Check(l, nil); !ok {
		t.Errorf("IPv6-only network: dual-stack lease with broken IPv4 data refused: %s %s", reason, detail)
	}
}
