package daemon

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend"
)

func TestTunnelSourceNote(t *testing.T) {
	eth0 := &net.Interface{Index: 2, Name: "eth0", MTU: 1500}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name     string
		ext      backend.ExternalInterface
		contains string
		warn     bool
	}{
		{name: "public ip is the interface address", ext: backend.ExternalInterface{Iface: eth0, IfaceAddr: a("192.0.2.5"), PublicIP: a("192.0.2.5"), PublicIPIface: "eth0"}},
		{name: "second address", ext: backend.ExternalInterface{Iface: eth0, IfaceAddr: a("192.0.2.5"), PublicIP: a("192.0.2.105"), PublicIPIface: "eth0"},
			contains: "Public IP 192.0.2.105 is another address of eth0 (interface address 192.0.2.5); tunnel traffic is sent from 192.0.2.105"},
		{name: "another interface", ext: backend.ExternalInterface{Iface: eth0, IfaceAddr: a("192.0.2.5"), PublicIP: a("198.51.100.7"), PublicIPIface: "dummy0"},
			contains: "Public IP 198.51.100.7 is not on eth0 but on dummy0; tunnel traffic is sent from 198.51.100.7"},
		{name: "not local", ext: backend.ExternalInterface{Iface: eth0, IfaceAddr: a("192.0.2.5"), PublicIP: a("203.0.113.7")},
			contains: "peers running weftd with --restrict-tunnel-port (the default) drop it unless SNAT on the path maps 192.0.2.5 to 203.0.113.7; turning the restriction off on this node does not help them", warn: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			note, warn := tunnelSourceNote(tc.ext)
			if warn != tc.warn || (tc.contains == "") != (note == "") || !strings.Contains(note, tc.contains) {
				t.Errorf("got %q, warn %v; want it to contain %q, warn %v", note, warn, tc.contains, tc.warn)
			}
			if got := tc.ext.TunnelSource(); (tc.ext.PublicIPIface != "") != (got == tc.ext.PublicIP) {
				t.Errorf("TunnelSource %v", got)
			}
		})
	}
}
