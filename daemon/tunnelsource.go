package daemon

import (
	"fmt"

	"github.com/weftnet/weft/backend"
)

// tunnelSourceNote tells the operator, in one line, where this node's tunnel traffic comes
// from when --public-ip is not the interface address (see
// backend.ExternalInterface.TunnelSource), and whether peers that restrict the tunnel port
// to lease public IPs will accept it. It returns "" when the public IP is the interface
// address, and warn when peers running weftd will drop the traffic unless SNAT rewrites it.
func tunnelSourceNote(ext backend.ExternalInterface) (note string, warn bool) {
	pub, addr, name := ext.PublicIP, ext.IfaceAddr, ext.Iface.Name
	switch {
	case pub == addr:
		return "", false
	case ext.PublicIPIface == name:
		return fmt.Sprintf("Public IP %s is another address of %s (interface address %s); tunnel traffic is sent from %s", pub, name, addr, pub), false
	case ext.PublicIPIface != "":
		return fmt.Sprintf("Public IP %s is not on %s but on %s; tunnel traffic is sent from %s", pub, name, ext.PublicIPIface, pub), false
	default:
		return fmt.Sprintf("Public IP %s is on no interface of this node (a NAT or load-balancer address?); tunnel traffic is sent from %s, "+
			"so peers running weftd with --restrict-tunnel-port (the default) drop it unless SNAT on the path maps %s to %s; "+
			"turning the restriction off on this node does not help them: turn it off on the peers, or see troubleshooting.md", pub, addr, addr, pub), true
	}
}
