package subnetenv

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse, which reads a file other tools may write. Seeds
// live in testdata/fuzz/FuzzParse (flanneld's own files and malformed variants); run with
//
//	go test -fuzz=FuzzParse -fuzztime=30s ./pkg/subnetenv/
//
// Whatever Parse accepts has at least one complete family (FLANNEL_NETWORK and
// FLANNEL_SUBNET, IPv4; FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET, IPv6), every prefix
// of its key's family, and an MTU that is absent (0) or in range; what weft would write
// from it passes Validate and reads back the same: Marshal is a fixed point.
func FuzzParse(f *testing.F) {
	f.Add([]byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"))
	f.Add([]byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\n"))
	f.Add([]byte(flannelDual))
	f.Add([]byte(flannelIPv6Only))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(data)
		if err != nil {
			return
		}
		v4 := e.Network.IsValid() && e.Subnet.IsValid()
		v6 := e.IPv6Network.IsValid() && e.IPv6Subnet.IsValid()
		if !v4 && !v6 || v4 != e.HasIPv4() || v6 != e.HasIPv6() {
			t.Fatalf("accepted %q without one complete family: %+v", data, e)
		}
		for _, p := range []netip.Prefix{e.Network, e.Subnet} {
			if p.IsValid() && !p.Addr().Is4() {
				t.Fatalf("accepted %q with the IPv4 prefix %s", data, p)
			}
		}
		for _, p := range []netip.Prefix{e.IPv6Network, e.IPv6Subnet} {
			if p.IsValid() && (!p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "") {
				t.Fatalf("accepted %q with the IPv6 prefix %s", data, p)
			}
		}
		if e.MTU != 0 && (e.MTU < 68 || e.MTU > 65535) {
			t.Fatalf("accepted %q with MTU %d", data, e.MTU)
		}
		if e.MTU == 0 {
			// FLANNEL_MTU was absent; weft never writes a file without one (Marshal would
			// write 0, which Parse refuses), so there is no round trip to check.
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted %q, but Validate refuses %+v: %v", data, e, err)
		}
		out := e.Marshal()
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("accepted %q, but its rendering %q does not parse: %v", data, out, err)
		}
		if again != e {
			t.Fatalf("round trip of %q changed %+v into %+v", data, e, again)
		}
		if out2 := again.Marshal(); !bytes.Equal(out, out2) {
			t.Fatalf("Marshal is not a fixed point: %q then %q", out, out2)
		}
	})
}
