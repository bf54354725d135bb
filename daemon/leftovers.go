package daemon

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
)

// Backends leave their kernel state in place when weftd stops, so that pods keep talking
// across a restart. When the network config names another backend type at the next start
// (e.g. vxlan -> host-gw), that state belongs to no one: a vxlan device with its routes, a
// TUN whose route covers the whole network, or host-gw routes more specific than the new
// backend's. removeLeftovers deletes it before the new backend starts, by the names and
// shapes the backends are known to use (the backends themselves offer no teardown):
//
//	vxlan    vxlan devices named flannel.<VNI> and flannel-v6.<VNI> (routes, neighbours,
//	         fdb go with them)
//	udp      the TUN flannel0                    (its route goes with it)
//	gre      the GRE device weft.gre, the TUN weft-gre0
//	wireguard the devices flannel-wg and flannel-wg-v6 (kernel "wireguard", or userspace's TUN)
//	host-gw  main-table routes to subnets of the Network (and of the IPv6Network) via a
//	         gateway on the external interface (kept for vxlan with DirectRouting, which
//	         installs the same)
//
// Only state of another backend type is touched; the new backend adopts its own.

// leftoverOwner returns the backend type that creates a link of this name and kind
// (netlink's Type(): "vxlan", "tuntap", "gre"), or "" for a link no backend owns.
func leftoverOwner(name, kind string) string {
	switch {
	case kind == "vxlan" && isVXLANName(name):
		return "vxlan"
	case kind == "tuntap" && name == "flannel0":
		return "udp"
	case kind == "gre" && name == "weft.gre", kind == "tuntap" && name == "weft-gre0":
		return "gre"
	case (name == "flannel-wg" || name == "flannel-wg-v6") && (kind == "wireguard" || kind == "tuntap"):
		return "wireguard"
	}
	return ""
}

// isVXLANName reports whether name is flannel.<VNI> or flannel-v6.<VNI>.
func isVXLANName(name string) bool {
	vni, ok := strings.CutPrefix(name, "flannel.")
	if !ok {
		vni, ok = strings.CutPrefix(name, "flannel-v6.")
	}
	if !ok || vni == "" {
		return false
	}
	for _, c := range vni {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// keepsGatewayRoutes reports whether the backend being started installs host-gw style
// routes itself (so routes of that shape are not leftovers).
func keepsGatewayRoutes(btype string, cfg *subnet.Config) bool {
	switch btype {
	case "host-gw":
		return true
	case "vxlan":
		var b struct{ DirectRouting bool }
		_ = json.Unmarshal(cfg.Backend, &b) // validated already; absent means false
		return b.DirectRouting
	}
	return false
}

// isGatewayRoute reports whether r is a host-gw style route: main table, to a subnet inside
// network, via a gateway on the external interface.
func isGatewayRoute(r netlink.Route, network netip.Prefix, extIndex int) bool {
	dst, ok := ip.FromIPNet(r.Dst)
	if !ok || r.Gw == nil || r.LinkIndex != extIndex || (r.Table != 0 && r.Table != unix.RT_TABLE_MAIN) {
		return false
	}
	return dst.Bits() >= network.Bits() && network.Contains(dst.Addr())
}

// removeLeftovers deletes the kernel state of backend types other than btype (see above)
// from the network namespace weftd runs in. Failures are logged, not fatal: the new
// backend may work regardless, and the next start tries again.
func (d *Daemon) removeLeftovers(btype string, cfg *subnet.Config, ext backend.ExternalInterface) {
	links, err := netlink.LinkList()
	if err != nil {
		d.log.Error(err, "Cannot list links to look for another backend's devices")
		return
	}
	for _, l := range links {
		a := l.Attrs()
		owner := leftoverOwner(a.Name, l.Type())
		if owner == "" || owner == btype {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			d.log.Error(err, "Cannot remove a device left by another backend", "device", a.Name, "backend", owner, "now", btype)
			continue
		}
		d.log.Info("Removed a device left by another backend", "device", a.Name, "kind", l.Type(), "backend", owner, "now", btype)
	}
	if keepsGatewayRoutes(btype, cfg) || ext.Iface == nil {
		return
	}
	var networks []netip.Prefix
	if cfg.EnableIPv4 {
		networks = append(networks, cfg.Network)
	}
	if cfg.EnableIPv6 {
		networks = append(networks, cfg.IPv6Network)
	}
	var errs []error
	removed := 0
	for _, network := range networks {
		routes, err := netlink.RouteListFiltered(family(network), &netlink.Route{LinkIndex: ext.Iface.Index}, netlink.RT_FILTER_OIF)
		if err != nil {
			d.log.Error(err, "Cannot list routes to look for host-gw routes", "network", network)
			continue
		}
		for _, r := range routes {
			if !isGatewayRoute(r, network, ext.Iface.Index) {
				continue
			}
			if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, err)
				continue
			}
			removed++
			d.log.Info("Removed a host-gw route left by another backend", "subnet", r.Dst.String(), "via", r.Gw.String(), "now", btype)
		}
	}
	if err := errors.Join(errs...); err != nil {
		d.log.Error(err, "Cannot remove some host-gw routes left by another backend", "removed", removed)
	}
}
