package nftables

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/pkg/firewall"
)

var (
	testNetwork6 = netip.MustParsePrefix("fd00:10:244::/56")
	testSubnet6  = netip.MustParsePrefix("fd00:10:244:3::/64")
	peer6A       = netip.MustParseAddr("2001:db8::2")
	peer6B       = netip.MustParseAddr("2001:db8::3")
	dualStack    = firewall.Overlay{Network: testNetwork, Subnet: testSubnet, IPv6Network: testNetwork6, IPv6Subnet: testSubnet6}
	ipv6Only     = firewall.Overlay{IPv6Network: testNetwork6, IPv6Subnet: testSubnet6}
)

// wantLines6 are lines `nft list table ip6 weft` shows for allOn with udp 8472 and the
// peers peer6A and peer6B: flanneld's IPv6 rules.
var wantLines6 = []string{
	"type nat hook postrouting priority srcnat; policy accept;",
	`meta mark & 0x00004000 == 0x00004000 counter packets 0 bytes 0 return comment "weft: kube-proxy marked, no masq"`,
	`ip6 saddr fd00:10:244:3::/64 ip6 daddr fd00:10:244::/56 counter packets 0 bytes 0 return comment "weft: own subnet to network, no masq"`,
	`ip6 saddr fd00:10:244::/56 ip6 daddr fd00:10:244:3::/64 counter packets 0 bytes 0 return comment "weft: network to own subnet, no masq"`,
	`ip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244:3::/64 counter packets 0 bytes 0 return comment "weft: outside to own subnet, no masq"`,
	`ip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8 counter packets 0 bytes 0 masquerade fully-random comment "weft: masq network to outside"`,
	`ip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244::/56 counter packets 0 bytes 0 masquerade fully-random comment "weft: masq outside to network"`,
	"type filter hook forward priority filter; policy accept;",
	`ip6 saddr fd00:10:244::/56 counter packets 0 bytes 0 accept comment "weft: forward from network"`,
	`ip6 daddr fd00:10:244::/56 counter packets 0 bytes 0 accept comment "weft: forward to network"`,
	"type filter hook input priority filter; policy accept;",
	`udp dport 8472 ip6 saddr @peers counter packets 0 bytes 0 accept comment "weft: tunnel from peer"`,
	`udp dport 8472 counter packets 0 bytes 0 drop comment "weft: tunnel from non-peer, drop"`,
	"type ipv6_addr",
}

// hasElements6 reports whether a listing's set holds exactly peer6A and peer6B (nft wraps
// long elements over lines).
func hasElements6(listing string) bool {
	return strings.Contains(strings.Join(strings.Fields(listing), " "), "elements = { 2001:db8::2, 2001:db8::3 }")
}

// table6 returns `nft list table ip6 weft`, or "" when there is none.
func (e *nsEnv) table6(t *testing.T) string {
	t.Helper()
	return e.tableOf(t, "ip6")
}

// TestNSIPv6Tables: a dual-stack network gets both tables, each with its family's rules and
// peers; an IPv6-only network has no "ip weft" table; an idle pass writes nothing;
// deleted IPv6 rules and elements come back as repairs; Cleanup removes both tables.
func TestNSIPv6Tables(t *testing.T) {
	e := newNSEnv(t)
	e.nft(t, "add", "table", "ip6", "other")
	m := e.manager(t, allOn)
	m.SetNetwork(dualStack)
	m.SetTunnelPort(firewall.TunnelUDP, 8472)
	m.SetPeers([]netip.Addr{peer6B, peerA, peer6A, peerB})
	e.do(t, m.Sync)
	checkTable(t, e.table(t), wantLines)
	checkTable(t, e.table6(t), wantLines6)
	if !hasElements6(e.table6(t)) {
		t.Fatalf("ip6 set elements:\n%s", e.table6(t))
	}
	t.Logf("nft list table ip6 %s:\n%s", TableName, e.table6(t))
	if strings.Contains(e.table(t), "2001:db8") || strings.Contains(e.table6(t), "192.0.2.") {
		t.Fatalf("a family's table holds the other family's peers:\n%s\n%s", e.table(t), e.table6(t))
	}
	writes := m.writes
	e.do(t, m.Sync)
	if m.writes != writes {
		t.Fatalf("idle pass wrote %d transactions", m.writes-writes)
	}

	// A deleted IPv6 rule and element come back, each a repair.
	e.nft(t, "delete", "rule", "ip6", TableName, "postrouting", "handle", e.ruleHandle(t, "ip6", "postrouting", "masq network to outside"))
	e.nft(t, "delete", "element", "ip6", TableName, SetName, "{ 2001:db8::2 }")
	if strings.Contains(e.table6(t), "masq network to outside") {
		t.Fatal("the rule was not deleted by hand")
	}
	e.do(t, m.Sync)
	checkTable(t, e.table6(t), wantLines6)
	if !hasElements6(e.table6(t)) {
		t.Fatalf("ip6 set elements not repaired:\n%s", e.table6(t))
	}
	if got := e.repairs.Load(); got != 2 {
		t.Errorf("%d repairs counted, want 2", got)
	}

	// IPv6 only: the IPv4 table goes, the IPv6 one stays.
	m.SetNetwork(ipv6Only)
	e.do(t, m.Sync)
	if l := e.table(t); l != "" {
		t.Fatalf("ip weft left in an IPv6-only network:\n%s", l)
	}
	checkTable(t, e.table6(t), wantLines6)
	// IPv4 only: the reverse.
	m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
	e.do(t, m.Sync)
	if l := e.table6(t); l != "" {
		t.Fatalf("ip6 weft left in an IPv4-only network:\n%s", l)
	}
	checkTable(t, e.table(t), wantLines)

	m.SetNetwork(dualStack)
	e.do(t, m.Sync)
	e.do(t, m.Cleanup)
	if e.table(t) != "" || e.table6(t) != "" {
		t.Fatalf("tables left after Cleanup:\n%s", e.nft(t, "list", "ruleset"))
	}
	if !strings.Contains(e.nft(t, "list", "tables"), "table ip6 other") {
		t.Fatal("Cleanup removed a table that is not weft's")
	}
}
