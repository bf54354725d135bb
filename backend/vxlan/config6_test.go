package vxlan

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/subnet"
)

// TestCheckPeerDataFamilies: the data of each family a lease names is checked, and only
// that: BackendV6Data when it has a PublicIPv6, BackendData when it has an IPv4
// PublicIP (an IPv6-only lease's is flanneld's "0.0.0.0").
func TestCheckPeerDataFamilies(t *testing.T) {
	good := json.RawMessage(`{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}`)
	bad := json.RawMessage(`{"VNI":1}`)
	v4, v6 := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2")
	for _, c := range []struct {
		name  string
		attrs subnet.LeaseAttrs
		want  string // substring of the error; "" = admitted
	}{
		{"dual stack", subnet.LeaseAttrs{PublicIP: v4, PublicIPv6: v6, BackendData: good, BackendV6Data: good}, ""},
		{"dual stack, bad v6 data", subnet.LeaseAttrs{PublicIP: v4, PublicIPv6: v6, BackendData: good, BackendV6Data: bad}, "BackendV6Data"},
		{"dual stack, no v6 data", subnet.LeaseAttrs{PublicIP: v4, PublicIPv6: v6, BackendData: good}, "no BackendV6Data"},
		{"dual stack, bad v4 data", subnet.LeaseAttrs{PublicIP: v4, PublicIPv6: v6, BackendData: bad, BackendV6Data: good}, "BackendData"},
		{"IPv6 only", subnet.LeaseAttrs{PublicIPv6: v6, BackendV6Data: good}, ""},
		{"IPv6 only as flanneld writes it", subnet.LeaseAttrs{PublicIP: netip.IPv4Unspecified(), PublicIPv6: v6, BackendV6Data: good}, ""},
		{"IPv6 only, bad data", subnet.LeaseAttrs{PublicIPv6: v6, BackendV6Data: json.RawMessage(`{"VtepMAC":"01:00:5e:00:00:01"}`)}, "BackendV6Data VtepMAC 01:00:5e:00:00:01 is not a unicast"},
		{"IPv4 only", subnet.LeaseAttrs{PublicIP: v4, BackendData: good}, ""},
		{"IPv4 only, bad", subnet.LeaseAttrs{PublicIP: v4, BackendData: bad}, "no VtepMAC"},
	} {
		c.attrs.BackendType = Name
		err := checkPeerData(c.attrs)
		if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: checkPeerData = %v, want ~%q", c.name, err, c.want)
		}
	}
}

func TestPeerFromLeaseIPv6(t *testing.T) {
	f := newFamily(true, deviceSpec{}, ipv6Network, true)
	if !f.direct || f.metric != 1024 {
		t.Errorf("IPv6 family: direct %v metric %d", f.direct, f.metric)
	}
	l := lease6("10.244.3.0/24", "fd00:0:0:3::/64", netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("2001:db8::3"))
	p, err := peerFromLease(f, l)
	if err != nil {
		t.Fatal(err)
	}
	if p.subnet != l.IPv6Subnet || p.publicIP != l.Attrs.PublicIPv6 || p.vtepAddr() != netip.MustParseAddr("fd00:0:0:3::") ||
		p.mac.String() != vtepMAC(l.Attrs.PublicIPv6, 1).String() {
		t.Errorf("peer = %+v", p)
	}
	r := tunnelRoute(p, 7, f.metric)
	if r.Priority != 1024 || r.Flags&unix.RTNH_F_ONLINK == 0 || r.Gw.String() != "fd00:0:0:3::" || r.Dst.String() != "fd00:0:0:3::/64" {
		t.Errorf("route = %+v", r)
	}
	l.Attrs.PublicIPv6 = netip.Addr{}
	if _, err := peerFromLease(f, l); err == nil || !strings.Contains(err.Error(), "IPv6") {
		t.Errorf("no PublicIPv6: %v", err)
	}
}

