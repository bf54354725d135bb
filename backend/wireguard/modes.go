package wireguard

import (
	"fmt"

	"github.com/weftnet/weft/subnet"
)

// DeviceNameV6 is flanneld's second device in Mode separate: it carries the IPv6 side of
// the network, on ListenPortV6, with IPv6 endpoints.
const DeviceNameV6 = "flannel-wg-v6"

// via says which of a peer lease's public addresses a device sends to.
type via int

const (
	via4    via = iota // PublicIP
	via6               // PublicIPv6
	viaAuto            // flanneld's choice per peer (selectEndpoint)
)

func (v via) String() string {
	switch v {
	case via4:
		return "PublicIP"
	case via6:
		return "PublicIPv6"
	}
	return "PublicIP or PublicIPv6 (selectEndpoint)"
}

// linkSpec is one WireGuard device of a layout: its name, the UDP port every node's
// device of that name listens on, the families whose subnets it carries (its peers'
// allowed IPs, its own address and route) and the address it sends to.
type linkSpec struct {
	name   string
	port   int
	v4, v6 bool
	via    via
}

// layout decides flanneld's devices for a network and Mode. It is pure.
//
//	Mode       IPv4 network        dual stack                                IPv6-only network
//	separate   flannel-wg (v4)     flannel-wg (v4, ListenPort, PublicIP) +   flannel-wg-v6 (v6,
//	                               flannel-wg-v6 (v6, ListenPortV6, PublicIPv6)  ListenPortV6, PublicIPv6)
//	auto       flannel-wg (v4)     flannel-wg (v4+v6, selectEndpoint)        flannel-wg (v6, selectEndpoint)
//	ipv4       flannel-wg (v4)     flannel-wg (v4+v6, PublicIP)              refused: no PublicIP
//	ipv6       refused             flannel-wg (v4+v6, PublicIPv6)            flannel-wg (v6, PublicIPv6)
//
// In an IPv4 network every device sends to PublicIP. Mode ipv6 there is refused: weft
// learns no IPv6 address of the node unless the network runs IPv6 (flanneld neither, and
// would publish no PublicIPv6 to send to). Errors wrap subnet.ErrInvalidConfig and name
// the key and value.
func layout(cfg *subnet.Config, c Config) ([]linkSpec, error) {
	v4, v6 := cfg.EnableIPv4, cfg.EnableIPv6
	if !v4 && !v6 {
		return nil, invalid("the network runs neither IPv4 nor IPv6")
	}
	switch c.Mode {
	case ModeSeparate:
		var out []linkSpec
		if v4 {
			out = append(out, linkSpec{name: DeviceName, port: c.ListenPort, v4: true, via: via4})
		}
		if v6 {
			out = append(out, linkSpec{name: DeviceNameV6, port: c.ListenPortV6, v6: true, via: via6})
		}
		return out, nil
	case ModeAuto, ModeIPv4, ModeIPv6:
		s := linkSpec{name: DeviceName, port: c.ListenPort, v4: v4, v6: v6, via: via4}
		switch {
		case c.Mode == ModeIPv6 && !v6:
			return nil, invalid("key Mode: value %q sends to the peers' IPv6 addresses, which an IPv4 network (EnableIPv6 false) does not publish; "+
				"use %q, %q or %q (in an IPv4 network they are the same), or set EnableIPv6", c.Mode, ModeSeparate, ModeAuto, ModeIPv4)
		case c.Mode == ModeIPv4 && !v4:
			return nil, invalid("key Mode: value %q sends to the peers' IPv4 addresses, which an IPv6-only network (EnableIPv4=false) does not publish; "+
				"use %q, %q or %q", c.Mode, ModeSeparate, ModeAuto, ModeIPv6)
		case c.Mode == ModeIPv6:
			s.via = via6
		case c.Mode == ModeAuto && v6:
			s.via = viaAuto
		}
		return []linkSpec{s}, nil
	}
	return nil, invalid("key Mode: value %q is not one of %q, %q, %q, %q", c.Mode, ModeSeparate, ModeAuto, ModeIPv4, ModeIPv6)
}

// checkNetwork is the config check's part of layout (backend.Type.CheckNetwork): a Mode
// that sends to addresses the network's families do not publish is refused.
func checkNetwork(nw *subnet.Config) error {
	c, err := ParseConfig(nw.Backend)
	if err != nil {
		return err
	}
	_, err = layout(nw, c)
	return err
}

// checkExternal checks that the external interface has the addresses the layout needs:
// an IPv4 one when a device carries IPv4 or sends to PublicIP, an IPv6 one when a device
// sends to PublicIPv6 (peers send there too). Mode auto works with either.
func checkExternal(specs []linkSpec, has4, has6 bool) error {
	for _, s := range specs {
		if (s.v4 || s.via == via4) && !has4 {
			return fmt.Errorf("%s: device %s needs an IPv4 address and public IP on the external interface", errPrefix, s.name)
		}
		if s.via == via6 && !has6 {
			return fmt.Errorf("%s: device %s sends to the peers' IPv6 addresses and needs an IPv6 address and public IPv6 on the external interface", errPrefix, s.name)
		}
		if s.via == viaAuto && !has4 && !has6 {
			return fmt.Errorf("%s: device %s needs an IPv4 or IPv6 address on the external interface", errPrefix, s.name)
		}
	}
	return nil
}
