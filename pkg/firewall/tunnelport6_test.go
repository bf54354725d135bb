package firewall

import (
	"net/netip"
	"testing"
)

// TestDesiredTunnelPortV6: with an IPv6 port of its own (wireguard's Mode separate), the
// IPv6 tunnel rules match it and the IPv4 ones the main port; without one, or for GRE,
// both families use the main port (or none).
func TestDesiredTunnelPortV6(t *testing.T) {
	o := Options{RestrictTunnelPort: true}
	in := Inputs{
		Overlay: Overlay{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.1.0/24"),
			IPv6Network: netip.MustParsePrefix("fd00:10:244::/56"), IPv6Subnet: netip.MustParsePrefix("fd00:10:244:1::/64")},
		TunnelSet: true, TunnelProto: TunnelUDP, TunnelPort: 51820,
	}
	ports := func(in Inputs, f Family) []int {
		p := Desired(o, in, f)[Tunnel]
		if p.Action != Manage || p.Err != nil {
			t.Fatalf("%v: tunnel part %v, %v", f, p.Action, p.Err)
		}
		var out []int
		for _, r := range p.Rules {
			out = append(out, r.DPort)
		}
		return out
	}
	check := func(what string, got []int, want int) {
		t.Helper()
		if len(got) != 2 || got[0] != want || got[1] != want {
			t.Errorf("%s: rule ports %v, want %d on the accept and the drop rule", what, got, want)
		}
	}
	check("IPv4, one port", ports(in, IPv4), 51820)
	check("IPv6, one port", ports(in, IPv6), 51820)
	in.TunnelPort6 = 51821
	check("IPv4, own IPv6 port", ports(in, IPv4), 51820)
	check("IPv6, own IPv6 port", ports(in, IPv6), 51821)
	in.TunnelProto = TunnelGRE
	check("GRE ignores ports", ports(in, IPv6), 0)
}

// TestSetTunnelPortV6: the setter reaches the inputs, and setting the same port again is
// no change.
func TestSetTunnelPortV6(t *testing.T) {
	tr := NewTracker()
	tr.SetTunnelPortV6(51821)
	tr.SetTunnelPort(TunnelUDP, 51820)
	in := tr.Inputs()
	if in.TunnelPort6 != 51821 || in.TunnelPort != 51820 || !in.TunnelSet {
		t.Fatalf("inputs %+v", in)
	}
}
