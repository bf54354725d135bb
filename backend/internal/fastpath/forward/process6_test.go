package forward

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// The IPv6 tests run as node 10.244.1.0/24 + fd00:0:0:1::/64 with testPeers6: the IPv4
// peers of testPeers, 192.0.2.2 also holding fd00:0:0:2::/64, 192.0.2.3 fd00:0:0:3::/64
// and fd00:0:1::/48 (a shorter prefix).

func testPeers6(t testing.TB) *PeerTable {
	t.Helper()
	tab, err := NewPeerTable([]Peer{
		{Subnet: netip.MustParsePrefix("10.244.2.0/24"), Endpoint: ap("192.0.2.2:0")},
		{Subnet: netip.MustParsePrefix("fd00:0:0:3::/64"), Endpoint: ap("192.0.2.3:0")},
		{Subnet: netip.MustParsePrefix("fd00:0:0:2::/64"), Endpoint: ap("192.0.2.2:0")},
		{Subnet: netip.MustParsePrefix("fd00:0:1::/48"), Endpoint: ap("192.0.2.3:0")},
		{Subnet: netip.MustParsePrefix("10.244.3.0/24"), Endpoint: ap("192.0.2.3:0")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func testForwarder6(t testing.TB) *Forwarder {
	t.Helper()
	f, err := New(Config{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Subnet6: netip.MustParsePrefix("fd00:0:0:1::/64"), MTU: 1472}, nullIO{}, nullIO{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// udp6 builds an IPv6/UDP packet (UDP checksum left 0: the fast path does not read it).
func udp6(src, dst string, hops uint8, data string) []byte {
	b := make([]byte, 48+len(data))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(data)))
	b[6], b[7] = 17, hops
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	binary.BigEndian.PutUint16(b[40:], 5000)
	binary.BigEndian.PutUint16(b[42:], 7000)
	binary.BigEndian.PutUint16(b[44:], uint16(8+len(data)))
	copy(b[48:], data)
	return b
}

func TestPeerTableLookup6(t *testing.T) {
	tab := testPeers6(t)
	for _, tt := range []struct{ addr, want string }{
		{"fd00:0:0:2::", "192.0.2.2:0"},
		{"fd00:0:0:2:ffff:ffff:ffff:ffff", "192.0.2.2:0"},
		{"fd00:0:0:3::1", "192.0.2.3:0"},
		{"fd00:0:1:ffff::5", "192.0.2.3:0"},
		{"fd00:0:1::", "192.0.2.3:0"},
		{"fd00:0:0:1::1", ""},
		{"fd00:0:0:4::", ""},
		{"fd00:0:2::", ""},
		{"::", ""},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""},
		{"10.244.2.7", "192.0.2.2:0"},
		{"::ffff:10.244.2.7", ""},
	} {
		p, ok := tab.Lookup(netip.MustParseAddr(tt.addr))
		got := ""
		if ok {
			got = p.Endpoint.String()
			if !p.Subnet.Contains(netip.MustParseAddr(tt.addr)) {
				t.Errorf("Lookup(%s) returned subnet %s, which does not hold it", tt.addr, p.Subnet)
			}
		}
		if got != tt.want {
			t.Errorf("Lookup(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	if tab.Len() != 5 || len(tab.Peers()) != 5 {
		t.Fatalf("Len = %d, Peers = %v", tab.Len(), tab.Peers())
	}
	if !tab.isEndpoint(ap("192.0.2.3:0")) {
		t.Fatal("192.0.2.3, a peer with IPv6 subnets, is not an endpoint")
	}
}

func TestPeerTable6Errors(t *testing.T) {
	for name, peers := range map[string][]Peer{
		"overlap":              {{Subnet: netip.MustParsePrefix("fd00::/48"), Endpoint: ap("192.0.2.2:0")}, {Subnet: netip.MustParsePrefix("fd00:0:0:5::/64"), Endpoint: ap("192.0.2.3:0")}},
		"not network":          {{Subnet: netip.MustParsePrefix("fd00::1/64"), Endpoint: ap("192.0.2.2:0")}},
		"IPv4-mapped endpoint": {{Subnet: netip.MustParsePrefix("fd00::/64"), Endpoint: ap("[::ffff:192.0.2.2]:0")}},
		"no endpoint":          {{Subnet: netip.MustParsePrefix("fd00::/64")}},
		"IPv4-mapped net":      {{Subnet: netip.MustParsePrefix("::ffff:10.244.2.0/120"), Endpoint: ap("192.0.2.2:0")}},
	} {
		if _, err := NewPeerTable(peers); err == nil {
			t.Errorf("%s: NewPeerTable(%v) succeeded", name, peers)
		}
	}
}

func TestFromDevice6(t *testing.T) {
	f, tab := testForwarder6(t), testPeers6(t)
	for _, tt := range []struct {
		name     string
		b        []byte
		trailing int
		want     fastpath.DropReason
		wantTo   string
	}{
		{"to peer", udp6("fd00:0:0:1::2", "fd00:0:0:2::3", 64, "hi"), 0, fastpath.DropNone, "192.0.2.2:0"},
		{"to a /48 peer", udp6("fd00:0:0:1::2", "fd00:0:1:7::3", 64, "hi"), 0, fastpath.DropNone, "192.0.2.3:0"},
		{"trailing bytes trimmed", udp6("fd00:0:0:1::2", "fd00:0:0:3::3", 64, "hi"), 7, fastpath.DropNone, "192.0.2.3:0"},
		{"hop limit 2 still forwarded", udp6("fd00:0:0:1::2", "fd00:0:0:2::3", 2, "hi"), 0, fastpath.DropNone, "192.0.2.2:0"},
		{"hop limit 1 expires", udp6("fd00:0:0:1::2", "fd00:0:0:2::3", 1, "hi"), 0, fastpath.DropTTLExceeded, ""},
		{"no peer", udp6("fd00:0:0:1::2", "fd00:0:0:9::3", 64, "hi"), 0, fastpath.DropNoRoute, ""},
		{"multicast", udp6("fe80::1", "ff02::2", 255, "rs"), 0, fastpath.DropNoRoute, ""},
		{"own subnet", udp6("fd00:0:0:1::2", "fd00:0:0:1::3", 64, "hi"), 0, fastpath.DropOwnSubnet, ""},
		{"short header", udp6("fd00:0:0:1::2", "fd00:0:0:2::3", 64, "hi")[:39], 0, fastpath.DropMalformed, ""},
		{"payload beyond packet", udp6("fd00:0:0:1::2", "fd00:0:0:2::3", 64, "hi")[:45], 0, fastpath.DropMalformed, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := append(append([]byte(nil), tt.b...), make([]byte, tt.trailing)...)
			p := packetOf(b, netip.AddrPort{})
			if r, n := f.fromDevice(tab, &p, make([]byte, 600)); r != tt.want || n != 0 {
				t.Fatalf("fromDevice = %v, %d, want %v, 0", r, n, tt.want)
			}
			if tt.want != fastpath.DropNone {
				return
			}
			got := p.Bytes()
			if p.Addr.String() != tt.wantTo || len(got) != len(tt.b) || got[7] != tt.b[7]-1 || string(got[8:]) != string(tt.b[8:]) {
				t.Fatalf("forwarded to %s: % x\nwant the packet with the hop limit lowered to %s", p.Addr, got, tt.wantTo)
			}
		})
	}
	// Without an own IPv6 subnet, IPv6 stays what it was: not IPv4.
	p := packetOf(udp6("fd00:0:0:1::2", "fd00:0:0:2::3", 64, "hi"), netip.AddrPort{})
	if r, _ := testForwarder(t).fromDevice(tab, &p, make([]byte, 600)); r != fastpath.DropNotIPv4 {
		t.Fatalf("without Subnet6: %v, want not-ipv4", r)
	}
}

func TestFromConn6(t *testing.T) {
	f, tab := testForwarder6(t), testPeers6(t)
	for _, tt := range []struct {
		name string
		b    []byte
		from string
		want fastpath.DropReason
	}{
		{"from peer", udp6("fd00:0:0:2::3", "fd00:0:0:1::2", 64, "hi"), "192.0.2.2:0", fastpath.DropNone},
		{"from /48 peer", udp6("fd00:0:1:9::3", "fd00:0:0:1::2", 64, "hi"), "192.0.2.3:0", fastpath.DropNone},
		{"not a peer", udp6("fd00:0:0:2::3", "fd00:0:0:1::2", 64, "hi"), "192.0.2.9:0", fastpath.DropNotPeer},
		{"another peer's source", udp6("fd00:0:0:3::3", "fd00:0:0:1::2", 64, "hi"), "192.0.2.2:0", fastpath.DropSpoofedSource},
		{"source in no subnet", udp6("2001:db8::1", "fd00:0:0:1::2", 64, "hi"), "192.0.2.2:0", fastpath.DropSpoofedSource},
		{"not for us", udp6("fd00:0:0:2::3", "fd00:0:0:3::2", 64, "hi"), "192.0.2.2:0", fastpath.DropWrongDestination},
		{"hop limit 1", udp6("fd00:0:0:2::3", "fd00:0:0:1::2", 1, "hi"), "192.0.2.2:0", fastpath.DropTTLExceeded},
		{"truncated", udp6("fd00:0:0:2::3", "fd00:0:0:1::2", 64, "hi")[:30], "192.0.2.2:0", fastpath.DropMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := packetOf(tt.b, ap(tt.from))
			if r, n := f.fromConn(tab, &p, make([]byte, 600)); r != tt.want || n != 0 {
				t.Fatalf("fromConn = %v, %d, want %v, 0", r, n, tt.want)
			}
			if tt.want == fastpath.DropNone && p.Bytes()[7] != tt.b[7]-1 {
				t.Fatalf("hop limit %d, want %d", p.Bytes()[7], tt.b[7]-1)
			}
		})
	}
}

func TestNewSubnet6(t *testing.T) {
	for _, bad := range []string{"fd00::1/64", "10.244.1.0/24", "::ffff:10.0.0.0/104"} {
		if _, err := New(Config{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Subnet6: netip.MustParsePrefix(bad), MTU: 1472}, nullIO{}, nullIO{}); err == nil {
			t.Errorf("Subnet6 %s accepted", bad)
		}
	}
}

func BenchmarkLookup6(b *testing.B) {
	var peers []Peer
	for i := range 1000 {
		a := netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, byte(i >> 8), byte(i), 0})
		peers = append(peers, Peer{Subnet: netip.PrefixFrom(a, 64), Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 0)})
	}
	tab, err := NewPeerTable(peers)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, ok := tab.v6.lookup(0xfd00_0000_0000_0000|uint64(i%1000)<<8, 5); !ok {
			b.Fatal("miss")
		}
	}
}
