package wireguard

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/subnet"
)

func pubKey(t testing.TB) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func wgLease(sn, pub string, key wgtypes.Key) subnet.Lease {
	return subnet.Lease{Subnet: netip.MustParsePrefix(sn), Attrs: subnet.LeaseAttrs{
		PublicIP: netip.MustParseAddr(pub), BackendType: Name, BackendData: backendData(key)}}
}

func ev(typ subnet.EventType, l subnet.Lease) subnet.Event { return subnet.Event{Type: typ, Lease: l} }

func TestPeerSetApply(t *testing.T) {
	own, k1, k2 := pubKey(t), pubKey(t), pubKey(t)
	s := newPeerSet(51820, own)
	sn := netip.MustParsePrefix("10.244.2.0/24")
	steps := []struct {
		e    subnet.Event
		want changeKind
	}{
		{ev(subnet.Added, wgLease("10.244.2.0/24", "192.0.2.2", k1)), added},
		{ev(subnet.Added, wgLease("10.244.2.0/24", "192.0.2.2", k1)), unchanged},
		{ev(subnet.Added, wgLease("10.244.2.0/24", "192.0.2.2", k2)), updated}, // new key (restart with a new key file)
		{ev(subnet.Added, wgLease("10.244.2.0/24", "192.0.2.9", k2)), updated}, // new endpoint
		{ev(subnet.Added, subnet.Lease{Subnet: sn, Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.9")}}), rejected},
		{ev(subnet.Removed, wgLease("10.244.2.0/24", "192.0.2.9", k2)), unchanged},
		{ev(subnet.Added, wgLease("10.244.2.0/24", "192.0.2.9", k2)), added},
		{ev(subnet.Removed, wgLease("10.244.2.0/24", "192.0.2.9", k2)), removed},
	}
	for i, st := range steps {
		if c := s.apply(st.e); c.kind != st.want {
			t.Fatalf("step %d: kind %d, want %d (%+v)", i, c.kind, st.want, c)
		}
	}
	s.apply(ev(subnet.Added, wgLease("10.244.2.0/24", "192.0.2.2", k1)))
	if got := s.leases[subnet.LeaseKey(sn, netip.Prefix{})]; got.key != k1 || got.endpoint != netip.MustParseAddrPort("192.0.2.2:51820") {
		t.Fatalf("lease %+v", got)
	}
}

func TestDesiredGroupsByKey(t *testing.T) {
	own, k1, k2 := pubKey(t), pubKey(t), pubKey(t)
	s := newPeerSet(51820, own)
	for _, l := range []subnet.Lease{
		wgLease("10.244.2.0/24", "192.0.2.2", k1),
		wgLease("10.244.9.0/24", "192.0.2.2", k1), // the same node's second (stale) lease
		wgLease("10.244.3.0/24", "192.0.2.3", k2),
		wgLease("10.244.4.0/24", "192.0.2.4", k2),  // k2's file copied to another node
		wgLease("10.244.5.0/24", "192.0.2.5", own), // this node's key
	} {
		s.apply(ev(subnet.Added, l))
	}
	want, bad := s.desired()
	p := netip.MustParsePrefix
	if w := want[k1]; w.endpoint != netip.MustParseAddrPort("192.0.2.2:51820") || !slices.Equal(w.allowed, []netip.Prefix{p("10.244.2.0/24"), p("10.244.9.0/24")}) {
		t.Errorf("k1: %+v", w)
	}
	if w := want[k2]; w.endpoint != netip.MustParseAddrPort("192.0.2.3:51820") || !slices.Equal(w.allowed, []netip.Prefix{p("10.244.3.0/24")}) {
		t.Errorf("k2: %+v", w)
	}
	if len(want) != 2 || len(bad) != 2 || bad[p("10.244.4.0/24")] == "" || bad[p("10.244.5.0/24")] == "" {
		t.Errorf("want %v, bad %v", want, bad)
	}
}

func TestDiffPeers(t *testing.T) {
	k1, k2, k3 := pubKey(t), pubKey(t), pubKey(t)
	pp := peerParams{keepalive: 25 * time.Second}
	want := map[wgtypes.Key]wantPeer{
		k1: {endpoint: netip.MustParseAddrPort("192.0.2.2:51820"), allowed: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}},
		k2: {endpoint: netip.MustParseAddrPort("192.0.2.3:51820"), allowed: []netip.Prefix{netip.MustParsePrefix("10.244.3.0/24")}},
	}
	// Nothing there: both are set, in full.
	cfgs := diffPeers(want, nil, pp, true)
	if len(cfgs) != 2 || !cfgs[0].ReplaceAllowedIPs || cfgs[0].PersistentKeepaliveInterval == nil || *cfgs[0].PersistentKeepaliveInterval != 25*time.Second || cfgs[0].PresharedKey == nil {
		t.Fatalf("from empty: %+v", cfgs)
	}
	// As wanted: nothing to do, also as the device shows it (IPv4-mapped endpoints).
	have := asPeers(want, pp)
	have[0].Endpoint = &net.UDPAddr{IP: net.ParseIP("::ffff:" + have[0].Endpoint.IP.String()), Port: have[0].Endpoint.Port}
	if cfgs := diffPeers(want, have, pp, true); len(cfgs) != 0 {
		t.Fatalf("in place: %+v", cfgs)
	}
	// A stranger is removed; a peer with other allowed IPs is set again.
	have = append(asPeers(want, pp), wgtypes.Peer{PublicKey: k3})
	for i := range have {
		if have[i].PublicKey == k2 {
			have[i].AllowedIPs = nil
		}
	}
	cfgs = diffPeers(want, have, pp, true)
	if len(cfgs) != 2 {
		t.Fatalf("stranger and changed: %+v", cfgs)
	}
	for _, c := range cfgs {
		if (c.PublicKey == k3) != c.Remove || (c.PublicKey != k3 && c.PublicKey != k2) {
			t.Errorf("change %+v", c)
		}
	}
	// A roamed endpoint is drift only when endpoints are compared.
	have = asPeers(want, pp)
	have[0].Endpoint = net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.7:4000"))
	if cfgs := diffPeers(want, have, pp, false); len(cfgs) != 0 {
		t.Fatalf("roaming counted as drift: %+v", cfgs)
	}
	if cfgs := diffPeers(want, have, pp, true); len(cfgs) != 1 {
		t.Fatalf("endpoint change not set: %+v", cfgs)
	}
	// Another PSK or keepalive is drift.
	if cfgs := diffPeers(want, asPeers(want, pp), peerParams{psk: k3, keepalive: pp.keepalive}, false); len(cfgs) != 2 {
		t.Fatalf("PSK change: %+v", cfgs)
	}
}

// TestPeerSetDualStack: in a dual-stack network a peer's allowed IPs are both its subnets
// (one WireGuard peer per lease, kept by Lease.Key()); IPv6-only leases are kept apart
// (their IPv4 subnet is the zero Prefix for all) and, in Mode auto, reached at their IPv6
// address, while Mode ipv4 has no address to reach them at.
func TestPeerSetDualStack(t *testing.T) {
	own, k1, k2, k3 := pubKey(t), pubKey(t), pubKey(t), pubKey(t)
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	lease := func(sn4, sn6, pub4, pub6 string, k wgtypes.Key) subnet.Lease {
		l := subnet.Lease{IPv6Subnet: p(sn6), Attrs: subnet.LeaseAttrs{BackendType: Name, PublicIPv6: a(pub6), BackendV6Data: backendData(k)}}
		if sn4 != "" {
			l.Subnet, l.Attrs.PublicIP, l.Attrs.BackendData = p(sn4), a(pub4), backendData(k)
		}
		return l
	}
	dual := lease("10.244.2.0/24", "fd00:10:0:2::/64", "192.0.2.2", "2001:db8::2", k1)
	only3 := lease("", "fd00:10:0:3::/64", "", "2001:db8::3", k2)
	only4 := lease("", "fd00:10:0:4::/64", "", "2001:db8::4", k3)
	for _, mode := range []Mode{ModeAuto, ModeIPv4} {
		specs, err := layout(&subnet.Config{EnableIPv4: true, EnableIPv6: true}, Config{Mode: mode, ListenPort: 51820, ListenPortV6: 51821})
		if err != nil || len(specs) != 1 {
			t.Fatalf("%s: layout %+v, %v", mode, specs, err)
		}
		s := newLinkPeerSet(specs[0], mode, own, a("192.0.2.1"), netip.Addr{})
		var kinds []changeKind
		for _, l := range []subnet.Lease{dual, only3, only4} {
			kinds = append(kinds, s.apply(ev(subnet.Added, l)).kind)
		}
		want, bad := s.desired()
		if w := want[k1]; w.endpoint != netip.MustParseAddrPort("192.0.2.2:51820") ||
			!slices.Equal(w.allowed, []netip.Prefix{p("10.244.2.0/24"), p("fd00:10:0:2::/64")}) {
			t.Errorf("%s: dual peer %+v", mode, w)
		}
		switch mode {
		case ModeAuto:
			if !slices.Equal(kinds, []changeKind{added, added, added}) || len(want) != 3 || len(bad) != 0 {
				t.Errorf("auto: kinds %v, want %v, bad %v", kinds, want, bad)
			}
			if w := want[k2]; w.endpoint != netip.MustParseAddrPort("[2001:db8::3]:51820") || !slices.Equal(w.allowed, []netip.Prefix{p("fd00:10:0:3::/64")}) {
				t.Errorf("auto: IPv6-only peer %+v", w)
			}
		case ModeIPv4:
			if !slices.Equal(kinds, []changeKind{added, rejected, rejected}) || len(want) != 1 {
				t.Errorf("ipv4: kinds %v, want %v", kinds, want)
			}
		}
		if c := s.apply(ev(subnet.Removed, dual)); c.kind != removed || !slices.Equal(c.subnets, []netip.Prefix{p("10.244.2.0/24"), p("fd00:10:0:2::/64")}) {
			t.Errorf("%s: remove: %+v", mode, c)
		}
	}
}

func TestSelectEndpoint(t *testing.T) {
	a := netip.MustParseAddr
	none := netip.Addr{}
	for _, c := range []struct {
		peer4, peer6, own4, own6, want netip.Addr
	}{
		{a("192.0.2.2"), none, a("192.0.2.1"), none, a("192.0.2.2")},                         // IPv4 only
		{a("0.0.0.0"), a("2001:db8::2"), a("192.0.2.1"), a("2001:db8::1"), a("2001:db8::2")}, // IPv6-only lease
		{a("192.0.2.2"), a("2001:db8::2"), a("192.0.2.1"), a("2001:db8::1"), a("192.0.2.2")}, // public IPv4 first
		{a("10.0.0.2"), a("2001:db8::2"), a("10.0.0.1"), a("2001:db8::1"), a("2001:db8::2")}, // private IPv4, public IPv6
		{a("10.0.0.2"), a("fd00::2"), a("10.0.0.1"), a("fd00::1"), a("10.0.0.2")},            // both private
		{a("10.0.0.2"), a("2001:db8::2"), a("10.0.0.1"), none, a("10.0.0.2")},                // no own IPv6
		{a("192.0.2.2"), a("2001:db8::2"), none, a("2001:db8::1"), a("2001:db8::2")},         // no own IPv4
		{a("0.0.0.0"), none, a("192.0.2.1"), none, none},                                     // nothing
	} {
		if got := selectEndpoint(c.peer4, c.peer6, c.own4, c.own6); got != c.want {
			t.Errorf("selectEndpoint(%v, %v, own %v, %v) = %v, want %v", c.peer4, c.peer6, c.own4, c.own6, got, c.want)
		}
	}
}
