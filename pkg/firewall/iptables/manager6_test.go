package iptables

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"

	"github.com/weftnet/weft/pkg/firewall"
)

// TestIPv6WithoutIP6Tables: without ip6tables an IPv6 network is reported (ErrNoIP6Tables)
// while the IPv4 rules are still kept, and an IPv4-only network needs no ip6tables at all.
func TestIPv6WithoutIP6Tables(t *testing.T) {
	f := newFakeIPT()
	m := newManager(f, newFakeSets(), true, allOn, testr.New(t))
	m.SetNetwork(dualStack)
	m.SetTunnelPort("udp", 8472)
	m.SetPeers([]netip.Addr{peerA, peer6A})
	if err := m.Sync(); !errors.Is(err, ErrNoIP6Tables) {
		t.Fatalf("Sync = %v, want ErrNoIP6Tables", err)
	}
	if len(f.rules("nat", NATChain)) != 6 || len(f.rules("filter", InputChain)) != 2 {
		t.Fatalf("IPv4 rules not kept: %q %q", f.rules("nat", NATChain), f.rules("filter", InputChain))
	}
	m.SetNetwork(ipv4Only)
	if err := m.Sync(); err != nil {
		t.Fatalf("IPv4-only network without ip6tables: %v", err)
	}
	if err := m.Cleanup(); err != nil {
		t.Fatalf("Cleanup without ip6tables: %v", err)
	}
}

// TestIPv6FamilySplit: each family's tool gets its own family's rules and each set its
// own family's peers; IPv6 peers never reach the IPv4 set.
func TestIPv6FamilySplit(t *testing.T) {
	f4, f6, sets := newFakeIPT(), newFakeIPT(), newFakeSets()
	m := newManager(f4, sets, true, allOn, testr.New(t))
	m.setIPv6(f6, true)
	m.SetNetwork(dualStack)
	m.SetTunnelPort("gre", 0)
	m.SetPeers([]netip.Addr{peer6B, peerA, peer6A, netip.MustParseAddr("::ffff:192.0.2.3")})
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, r := range append(f4.rules("nat", NATChain), f4.rules("filter", ForwardChain)...) {
		if strings.Contains(r, "fd00:") {
			t.Errorf("IPv4 rule with an IPv6 prefix: %s", r)
		}
	}
	nat6 := f6.rules("nat", NATChain)
	if len(nat6) != 6 || !strings.Contains(nat6[4], "-s fd00:10:244::/56 ! -d ff00::/8") {
		t.Errorf("ip6tables nat: %q", nat6)
	}
	if in6 := f6.rules("filter", InputChain); len(in6) != 2 || !strings.Contains(in6[0], "--match-set "+PeerSet6) || !strings.Contains(in6[0], "-p gre") {
		t.Errorf("ip6tables input: %q", in6)
	}
	if got, _ := sets.members(PeerSet6); !slices.Equal(got, []netip.Addr{peer6A, peer6B}) {
		t.Errorf("%s = %v", PeerSet6, got)
	}
	if got, _ := sets.members(PeerSet); !slices.Equal(got, []netip.Addr{peerA, peerB}) {
		t.Errorf("%s = %v", PeerSet, got)
	}
	if sets.families[PeerSet6] != firewall.IPv6 || sets.families[PeerSet] != firewall.IPv4 {
		t.Errorf("set families %v", sets.families)
	}

	// Without ip_set, IPv6 peers are admitted by blocks of addresses too.
	noSets := newFakeSets()
	noSets.noKernel = true
	m2 := newManager(newFakeIPT(), noSets, true, allOn, testr.New(t))
	f62 := newFakeIPT()
	m2.setIPv6(f62, true)
	m2.SetNetwork(ipv6Only)
	m2.SetTunnelPort("udp", 8472)
	var peers []netip.Addr
	for _, s := range []string{"2001:db8::4", "2001:db8::5", "2001:db8::6", "2001:db8::7", "2001:db8::9"} {
		peers = append(peers, netip.MustParseAddr(s))
	}
	m2.SetPeers(peers)
	if err := m2.Sync(); err != nil {
		t.Fatal(err)
	}
	in6 := f62.rules("filter", InputChain)
	if len(in6) != 3 || !strings.HasPrefix(in6[0], "-s 2001:db8::4/126 ") || !strings.HasPrefix(in6[1], "-s 2001:db8::9/128 ") {
		t.Errorf("ip6tables input without ip_set: %q", in6)
	}
}

func TestPeerBlocksIPv6(t *testing.T) {
	a := netip.MustParseAddr
	var addrs []netip.Addr
	for i := range 8 {
		addrs = append(addrs, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(8 + i)}))
	}
	addrs = append(addrs, a("2001:db8::20"), a("2001:db8::21"))
	got := peerBlocks(addrs)
	want := []netip.Prefix{netip.MustParsePrefix("2001:db8::8/125"), netip.MustParsePrefix("2001:db8::20/128"), netip.MustParsePrefix("2001:db8::21/128")}
	if !slices.Equal(got, want) {
		t.Fatalf("peerBlocks = %v, want %v", got, want)
	}
}
