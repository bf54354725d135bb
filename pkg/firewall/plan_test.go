package firewall

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

var (
	testNetwork  = netip.MustParsePrefix("10.244.0.0/16")
	testSubnet   = netip.MustParsePrefix("10.244.3.0/24")
	testNetwork6 = netip.MustParsePrefix("fd00:10:244::/56")
	testSubnet6  = netip.MustParsePrefix("fd00:10:244:3::/64")
	testOverlay  = Overlay{Network: testNetwork, Subnet: testSubnet}
)

func TestDesiredActions(t *testing.T) {
	known := Inputs{Overlay: testOverlay, TunnelSet: true, TunnelProto: TunnelUDP, TunnelPort: 8472,
		Peers: []netip.Addr{netip.MustParseAddr("192.0.2.2")}}
	all := Options{IPMasq: true, ForwardRules: true, RestrictTunnelPort: true}
	for _, tc := range []struct {
		name string
		opts Options
		in   Inputs
		want [NumParts]Action
		errs [NumParts]bool
	}{
		{"nothing known yet", all, Inputs{}, [NumParts]Action{Leave, Leave, Leave}, [NumParts]bool{}},
		{"features off", Options{}, Inputs{}, [NumParts]Action{Remove, Remove, Leave}, [NumParts]bool{}},
		{"all known", all, known, [NumParts]Action{Manage, Manage, Manage}, [NumParts]bool{}},
		{"no tunnel", all, Inputs{Overlay: testOverlay, TunnelSet: true},
			[NumParts]Action{Manage, Manage, Remove}, [NumParts]bool{}},
		{"bad tunnel left alone", all, Inputs{Overlay: testOverlay, TunnelSet: true, TunnelProto: "sctp"},
			[NumParts]Action{Manage, Manage, Leave}, [NumParts]bool{false, false, true}},
		{"bad subnet left alone", all, Inputs{Overlay: Overlay{Network: testNetwork, Subnet: netip.MustParsePrefix("10.9.0.0/24")}},
			[NumParts]Action{Leave, Manage, Leave}, [NumParts]bool{true, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Desired(tc.opts, tc.in, IPv4)
			for i, pp := range p {
				if pp.Part != Part(i) || pp.Action != tc.want[i] || (pp.Err != nil) != tc.errs[i] {
					t.Errorf("%v: action %v err %v; want %v, error %v", pp.Part, pp.Action, pp.Err, tc.want[i], tc.errs[i])
				}
				if (pp.Action == Manage) != (len(pp.Rules) > 0) {
					t.Errorf("%v: action %v with %d rules", pp.Part, pp.Action, len(pp.Rules))
				}
				if pp.Err != nil && !errors.Is(pp.Err, ErrInvalid) {
					t.Errorf("%v: error %v is not ErrInvalid", pp.Part, pp.Err)
				}
			}
			if p[Tunnel].Action == Manage && !slices.Equal(p[Tunnel].Peers, tc.in.Peers) {
				t.Errorf("tunnel peers %v, want %v", p[Tunnel].Peers, tc.in.Peers)
			}
		})
	}
}

func TestMasqRulesFlanneldOrder(t *testing.T) {
	r, err := MasqRules(IPv4, netip.MustParsePrefix("10.244.1.2/16"), netip.MustParsePrefix("10.244.3.1/24"), true)
	if err != nil {
		t.Fatal(err)
	}
	n, sn := testNetwork, testSubnet
	want := []Rule{
		{Comment: "weft: kube-proxy marked, no masq", KubeProxyMark: true, Verdict: Return},
		{Comment: "weft: own subnet to network, no masq", Src: sn, Dst: n, Verdict: Return},
		{Comment: "weft: network to own subnet, no masq", Src: n, Dst: sn, Verdict: Return},
		{Comment: "weft: outside to own subnet, no masq", Src: n, NotSrc: true, Dst: sn, Verdict: Return},
		{Comment: "weft: masq network to outside", Src: n, Dst: Multicast(IPv4), NotDst: true, Verdict: Masquerade, FullyRandom: true},
		{Comment: "weft: masq outside to network", Src: n, NotSrc: true, Dst: n, Verdict: Masquerade, FullyRandom: true},
	}
	if !slices.Equal(r, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", r, want)
	}
	p := Desired(Options{IPMasq: true, DisableFullyRandom: true}, Inputs{Overlay: testOverlay}, IPv4)
	for _, r := range p[Masq].Rules {
		if r.FullyRandom {
			t.Fatalf("DisableFullyRandom: %+v", r)
		}
	}
}

func TestTunnelRules(t *testing.T) {
	r, err := TunnelRules(TunnelUDP, 8472, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Comment: "weft: tunnel from peer", Proto: TunnelUDP, DPort: 8472, FromPeers: true, Verdict: Accept},
		{Comment: "weft: tunnel from non-peer, drop", Proto: TunnelUDP, DPort: 8472, Verdict: Drop},
	}
	if !slices.Equal(r, want) {
		t.Fatalf("got %+v", r)
	}
	if r, _ := TunnelRules(TunnelGRE, 99, false); len(r) != 1 || r[0].DPort != 0 || !r[0].FromPeers {
		t.Fatalf("gre: %+v", r)
	}
	for _, bad := range []struct {
		proto string
		port  int
	}{{TunnelUDP, 0}, {TunnelUDP, 65536}, {"tcp", 1}} {
		if _, err := TunnelRules(bad.proto, bad.port, true); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: err %v", bad, err)
		}
	}
}

func TestPeerSetAndDiff(t *testing.T) {
	a := netip.MustParseAddr
	got := PeerSet([]netip.Addr{a("192.0.2.9"), a("192.0.2.10"), a("192.0.2.9"), a("::ffff:198.51.100.1"), a("fd00::1"), {}})
	if want := []netip.Addr{a("192.0.2.9"), a("192.0.2.10"), a("198.51.100.1")}; !slices.Equal(got, want) {
		t.Fatalf("PeerSet = %v", got)
	}
	add, del := Diff([]netip.Addr{a("10.0.0.1"), a("10.0.0.2"), a("10.0.0.4")}, []netip.Addr{a("10.0.0.2"), a("10.0.0.3"), a("10.0.0.5")})
	if !slices.Equal(add, []netip.Addr{a("10.0.0.3"), a("10.0.0.5")}) || !slices.Equal(del, []netip.Addr{a("10.0.0.1"), a("10.0.0.4")}) {
		t.Fatalf("Diff: add %v del %v", add, del)
	}
	if add, del := Diff(nil, nil); add != nil || del != nil {
		t.Fatal("Diff of nothing")
	}
}

func TestTrackerMarksParts(t *testing.T) {
	tr := NewTracker()
	tr.SetPeers([]netip.Addr{netip.MustParseAddr("192.0.2.2")})
	in, due := tr.Take()
	if due != [NumParts]bool{false, false, true} || len(in.Peers) != 1 {
		t.Fatalf("after SetPeers: due %v, inputs %+v", due, in)
	}
	select {
	case <-tr.kick:
	default:
		t.Fatal("a change did not wake the loop")
	}
	tr.SetPeers([]netip.Addr{netip.MustParseAddr("192.0.2.2")}) // no change
	tr.SetNetwork(testOverlay)
	if _, due = tr.Take(); due != [NumParts]bool{true, true, true} {
		t.Fatalf("after SetNetwork: due %v", due)
	}
	tr.Redo([]Part{Tunnel})
	if _, due = tr.Take(); due != [NumParts]bool{false, false, true} {
		t.Fatalf("after Redo: due %v", due)
	}
}