// TestNewChecksIPv6Underlay: an IPv6 network needs an IPv6 underlay address, and says so.
func TestNewChecksIPv6Underlay(t *testing.T) {
	ifc := &net.Interface{Index: 1, Name: "eth0", MTU: 1500}
	for _, c := range []struct {
		name string
		ext  backend.ExternalInterface
		want string
	}{
		{"no IPv6 address", backend.ExternalInterface{Iface: ifc, IfaceAddr: netip.MustParseAddr("192.0.2.1"), PublicIP: netip.MustParseAddr("192.0.2.1")}, "needs an IPv6 interface address"},
		{"IPv4 as IPv6", backend.ExternalInterface{Iface: ifc, IfaceAddr: netip.MustParseAddr("192.0.2.1"), PublicIP: netip.MustParseAddr("192.0.2.1"),
			IfaceAddrV6: netip.MustParseAddr("192.0.2.1"), PublicIPv6: netip.MustParseAddr("192.0.2.1")}, "needs an IPv6 interface address"},
		{"small MTU", backend.ExternalInterface{Iface: &net.Interface{Index: 1, Name: "eth0", MTU: 1300}, IfaceAddr: netip.MustParseAddr("192.0.2.1"), PublicIP: netip.MustParseAddr("192.0.2.1"),
			IfaceAddrV6: netip.MustParseAddr("2001:db8::1"), PublicIPv6: netip.MustParseAddr("2001:db8::1")}, "IPv6 needs at least 1280"},
	} {
		_, err := New(backend.Env{Ext: c.ext, Log: testr.New(t), Network: &subnet.Config{
			EnableIPv4: true, Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24,
			EnableIPv6: true, IPv6Network: ipv6Network, IPv6SubnetLen: 64, BackendType: Name}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New = %v, want ~%q", c.name, err, c.want)
		}
	}
}

func TestRelevantIPv6(t *testing.T) {
	f4 := newFamily(false, deviceSpec{name: "flannel.1"}, netip.MustParsePrefix("10.244.0.0/16"), false)
	f6 := newFamily(true, deviceSpec{name: "flannel-v6.1"}, ipv6Network, false)
	f4.devIdx.Store(5)
	f6.devIdx.Store(6)
	n := &network{extIdx: 2, fams: []*family{f4, f6}}
	p := netip.MustParsePrefix
	for _, c := range []struct {
		name string
		c    kernel.Change
		want bool
	}{
		{"v6 device", kernel.Change{Kind: kernel.LinkChange, LinkIndex: 6}, true},
		{"v6 device re-created", kernel.Change{Kind: kernel.LinkChange, LinkIndex: 9, LinkName: "flannel-v6.1"}, true},
		{"v6 peer route anywhere", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 2, Prefix: p("fd00:0:0:2::/64")}, true},
		{"v6 route outside", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 2, Prefix: p("2001:db8::/64")}, false},
		{"v6 neighbour on the device", kernel.Change{Kind: kernel.NeighChange, LinkIndex: 6}, true},
		{"NDP on eth0", kernel.Change{Kind: kernel.NeighChange, LinkIndex: 2}, false},
		{"fdb on the v6 device", kernel.Change{Kind: kernel.FDBChange, LinkIndex: 6}, true},
		{"v4 device still", kernel.Change{Kind: kernel.AddrChange, LinkIndex: 5}, true},
	} {
		if got := n.relevant(c.c); got != c.want {
			t.Errorf("%s: relevant = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestStaleTunnelRouteIPv6Metric(t *testing.T) {
	mac := vtepMAC(netip.MustParseAddr("2001:db8::2"), 1)
	p := &peer{subnet: netip.MustParsePrefix("fd00:0:0:2::/64"), publicIP: netip.MustParseAddr("2001:db8::2"), mac: mac}
	peers := map[netip.Prefix]*peer{p.subnet: p}
	r := kernel.ListedRoute{Dst: p.subnet, Gw: p.vtepAddr(), Onlink: true, Priority: 1024, Type: unix.RTN_UNICAST, Protocol: unix.RTPROT_BOOT}
	if staleTunnelRoute(r, peers, routeMetricV6) {
		t.Error("the peer's own IPv6 route is stale")
	}
	r.Priority = 0
	if !staleTunnelRoute(r, peers, routeMetricV6) {
		t.Error("an IPv6 route with another metric is not stale")
	}
	k := kernel.ListedRoute{Dst: netip.MustParsePrefix("fe80::/64"), Priority: 256, Type: unix.RTN_UNICAST, Protocol: unix.RTPROT_KERNEL}
	if staleTunnelRoute(k, peers, routeMetricV6) {
		t.Error("the kernel's link-local route is stale")
	}
}
