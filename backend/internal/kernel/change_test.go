package kernel

import (
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// msg builds a netlink message of type typ from a fixed header and attributes.
func msg(typ uint16, hdr []byte, attrs ...*nl.RtAttr) syscall.NetlinkMessage {
	b := append([]byte(nil), hdr...)
	for _, a := range attrs {
		b = append(b, a.Serialize()...)
	}
	return syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: typ}, Data: b}
}

func u32(v uint32) []byte {
	b := make([]byte, 4)
	nl.NativeEndian().PutUint32(b, v)
	return b
}

func TestParseChange(t *testing.T) {
	ip4 := func(s string) []byte { a := netip.MustParseAddr(s).As4(); return a[:] }
	mac := net.HardwareAddr{0x0a, 0, 0, 0, 0, 1}
	ifinfo := func(index int32, flags uint32) []byte {
		m := nl.NewIfInfomsg(unix.AF_UNSPEC)
		m.Index, m.Flags = index, flags
		return m.Serialize()
	}
	rtmsg := func(family, dstLen, table uint8) []byte {
		m := nl.NewRtMsg()
		m.Family, m.Dst_len, m.Table = family, dstLen, table
		return m.Serialize()
	}
	ndmsg := func(family uint8, index uint32) []byte {
		m := netlink.Ndmsg{Family: family, Index: index, State: netlink.NUD_PERMANENT}
		return m.Serialize()
	}
	addrmsg := func(family, plen uint8, index uint32) []byte {
		m := nl.NewIfAddrmsg(int(family))
		m.Prefixlen, m.Index = plen, index
		return m.Serialize()
	}
	for _, c := range []struct {
		name string
		m    syscall.NetlinkMessage
		ok   bool
		want Change
	}{
		{"new link", msg(unix.RTM_NEWLINK, ifinfo(7, unix.IFF_UP), nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("flannel.1"))),
			true, Change{Kind: LinkChange, LinkIndex: 7, LinkName: "flannel.1", LinkUp: true}},
		{"deleted link", msg(unix.RTM_DELLINK, ifinfo(7, 0), nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated("flannel.1"))),
			true, Change{Kind: LinkChange, Deleted: true, LinkIndex: 7, LinkName: "flannel.1"}},
		{"route", msg(unix.RTM_NEWROUTE, rtmsg(unix.AF_INET, 24, unix.RT_TABLE_MAIN),
			nl.NewRtAttr(unix.RTA_DST, ip4("10.244.2.0")), nl.NewRtAttr(unix.RTA_OIF, u32(3)), nl.NewRtAttr(unix.RTA_GATEWAY, ip4("192.0.2.2"))),
			true, Change{Kind: RouteChange, LinkIndex: 3, Prefix: netip.MustParsePrefix("10.244.2.0/24"), Gateway: netip.MustParseAddr("192.0.2.2"), Table: unix.RT_TABLE_MAIN}},
		{"default route deleted, table attribute", msg(unix.RTM_DELROUTE, rtmsg(unix.AF_INET, 0, unix.RT_TABLE_COMPAT), nl.NewRtAttr(unix.RTA_TABLE, u32(1000))),
			true, Change{Kind: RouteChange, Deleted: true, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Table: 1000}},
		{"ipv6 route", msg(unix.RTM_NEWROUTE, rtmsg(unix.AF_INET6, 64, unix.RT_TABLE_MAIN)), false, Change{}},
		{"address", msg(unix.RTM_NEWADDR, addrmsg(unix.AF_INET, 32, 9), nl.NewRtAttr(unix.IFA_ADDRESS, ip4("10.244.1.0")), nl.NewRtAttr(unix.IFA_LOCAL, ip4("10.244.1.0"))),
			true, Change{Kind: AddrChange, LinkIndex: 9, Prefix: netip.MustParsePrefix("10.244.1.0/32")}},
		{"point-to-point address uses IFA_LOCAL", msg(unix.RTM_DELADDR, addrmsg(unix.AF_INET, 32, 9), nl.NewRtAttr(unix.IFA_ADDRESS, ip4("10.0.0.2")), nl.NewRtAttr(unix.IFA_LOCAL, ip4("10.0.0.1"))),
			true, Change{Kind: AddrChange, Deleted: true, LinkIndex: 9, Prefix: netip.MustParsePrefix("10.0.0.1/32")}},
		{"ipv6 address", msg(unix.RTM_NEWADDR, addrmsg(unix.AF_INET6, 64, 9)), false, Change{}},
		{"neighbour", msg(unix.RTM_NEWNEIGH, ndmsg(unix.AF_INET, 5), nl.NewRtAttr(unix.NDA_DST, ip4("10.244.2.0")), nl.NewRtAttr(unix.NDA_LLADDR, mac)),
			true, Change{Kind: NeighChange, LinkIndex: 5, Prefix: netip.MustParsePrefix("10.244.2.0/32"), MAC: mac}},
		{"fdb", msg(unix.RTM_DELNEIGH, ndmsg(unix.AF_BRIDGE, 5), nl.NewRtAttr(unix.NDA_LLADDR, mac), nl.NewRtAttr(unix.NDA_DST, ip4("192.0.2.2"))),
			true, Change{Kind: FDBChange, Deleted: true, LinkIndex: 5, Prefix: netip.MustParsePrefix("192.0.2.2/32"), MAC: mac}},
		{"ipv6 neighbour", msg(unix.RTM_NEWNEIGH, ndmsg(unix.AF_INET6, 5)), false, Change{}},
		{"done", msg(unix.NLMSG_DONE, u32(0)), false, Change{}},
		{"short link", msg(unix.RTM_NEWLINK, []byte{1, 2, 3}), false, Change{}},
		{"bad attribute length", msg(unix.RTM_NEWLINK, append(ifinfo(1, 0), 200, 0, 3, 0, 'x')), false, Change{}},
	} {
		got, ok := ParseChange(c.m)
		if ok != c.ok {
			t.Errorf("%s: ok = %v, want %v (%v)", c.name, ok, c.ok, got)
			continue
		}
		if ok && got.String() != c.want.String() {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func FuzzParseChange(f *testing.F) {
	for _, typ := range []uint16{unix.RTM_NEWLINK, unix.RTM_NEWADDR, unix.RTM_NEWROUTE, unix.RTM_NEWNEIGH} {
		f.Add(typ, []byte{})
		f.Add(typ, append(make([]byte, 16), 8, 0, 1, 0, 10, 244, 2, 0))
		f.Add(typ, append([]byte{unix.AF_INET, 24, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0}, 7, 0, 1, 0, 10, 244, 2))
	}
	f.Fuzz(func(t *testing.T, typ uint16, b []byte) {
		c, ok := ParseChange(syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: typ}, Data: b})
		if ok && (c.Kind < LinkChange || c.Kind > FDBChange) {
			t.Fatalf("kind %v from message type %d", c.Kind, typ)
		}
		_ = c.String()
	})
}
