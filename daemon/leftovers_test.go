package daemon

import (
	"encoding/json"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/subnet"
)

func TestLeftoverOwner(t *testing.T) {
	for _, tc := range []struct{ name, kind, want string }{
		{"flannel.1", "vxlan", "vxlan"},
		{"flannel.4096", "vxlan", "vxlan"},
		{"flannel-v6.1", "vxlan", "vxlan"},
		{"flannel-v6.", "vxlan", ""},
		{"flannel.1", "bridge", ""},
		{"flannel.", "vxlan", ""},
		{"flannel.x", "vxlan", ""},
		{"vxlan0", "vxlan", ""},
		{"flannel0", "tuntap", "udp"},
		{"flannel0", "vxlan", ""},
		{"weft.gre", "gre", "gre"},
		{"weft-gre0", "tuntap", "gre"},
		{"weft.gre", "tuntap", ""},
		{"flannel-wg", "wireguard", "wireguard"},
		{"flannel-wg", "tuntap", "wireguard"},
		{"flannel-wg", "vxlan", ""},
		{"flannel-wg-v6", "wireguard", "wireguard"},
		{"flannel-wg-v6", "tuntap", "wireguard"},
		{"flannel-wg-v6", "vxlan", ""},
		{"eth0", "veth", ""},
		{"cni0", "bridge", ""},
	} {
		if got := leftoverOwner(tc.name, tc.kind); got != tc.want {
			t.Errorf("leftoverOwner(%q, %q) = %q, want %q", tc.name, tc.kind, got, tc.want)
		}
	}
}

func TestKeepsGatewayRoutes(t *testing.T) {
	cfg := func(backend string) *subnet.Config { return &subnet.Config{Backend: json.RawMessage(backend)} }
	for _, tc := range []struct {
		btype, backend string
		want           bool
	}{
		{"host-gw", `{"Type":"host-gw"}`, true},
		{"vxlan", `{"Type":"vxlan"}`, false},
		{"vxlan", `{"Type":"vxlan","DirectRouting":true}`, true},
		{"udp", `{"Type":"udp"}`, false},
		{"gre", `{"Type":"gre"}`, false},
	} {
		if got := keepsGatewayRoutes(tc.btype, cfg(tc.backend)); got != tc.want {
			t.Errorf("keepsGatewayRoutes(%s, %s) = %v, want %v", tc.btype, tc.backend, got, tc.want)
		}
	}
}

func TestIsGatewayRoute(t *testing.T) {
	network := netip.MustParsePrefix("10.244.0.0/16")
	route := func(dst, gw string, link, table int) netlink.Route {
		_, n, _ := net.ParseCIDR(dst)
		r := netlink.Route{Dst: n, LinkIndex: link, Table: table}
		if gw != "" {
			r.Gw = net.ParseIP(gw)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		r    netlink.Route
		want bool
	}{
		{"host-gw peer route", route("10.244.5.0/24", "192.0.2.2", 2, 254), true},
		{"table unset", route("10.244.5.0/24", "192.0.2.2", 2, 0), true},
		{"the whole network via a gateway", route("10.244.0.0/16", "192.0.2.2", 2, 254), true},
		{"no gateway (connected)", route("10.244.5.0/24", "", 2, 254), false},
		{"other interface", route("10.244.5.0/24", "192.0.2.2", 3, 254), false},
		{"outside the network", route("10.245.5.0/24", "192.0.2.2", 2, 254), false},
		{"a supernet of the network", route("10.0.0.0/8", "192.0.2.2", 2, 254), false},
		{"other table", route("10.244.5.0/24", "192.0.2.2", 2, 100), false},
		{"default route", netlink.Route{Gw: net.ParseIP("192.0.2.254"), LinkIndex: 2}, false},
	} {
		if got := isGatewayRoute(tc.r, network, 2); got != tc.want {
			t.Errorf("%s: isGatewayRoute = %v, want %v", tc.name, got, tc.want)
		}
	}
	network6 := netip.MustParsePrefix("fd00:10:244::/56")
	for _, tc := range []struct {
		name string
		r    netlink.Route
		want bool
	}{
		{"host-gw IPv6 peer route", route("fd00:10:244:5::/64", "2001:db8::2", 2, 254), true},
		{"outside the IPv6 network", route("fd00:99::/64", "2001:db8::2", 2, 254), false},
		{"IPv6 route without a gateway", route("fd00:10:244:5::/64", "", 2, 254), false},
	} {
		if got := isGatewayRoute(tc.r, network6, 2); got != tc.want {
			t.Errorf("%s: isGatewayRoute = %v, want %v", tc.name, got, tc.want)
		}
	}
}
