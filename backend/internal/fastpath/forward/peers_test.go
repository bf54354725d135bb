package forward

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPeerTableLookup(t *testing.T) {
	tab := testPeers(t)
	tests := []struct {
		addr string
		want string // endpoint, "" for none
	}{
		{"10.244.2.0", "192.0.2.2:8285"},
		{"10.244.2.255", "192.0.2.2:8285"},
		{"10.244.3.17", "192.0.2.3:8285"},
		{"10.244.4.255", "192.0.2.3:8285"},
		{"10.244.1.9", ""},
		{"10.244.5.0", ""},
		{"0.0.0.0", ""},
		{"255.255.255.255", ""},
		{"10.244.1.255", ""},
	}
	for _, tt := range tests {
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
	if tab.Len() != 3 || len(tab.Peers()) != 3 {
		t.Fatalf("Len = %d", tab.Len())
	}
	for _, ep := range []string{"192.0.2.2:8285", "192.0.2.3:8285"} {
		if !tab.isEndpoint(ap(ep)) {
			t.Errorf("%s is not an endpoint", ep)
		}
	}
	for _, ep := range []string{"192.0.2.2:8286", "192.0.2.4:8285", "[::1]:8285", "[::ffff:192.0.2.9]:8285"} {
		if tab.isEndpoint(ap(ep)) {
			t.Errorf("%s is an endpoint", ep)
		}
	}
	if !tab.isEndpoint(ap("[::ffff:192.0.2.2]:8285")) {
		t.Error("an IPv4-mapped sender is not matched to its IPv4 endpoint")
	}
}

func TestPeerTableNilAndEmpty(t *testing.T) {
	var nilTab *PeerTable
	empty, err := NewPeerTable(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tab := range []*PeerTable{nilTab, empty} {
		if _, ok := tab.Lookup(netip.MustParseAddr("10.0.0.1")); ok {
			t.Error("lookup in an empty table found a peer")
		}
		if tab.isEndpoint(ap("192.0.2.2:8285")) || tab.Len() != 0 || len(tab.Peers()) != 0 {
			t.Error("empty table is not empty")
		}
	}
}

func TestPeerTableEdges(t *testing.T) {
	tab, err := NewPeerTable([]Peer{
		{Subnet: netip.MustParsePrefix("0.0.0.0/24"), Endpoint: ap("192.0.2.1:1")},
		{Subnet: netip.MustParsePrefix("255.255.255.0/24"), Endpoint: ap("192.0.2.2:1")},
		{Subnet: netip.MustParsePrefix("10.0.0.7/32"), Endpoint: ap("192.0.2.3:1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"0.0.0.0": "192.0.2.1:1", "0.0.0.255": "192.0.2.1:1", "0.0.1.0": "",
		"255.255.255.255": "192.0.2.2:1", "255.255.254.255": "",
		"10.0.0.7": "192.0.2.3:1", "10.0.0.6": "", "10.0.0.8": "",
	} {
		p, ok := tab.Lookup(netip.MustParseAddr(addr))
		if got := map[bool]string{true: p.Endpoint.String(), false: ""}[ok]; got != want {
			t.Errorf("Lookup(%s) = %q, want %q", addr, got, want)
		}
	}
	whole, err := NewPeerTable([]Peer{{Subnet: netip.MustParsePrefix("0.0.0.0/0"), Endpoint: ap("192.0.2.1:1")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := whole.Lookup(netip.MustParseAddr("255.255.255.255")); !ok {
		t.Error("/0 does not hold 255.255.255.255")
	}
}

func TestNewPeerTableRejects(t *testing.T) {
	tests := []struct {
		name  string
		peers []Peer
		want  string
	}{
		{"overlap", []Peer{
			{Subnet: netip.MustParsePrefix("10.244.0.0/16"), Endpoint: ap("192.0.2.2:1")},
			{Subnet: netip.MustParsePrefix("10.244.7.0/24"), Endpoint: ap("192.0.2.3:1")},
		}, "overlap"},
		{"duplicate", []Peer{
			{Subnet: netip.MustParsePrefix("10.244.7.0/24"), Endpoint: ap("192.0.2.2:1")},
			{Subnet: netip.MustParsePrefix("10.244.7.0/24"), Endpoint: ap("192.0.2.3:1")},
		}, "overlap"},
		{"host bits", []Peer{{Subnet: netip.MustParsePrefix("10.244.7.1/24"), Endpoint: ap("192.0.2.2:1")}}, "network address"},
		{"ipv6 subnet with host bits", []Peer{{Subnet: netip.MustParsePrefix("fd00::1/64"), Endpoint: ap("192.0.2.2:1")}}, "network address"},
		{"ipv6 overlap", []Peer{
			{Subnet: netip.MustParsePrefix("fd00::/64"), Endpoint: ap("192.0.2.2:1")},
			{Subnet: netip.MustParsePrefix("fd00::/64"), Endpoint: ap("192.0.2.3:1")},
		}, "overlap"},
		{"ipv4-mapped endpoint", []Peer{{Subnet: netip.MustParsePrefix("10.244.7.0/24"), Endpoint: ap("[::ffff:192.0.2.2]:1")}}, "endpoint"},
		{"no endpoint", []Peer{{Subnet: netip.MustParsePrefix("10.244.7.0/24")}}, "endpoint"},
		{"zero subnet", []Peer{{Endpoint: ap("192.0.2.2:1")}}, "IPv4"},
	}
	for _, tt := range tests {
		if _, err := NewPeerTable(tt.peers); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
}
