package firewall

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

// TestDesiredFamilies: each family's rules exist only while the network runs it, and
// are removed (not left) when it does not, so a dual-stack network turned IPv4-only
// loses its IPv6 rules.
func TestDesiredFamilies(t *testing.T) {
	a := netip.MustParseAddr
	all := Options{IPMasq: true, ForwardRules: true, RestrictTunnelPort: true}
	tunnel := func(o Overlay) Inputs {
		return Inputs{Overlay: o, TunnelSet: true, TunnelProto: TunnelUDP, TunnelPort: 8472,
			Peers: []netip.Addr{a("192.0.2.2")}, IPv6Peers: []netip.Addr{a("2001:db8::2")}}
	}
	dual := Overlay{Network: testNetwork, Subnet: testSubnet, IPv6Network: testNetwork6, IPv6Subnet: testSubnet6}
	only6 := Overlay{IPv6Network: testNetwork6, IPv6Subnet: testSubnet6}
	M, R, L := Manage, Remove, Leave
	for _, tc := range []struct {
		name   string
		in     Inputs
		v4, v6 [NumParts]Action
		err6   bool
	}{
		{"nothing known", Inputs{TunnelSet: true, TunnelProto: TunnelUDP, TunnelPort: 1}, [3]Action{L, L, L}, [3]Action{L, L, L}, false},
		{"IPv4 only", tunnel(testOverlay), [3]Action{M, M, M}, [3]Action{R, R, R}, false},
		{"dual stack", tunnel(dual), [3]Action{M, M, M}, [3]Action{M, M, M}, false},
		{"IPv6 only", tunnel(only6), [3]Action{R, R, R}, [3]Action{M, M, M}, false},
		{"IPv6 only, no tunnel yet", Inputs{Overlay: only6}, [3]Action{R, R, L}, [3]Action{M, M, L}, false},
		{"IPv4 prefix as IPv6 network", tunnel(Overlay{IPv6Network: testNetwork, IPv6Subnet: testSubnet}),
			[3]Action{R, R, R}, [3]Action{L, L, L}, true},
		{"IPv6 subnet without network", tunnel(Overlay{Network: testNetwork, Subnet: testSubnet, IPv6Subnet: testSubnet6}),
			[3]Action{M, M, M}, [3]Action{L, L, L}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for f, want := range map[Family][NumParts]Action{IPv4: tc.v4, IPv6: tc.v6} {
				p := Desired(all, tc.in, f)
				for i, pp := range p {
					if pp.Action != want[i] {
						t.Errorf("%v %v: action %v, want %v (err %v)", f, pp.Part, pp.Action, want[i], pp.Err)
					}
					if pp.Err != nil && (f == IPv4 || !tc.err6 || !errors.Is(pp.Err, ErrInvalid)) {
						t.Errorf("%v %v: unexpected error %v", f, pp.Part, pp.Err)
					}
					for _, r := range pp.Rules {
						for _, pr := range []netip.Prefix{r.Src, r.Dst} {
							if pr.IsValid() && !f.Has(pr.Addr()) {
								t.Errorf("%v %v: rule %+v has a prefix of the other family", f, pp.Part, r)
							}
						}
					}
				}
				if p[Tunnel].Action == Manage && !slices.Equal(p[Tunnel].Peers, tc.in.PeersOf(f)) {
					t.Errorf("%v tunnel peers %v, want %v", f, p[Tunnel].Peers, tc.in.PeersOf(f))
				}
			}
		})
	}
}

// TestMasqRulesIPv6 checks flanneld's IPv6 masquerade rules: the IPv4 ones with the IPv6
// network and subnet and ff00::/8 as the multicast that is never masqueraded.
func TestMasqRulesIPv6(t *testing.T) {
	r, err := MasqRules(IPv6, netip.MustParsePrefix("fd00:10:244::1/56"), netip.MustParsePrefix("fd00:10:244:3::1/64"), true)
	if err != nil {
		t.Fatal(err)
	}
	n, sn := testNetwork6, testSubnet6
	want := []Rule{
		{Comment: "weft: kube-proxy marked, no masq", KubeProxyMark: true, Verdict: Return},
		{Comment: "weft: own subnet to network, no masq", Src: sn, Dst: n, Verdict: Return},
		{Comment: "weft: network to own subnet, no masq", Src: n, Dst: sn, Verdict: Return},
		{Comment: "weft: outside to own subnet, no masq", Src: n, NotSrc: true, Dst: sn, Verdict: Return},
		{Comment: "weft: masq network to outside", Src: n, Dst: netip.MustParsePrefix("ff00::/8"), NotDst: true, Verdict: Masquerade, FullyRandom: true},
		{Comment: "weft: masq outside to network", Src: n, NotSrc: true, Dst: n, Verdict: Masquerade, FullyRandom: true},
	}
	if !slices.Equal(r, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", r, want)
	}
	for _, bad := range []struct{ n, sn string }{
		{"10.244.0.0/16", "10.244.3.0/24"},       // IPv4 as IPv6
		{"fd00:10:244::/56", "10.244.3.0/24"},    // mixed
		{"fd00:10:244::/56", "fd00:99::/64"},     // outside
		{"fd00:10:244::/56", "fd00:10:244::/48"}, // larger than the network
	} {
		_, err := MasqRules(IPv6, netip.MustParsePrefix(bad.n), netip.MustParsePrefix(bad.sn), true)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%v in %v: err %v", bad.sn, bad.n, err)
		}
	}
}

func TestPeerSetOfIPv6(t *testing.T) {
	a := netip.MustParseAddr
	in := []netip.Addr{a("2001:db8::9"), a("192.0.2.1"), a("2001:db8::2"), a("2001:db8::9"), a("::ffff:198.51.100.1"), a("fe80::1%eth0"), {}}
	if got, want := PeerSetOf(IPv6, in), []netip.Addr{a("2001:db8::2"), a("2001:db8::9"), a("fe80::1")}; !slices.Equal(got, want) {
		t.Fatalf("PeerSetOf(IPv6) = %v, want %v", got, want)
	}
	if got, want := PeerSetOf(IPv4, in), []netip.Addr{a("192.0.2.1"), a("198.51.100.1")}; !slices.Equal(got, want) {
		t.Fatalf("PeerSetOf(IPv4) = %v, want %v", got, want)
	}
	tr := NewTracker()
	tr.SetPeers(in)
	if got := tr.Inputs(); len(got.Peers) != 2 || len(got.IPv6Peers) != 3 {
		t.Fatalf("tracker inputs %+v", got)
	}
}
