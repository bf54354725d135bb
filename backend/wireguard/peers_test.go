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
	if got := s.leases[sn]; got.key != k1 || got.endpoint != netip.MustParseAddrPort("192.0.2.2:51820") {
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
