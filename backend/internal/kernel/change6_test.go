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

// TestParseChangeIPv6 parses IPv6 route, address and neighbour notifications as the
// kernel sends them when IPv6 is asked for, and leaves them out when it is not (the
// IPv4-only default), while FDB entries with an IPv6 remote are reported either way.
func TestParseChangeIPv6(t *testing.T) {
	ip6 := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	rtmsg := func(family, dstLen uint8) []byte {
		m := nl.NewRtMsg()
		m.Family, m.Dst_len, m.Table = family, dstLen, unix.RT_TABLE_MAIN
		return m.Serialize()
	}
	ndmsg := func(family uint8) []byte {
		m := netlink.Ndmsg{Family: family, Index: 6, State: netlink.NUD_PERMANENT}
		return m.Serialize()
	}
	addrmsg := func(family, plen uint8) []byte {
		m := nl.NewIfAddrmsg(int(family))
		m.Prefixlen, m.Index = plen, 6
		return m.Serialize()
	}
	route := msg(unix.RTM_DELROUTE, rtmsg(unix.AF_INET6, 64), nl.NewRtAttr(unix.RTA_DST, ip6("fd00:10:0:2::")),
		nl.NewRtAttr(unix.RTA_GATEWAY, ip6("2001:db8::2")), nl.NewRtAttr(unix.RTA_OIF, u32(7)))
	neigh := msg(unix.RTM_NEWNEIGH, ndmsg(unix.AF_INET6), nl.NewRtAttr(unix.NDA_DST, ip6("fd00:0:0:2::")), nl.NewRtAttr(unix.NDA_LLADDR, mac))
	addr := msg(unix.RTM_DELADDR, addrmsg(unix.AF_INET6, 128), nl.NewRtAttr(unix.IFA_ADDRESS, ip6("fd00:0:0:1::")))
	fdb := msg(unix.RTM_NEWNEIGH, ndmsg(unix.AF_BRIDGE), nl.NewRtAttr(unix.NDA_LLADDR, mac), nl.NewRtAttr(unix.NDA_DST, ip6("2001:db8::2")))
	both := []Family{IPv4, IPv6}
	for _, c := range []struct {
		name string
		m    syscall.NetlinkMessage
		fs   []Family
		ok   bool
		want Change
	}{
		{"route", route, []Family{IPv6}, true, Change{Kind: RouteChange, Deleted: true, LinkIndex: 7,
			Prefix: netip.MustParsePrefix("fd00:10:0:2::/64"), Gateway: netip.MustParseAddr("2001:db8::2"), Table: unix.RT_TABLE_MAIN}},
		{"route, both families", route, both, true, Change{Kind: RouteChange, Deleted: true, LinkIndex: 7,
			Prefix: netip.MustParsePrefix("fd00:10:0:2::/64"), Gateway: netip.MustParseAddr("2001:db8::2"), Table: unix.RT_TABLE_MAIN}},
		{"route, IPv4 only", route, nil, false, Change{}},
		{"default route", msg(unix.RTM_NEWROUTE, rtmsg(unix.AF_INET6, 0)), both, true,
			Change{Kind: RouteChange, Prefix: netip.MustParsePrefix("::/0"), Table: unix.RT_TABLE_MAIN}},
		{"prefix longer than 128", msg(unix.RTM_NEWROUTE, rtmsg(unix.AF_INET6, 129)), both, false, Change{}},
		{"IPv4 route, IPv6 only", msg(unix.RTM_NEWROUTE, rtmsg(unix.AF_INET, 24), nl.NewRtAttr(unix.RTA_DST, []byte{10, 244, 2, 0})),
			[]Family{IPv6}, false, Change{}},
		{"neighbour", neigh, []Family{IPv6}, true, Change{Kind: NeighChange, LinkIndex: 6,
			Prefix: netip.MustParsePrefix("fd00:0:0:2::/128"), MAC: mac}},
		{"neighbour, IPv4 only", neigh, []Family{IPv4}, false, Change{}},
		{"address", addr, both, true, Change{Kind: AddrChange, Deleted: true, LinkIndex: 6, Prefix: netip.MustParsePrefix("fd00:0:0:1::/128")}},
		{"address without one", msg(unix.RTM_NEWADDR, addrmsg(unix.AF_INET6, 64)), both, false, Change{}},
		{"address, IPv4 only", addr, nil, false, Change{}},
		{"fdb with an IPv6 remote", fdb, nil, true, Change{Kind: FDBChange, LinkIndex: 6, Prefix: netip.MustParsePrefix("2001:db8::2/128"), MAC: mac}},
		{"short route", msg(unix.RTM_NEWROUTE, rtmsg(unix.AF_INET6, 64)[:5]), both, false, Change{}},
		{"unknown family", msg(unix.RTM_NEWROUTE, rtmsg(unix.AF_INET, 24)), []Family{Family(99)}, false, Change{}},
	} {
		if got, ok := ParseChange(c.m, c.fs...); ok != c.ok || ok && got.String() != c.want.String() {
			t.Errorf("%s with %v: got %v, %v; want %v, %v", c.name, c.fs, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseChangeIPv6: whatever the bytes, a change parsed for IPv6 only is a link or FDB
// change or has an IPv6 prefix; nothing panics.
func FuzzParseChangeIPv6(f *testing.F) {
	f.Add(uint16(unix.RTM_NEWROUTE), []byte{unix.AF_INET6, 64, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0, 20, 0, 1, 0})
	f.Add(uint16(unix.RTM_NEWROUTE), []byte{unix.AF_INET6, 64, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0, 8, 0, 4, 0, 6, 0, 0, 0})
	f.Add(uint16(unix.RTM_NEWNEIGH), []byte{unix.AF_INET6, 0, 0, 0, 6, 0, 0, 0, 0x80, 0, 0, 1})
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		c, ok := ParseChange(syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: typ}, Data: data}, IPv6)
		if !ok {
			return
		}
		switch c.Kind {
		case LinkChange, FDBChange:
		case AddrChange, RouteChange:
			if !c.Prefix.Addr().Is6() {
				t.Fatalf("parsed %v as an IPv6 change", c)
			}
		case NeighChange:
			if c.Prefix.IsValid() && !c.Prefix.Addr().Is6() {
				t.Fatalf("parsed %v as an IPv6 change", c)
			}
		default:
			t.Fatalf("kind %v", c.Kind)
		}
		_ = c.String()
	})
}

func TestFamily(t *testing.T) {
	for _, c := range []struct {
		addr string
		want Family
	}{{"192.0.2.1", IPv4}, {"2001:db8::1", IPv6}, {"::ffff:192.0.2.1", IPv4}} {
		if got := FamilyOf(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("FamilyOf(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
	if IPv6.has(netip.MustParseAddr("::ffff:192.0.2.1")) || !IPv6.has(netip.MustParseAddr("fd00::1")) || IPv4.has(netip.Addr{}) {
		t.Error("Family.has")
	}
	if _, err := familySet([]Family{IPv4, 0}); err == nil {
		t.Error("familySet accepted family 0")
	}
	if s, _ := familySet(nil); !s.has(unix.AF_INET) || s.has(unix.AF_INET6) {
		t.Errorf("the default set is %v, want IPv4", s)
	}
}
