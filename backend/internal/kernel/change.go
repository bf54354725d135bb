package kernel

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// ChangeKind says what a Change is about.
type ChangeKind uint8

// The kinds of Change. Addresses, routes and neighbours are reported for the families
// subscribed to (IPv4 unless told otherwise); bridge forwarding entries (FDB) come from
// the neighbour group with family AF_BRIDGE.
const (
	LinkChange  ChangeKind = iota + 1 // a link was added, changed (flags, MTU, MAC…) or deleted
	AddrChange                        // an address was added or deleted
	RouteChange                       // a route was added, replaced or deleted
	NeighChange                       // a neighbour entry (ARP, NDP) was added, changed or deleted
	FDBChange                         // a bridge forwarding entry was added, changed or deleted
	// Resync means notifications may have been lost (the socket overflowed, broke, or
	// was re-opened): the receiver must assume that anything may have changed.
	Resync
)

func (k ChangeKind) String() string {
	switch k {
	case LinkChange:
		return "link"
	case AddrChange:
		return "address"
	case RouteChange:
		return "route"
	case NeighChange:
		return "neighbour"
	case FDBChange:
		return "fdb"
	case Resync:
		return "resync"
	}
	return fmt.Sprintf("ChangeKind(%d)", uint8(k))
}

// Change is one kernel change notification, reduced to what a backend needs to decide
// cheaply whether it concerns its own state.
type Change struct {
	Kind    ChangeKind
	Deleted bool // RTM_DEL*: the object is gone; false for a new or changed object
	// LinkIndex is the link the object belongs to: the link itself, the address's or
	// neighbour's device, the route's output link (0 for routes without one, such as
	// multipath or blackhole routes).
	LinkIndex int
	LinkName  string // LinkChange: the link's name
	LinkUp    bool   // LinkChange: administratively up (IFF_UP)
	// Prefix is the address with its prefix length (AddrChange), the destination
	// (RouteChange; 0.0.0.0/0 or ::/0 for the default route) or the entry's IP as a /32
	// or /128 (NeighChange; FDBChange when the entry names a remote). Its address's
	// family is the change's.
	Prefix  netip.Prefix
	Gateway netip.Addr       // RouteChange: the gateway, if any
	Table   int              // RouteChange: the routing table (RTA_TABLE when present)
	MAC     net.HardwareAddr // NeighChange, FDBChange: the link-layer address
	Err     error            // Resync: why (nil when a broken subscription is back)
}

func (c Change) String() string {
	op := "new"
	if c.Deleted {
		op = "del"
	}
	switch c.Kind {
	case LinkChange:
		return fmt.Sprintf("%s link %s #%d up=%v", op, c.LinkName, c.LinkIndex, c.LinkUp)
	case AddrChange:
		return fmt.Sprintf("%s address %s dev #%d", op, c.Prefix, c.LinkIndex)
	case RouteChange:
		return fmt.Sprintf("%s route %s via %v dev #%d table %d", op, c.Prefix, c.Gateway, c.LinkIndex, c.Table)
	case NeighChange, FDBChange:
		return fmt.Sprintf("%s %s %v lladdr %s dev #%d", op, c.Kind, c.Prefix, c.MAC, c.LinkIndex)
	case Resync:
		return fmt.Sprintf("resync (%v)", c.Err)
	}
	return c.Kind.String()
}

// Sizes of the fixed headers (linux/rtnetlink.h, linux/if_addr.h, linux/neighbour.h).
const (
	sizeIfInfomsg = 16 // family, pad, type, index, flags, change
	sizeIfAddrmsg = 8  // family, prefixlen, flags, scope, index
	sizeRtMsg     = 12 // family, dst_len, src_len, tos, table, protocol, scope, type, flags
	sizeNdMsg     = 12 // family, pad×3, ifindex, state, flags, type
)

// ParseChange turns one rtnetlink notification into a Change. It reports false for
// messages that are not link, address, route, neighbour or bridge FDB notifications, for
// address, route and neighbour notifications of a family not in fs, and for malformed
// ones. No fs means IPv4 only. It is pure and never panics, whatever the bytes.
func ParseChange(m syscall.NetlinkMessage, fs ...Family) (Change, bool) {
	set, _ := familySet(fs)
	return parseChange(m, set)
}

