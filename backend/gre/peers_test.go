package gre

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/subnet"
)

func lease(sn, pub, bt string) subnet.Lease {
	l := subnet.Lease{Subnet: netip.MustParsePrefix(sn), Attrs: subnet.LeaseAttrs{BackendType: bt}}
	if pub != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(pub)
	}
	return l
}

func add(sn, pub, bt string) subnet.Event {
	return subnet.Event{Type: subnet.Added, Lease: lease(sn, pub, bt)}
}

func del(sn, pub string) subnet.Event {
	return subnet.Event{Type: subnet.Removed, Lease: lease(sn, pub, Name)}
}

func TestPeerSetApply(t *testing.T) {
	type step struct {
		ev   subnet.Event
		kind changeKind
		old  string // expected change.old ("" = none)
	}
	for _, tc := range []struct {
		name  string
		steps []step
		peers map[string]string // expected at the end
	}{
		{"add, repeat, move, remove", []step{
			{ev: add("10.244.2.0/24", "192.0.2.2", "gre"), kind: added},
			{ev: add("10.244.2.0/24", "192.0.2.2", "gre"), kind: unchanged},
			{ev: add("10.244.2.0/24", "192.0.2.9", "gre"), kind: updated, old: "192.0.2.2"},
			{ev: del("10.244.2.0/24", "192.0.2.9"), kind: removed, old: "192.0.2.9"},
			{ev: del("10.244.2.0/24", "192.0.2.9"), kind: unchanged},
		}, map[string]string{}},
		{"two peers, one leaves", []step{
			{ev: add("10.244.2.0/24", "192.0.2.2", "gre"), kind: added},
			{ev: add("10.244.3.0/24", "192.0.2.3", "gre"), kind: added},
			{ev: del("10.244.2.0/24", "192.0.2.2"), kind: removed, old: "192.0.2.2"},
		}, map[string]string{"10.244.3.0/24": "192.0.2.3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newPeerSet()
			for i, st := range tc.steps {
				c := s.apply(st.ev)
				old := ""
				if c.old.IsValid() {
					old = c.old.String()
				}
				if c.kind != st.kind || old != st.old {
					t.Fatalf("step %d (%v %s %v): got %s old %q; want %s old %q",
						i, st.ev.Type, st.ev.Lease.Subnet, st.ev.Lease.Attrs, c.kind, old, st.kind, st.old)
				}
			}
			if len(s.peers) != len(tc.peers) {
				t.Fatalf("peers %v, want %v", s.peers, tc.peers)
			}
			for sn, pub := range tc.peers {
				if s.peers[netip.MustParsePrefix(sn)] != netip.MustParseAddr(pub) {
					t.Fatalf("peers %v, want %v", s.peers, tc.peers)
				}
			}
		})
	}
}

func TestPeerSetInUse(t *testing.T) {
	s := newPeerSet()
	s.apply(add("10.244.2.0/24", "192.0.2.2", "gre"))
	s.apply(add("10.244.3.0/24", "192.0.2.2", "gre")) // a stale second lease of the same node
	a := netip.MustParseAddr("192.0.2.2")
	if !s.inUse(a, netip.Prefix{}) || !s.inUse(a, netip.MustParsePrefix("10.244.2.0/24")) {
		t.Fatal("address used by two peers")
	}
	s.apply(del("10.244.3.0/24", "192.0.2.2"))
	if s.inUse(a, netip.MustParsePrefix("10.244.2.0/24")) || !s.inUse(a, netip.Prefix{}) {
		t.Fatal("address used by one peer")
	}
}

func TestIncompatible(t *testing.T) {
	spec := deviceSpec{name: DeviceName, local: netip.MustParseAddr("192.0.2.1"), mtu: 1476}
	good := func() *netlink.Gretun { return spec.link() }
	for _, tc := range []struct {
		name string
		link netlink.Link
		want string // substring; "" = compatible
	}{
		{"as created", good(), ""},
		{"other MTU is fixed in place", func() netlink.Link { l := good(); l.MTU = 1400; return l }(), ""},
		{"vxlan", &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: DeviceName}}, `not gre`},
		{"local", func() netlink.Link { l := good(); l.Local = net.IPv4(192, 0, 2, 7); return l }(), "local 192.0.2.7"},
		{"remote", func() netlink.Link { l := good(); l.Remote = net.IPv4(192, 0, 2, 8); return l }(), "remote 192.0.2.8"},
		{"unspecified remote is fine", func() netlink.Link { l := good(); l.Remote = net.IPv4zero; return l }(), ""},
		{"key", func() netlink.Link { l := good(); l.IKey, l.OKey = 5, 5; return l }(), "key 5/5"},
		{"flags", func() netlink.Link { l := good(); l.IFlags = 0x8000; return l }(), "flags"},
		{"ttl inherit", func() netlink.Link { l := good(); l.Ttl = 0; return l }(), "ttl 0"},
		{"bound to a device", func() netlink.Link { l := good(); l.Link = 2; return l }(), "dev 2"},
		{"fou encap", func() netlink.Link { l := good(); l.EncapType = 1; return l }(), "encap"},
		{"external", func() netlink.Link { l := good(); l.FlowBased = true; return l }(), "external"},
	} {
		got := incompatible(spec, tc.link)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: incompatible = %q, want ~%q", tc.name, got, tc.want)
		}
	}
}
