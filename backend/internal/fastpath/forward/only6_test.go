package forward

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

// An IPv6-only node over an IPv6 underlay (userspace gre in an IPv6-only network): no
// own IPv4 subnet, peers' endpoints are IPv6 addresses.
func testForwarderOnly6(t *testing.T) *Forwarder {
	t.Helper()
	f, err := New(Config{Subnet6: netip.MustParsePrefix("fd00:0:0:1::/64"), MTU: 1456}, nullIO{}, nullIO{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func testPeersOnly6(t *testing.T) *PeerTable {
	t.Helper()
	tab, err := NewPeerTable([]Peer{
		{Subnet: netip.MustParsePrefix("fd00:0:0:2::/64"), Endpoint: ap("[2001:db8::2]:0")},
		{Subnet: netip.MustParsePrefix("fd00:0:0:3::/64"), Endpoint: ap("[2001:db8::3]:0")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestNewIPv6Only(t *testing.T) {
	if _, err := New(Config{MTU: 1456}, nullIO{}, nullIO{}); err == nil {
		t.Fatal("New without any subnet succeeded")
	}
	if _, err := New(Config{Subnet: netip.MustParsePrefix("fd00:0:0:1::/64"), MTU: 1456}, nullIO{}, nullIO{}); err == nil {
		t.Fatal("New with an IPv6 Subnet succeeded")
	}
}

func TestIPv6EndpointsIPv6Only(t *testing.T) {
	f, tab := testForwarderOnly6(t), testPeersOnly6(t)
	if !tab.isEndpoint(ap("[2001:db8::3]:0")) || tab.isEndpoint(ap("[2001:db8::9]:0")) || tab.isEndpoint(ap("192.0.2.3:0")) {
		t.Fatal("isEndpoint does not match exactly the peers' IPv6 endpoints")
	}
	out := packetOf(udp6("fd00:0:0:1::2", "fd00:0:0:3::7", 64, "hi"), netip.AddrPort{})
	if r, _ := f.fromDevice(tab, &out, make([]byte, 600)); r != fastpath.DropNone || out.Addr != ap("[2001:db8::3]:0") {
		t.Fatalf("fromDevice = %v to %s, want sent to [2001:db8::3]:0", r, out.Addr)
	}
	for _, tt := range []struct {
		name string
		b    []byte
		from string
		want fastpath.DropReason
	}{
		{"from peer", udp6("fd00:0:0:2::3", "fd00:0:0:1::2", 64, "hi"), "[2001:db8::2]:0", fastpath.DropNone},
		{"not a peer", udp6("fd00:0:0:2::3", "fd00:0:0:1::2", 64, "hi"), "[2001:db8::9]:0", fastpath.DropNotPeer},
		{"other peer's source", udp6("fd00:0:0:3::3", "fd00:0:0:1::2", 64, "hi"), "[2001:db8::2]:0", fastpath.DropSpoofedSource},
		{"IPv4 inner packet", packettest.UDP("10.244.2.3", "10.244.1.2", 64, "hi").Build(), "[2001:db8::2]:0", fastpath.DropSpoofedSource},
	} {
		p := packetOf(tt.b, ap(tt.from))
		if r, n := f.fromConn(tab, &p, make([]byte, 600)); r != tt.want || n != 0 {
			t.Errorf("%s: fromConn = %v, %d, want %v, 0", tt.name, r, n, tt.want)
		}
	}
	// IPv4 from the device has nowhere to go and no ICMP source.
	p := packetOf(packettest.UDP("10.244.1.2", "10.244.2.3", 64, "hi").Build(), netip.AddrPort{})
	if r, n := f.fromDevice(tab, &p, make([]byte, 600)); r != fastpath.DropNoRoute || n != 0 {
		t.Fatalf("IPv4 from the device: %v, %d ICMP bytes, want no-route and no ICMP", r, n)
	}
}