// parseChange is ParseChange for the families in set.
func parseChange(m syscall.NetlinkMessage, set families) (Change, bool) {
	var c Change
	b := m.Data
	ne := binary.NativeEndian
	switch m.Header.Type {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		if len(b) < sizeIfInfomsg {
			return c, false
		}
		c.Kind, c.Deleted = LinkChange, m.Header.Type == unix.RTM_DELLINK
		c.LinkIndex = int(int32(ne.Uint32(b[4:])))
		c.LinkUp = ne.Uint32(b[8:])&unix.IFF_UP != 0
		ok := eachAttr(b[sizeIfInfomsg:], func(typ uint16, v []byte) {
			if typ == unix.IFLA_IFNAME {
				c.LinkName = cString(v)
			}
		})
		return c, ok
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		if len(b) < sizeIfAddrmsg || !set.has(b[0]) || int(b[1]) > Family(b[0]).bits() {
			return c, false
		}
		f := Family(b[0])
		c.Kind, c.Deleted = AddrChange, m.Header.Type == unix.RTM_DELADDR
		c.LinkIndex = int(ne.Uint32(b[4:]))
		var local, addr netip.Addr
		ok := eachAttr(b[sizeIfAddrmsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.IFA_LOCAL:
				local = f.addr(v)
			case unix.IFA_ADDRESS:
				addr = f.addr(v)
			}
		})
		if local.IsValid() { // on point-to-point links IFA_ADDRESS is the peer
			addr = local
		}
		if !addr.IsValid() {
			return c, false
		}
		c.Prefix = netip.PrefixFrom(addr, int(b[1]))
		return c, ok
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		if len(b) < sizeRtMsg || !set.has(b[0]) || int(b[1]) > Family(b[0]).bits() {
			return c, false
		}
		f := Family(b[0])
		c.Kind, c.Deleted = RouteChange, m.Header.Type == unix.RTM_DELROUTE
		c.Table = int(b[4])
		dst := f.unspecified()
		ok := eachAttr(b[sizeRtMsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.RTA_DST:
				if a := f.addr(v); a.IsValid() {
					dst = a
				}
			case unix.RTA_OIF:
				if len(v) >= 4 {
					c.LinkIndex = int(ne.Uint32(v))
				}
			case unix.RTA_GATEWAY:
				c.Gateway = f.addr(v)
			case unix.RTA_TABLE:
				if len(v) >= 4 {
					c.Table = int(ne.Uint32(v))
				}
			}
		})
		c.Prefix = netip.PrefixFrom(dst, int(b[1]))
		return c, ok
	case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
		if len(b) < sizeNdMsg {
			return c, false
		}
		switch {
		case b[0] == unix.AF_BRIDGE:
			c.Kind = FDBChange
		case set.has(b[0]):
			c.Kind = NeighChange
		default:
			return c, false
		}
		c.Deleted = m.Header.Type == unix.RTM_DELNEIGH
		c.LinkIndex = int(int32(ne.Uint32(b[4:])))
		ok := eachAttr(b[sizeNdMsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.NDA_DST:
				// A neighbour's address is of the message's family; an FDB entry's remote
				// is of the underlay's, whatever set says.
				a := Family(b[0]).addr(v)
				if c.Kind == FDBChange {
					if a = IPv4.addr(v); !a.IsValid() {
						a = IPv6.addr(v)
					}
				}
				if a.IsValid() {
					c.Prefix = netip.PrefixFrom(a, a.BitLen())
				}
			case unix.NDA_LLADDR:
				c.MAC = net.HardwareAddr(append([]byte(nil), v...))
			}
		})
		return c, ok
	}
	return c, false
}

// eachAttr calls fn for each rtnetlink attribute in b (type without the nested and
// byte-order flags) and reports whether b was well formed.
func eachAttr(b []byte, fn func(typ uint16, v []byte)) bool {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(b))
		if l < unix.SizeofRtAttr || l > len(b) {
			return false
		}
		fn(ne.Uint16(b[2:])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[unix.SizeofRtAttr:l])
		l = (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if l > len(b) {
			return true // the last attribute need not be padded
		}
		b = b[l:]
	}
	return true
}

func cString(v []byte) string {
	for i, c := range v {
		if c == 0 {
			return string(v[:i])
		}
	}
	return string(v)
}
