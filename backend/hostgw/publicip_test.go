package hostgw

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// TestRefusesPublicIPNotInterfaceAddress: as flanneld, host-gw refuses a public IP (or
// public IPv6 address) that is not the external interface's address, for each family the
// network runs, even one that another interface or a second address of the same interface
// holds: peers route this node's subnet via the public IP on their shared link, so it must
// be the address they reach directly. The error names the public IP, the interface address
// and the interface. The family the network does not run is not checked.
func TestRefusesPublicIPNotInterfaceAddress(t *testing.T) {
	eth0 := &net.Interface{Index: 2, Name: "eth0", MTU: 1500}
	ifaceIP, natIP, secondIP := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("192.0.2.200")
	ifaceIP6, natIP6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:ff::7")
	v4 := &subnet.Config{EnableIPv4: true, Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24}
	v6 := &subnet.Config{EnableIPv6: true, IPv6Network: podNet6, IPv6SubnetLen: 64}
	dual := &subnet.Config{EnableIPv4: true, Network: v4.Network, SubnetLen: 24, EnableIPv6: true, IPv6Network: podNet6, IPv6SubnetLen: 64}
	ext := func(pub, pub6 netip.Addr) backend.ExternalInterface {
		return backend.ExternalInterface{Iface: eth0, IfaceAddr: ifaceIP, PublicIP: pub, PublicIPIface: "eth0",
			IfaceAddrV6: ifaceIP6, PublicIPv6: pub6, PublicIPv6Iface: "eth0"}
	}
	const (
		msg4 = "host-gw needs the public IP (%s) to be the interface's address (%s on eth0)"
		msg6 = "host-gw needs the public IPv6 address (%s) to be the interface's (%s on eth0)"
	)
	for _, c := range []struct {
		name string
		cfg  *subnet.Config
		ext  backend.ExternalInterface
		want string // the error's text up to its reason; "" for none
	}{
		{"IPv4: the interface's address", v4, ext(ifaceIP, netip.Addr{}), ""},
		{"IPv4: a NAT address", v4, ext(natIP, netip.Addr{}), fmt.Sprintf(msg4, natIP, ifaceIP)},
		{"IPv4: a second address of the interface", v4, ext(secondIP, netip.Addr{}), fmt.Sprintf(msg4, secondIP, ifaceIP)},
		{"IPv4: the IPv6 fields are not checked", v4, ext(ifaceIP, natIP6), ""},
		{"IPv6: the interface's address", v6, ext(netip.Addr{}, ifaceIP6), ""},
		{"IPv6: a NAT address", v6, ext(netip.Addr{}, natIP6), fmt.Sprintf(msg6, natIP6, ifaceIP6)},
		{"IPv6: the IPv4 fields are not checked", v6, ext(natIP, ifaceIP6), ""},
		{"dual stack: both the interface's", dual, ext(ifaceIP, ifaceIP6), ""},
		{"dual stack: IPv4 differs", dual, ext(natIP, ifaceIP6), fmt.Sprintf(msg4, natIP, ifaceIP)},
		{"dual stack: IPv6 differs", dual, ext(ifaceIP, natIP6), fmt.Sprintf(msg6, natIP6, ifaceIP6)},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Through the backend's table entry, as the daemon builds it.
			b, err := Type().New(backend.Env{Ext: c.ext, Network: c.cfg})
			switch {
			case c.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.want == "" && b == nil:
				t.Error("no backend and no error")
			case c.want != "" && err == nil:
				t.Errorf("accepted public IP %s / %s with interface addresses %s / %s; want the error %q",
					c.ext.PublicIP, c.ext.PublicIPv6, c.ext.IfaceAddr, c.ext.IfaceAddrV6, c.want)
			case c.want != "" && !strings.HasPrefix(err.Error(), c.want):
				t.Errorf("error %q, want it to start with %q", err, c.want)
			}
		})
	}
}
