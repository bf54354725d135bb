package nftables

import (
	"context"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"net/netip"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

// These tests write nftables inside throwaway namespaces only: the Manager runs inside
// nsutil.Do, `nft` runs through `ip netns exec`, and rootUnchanged compares the root
// namespace's ruleset (read with `nft list ruleset`) before and after.

var (
	testNetwork = netip.MustParsePrefix("10.244.0.0/16")
	testSubnet  = netip.MustParsePrefix("10.244.3.0/24")
	peerA       = netip.MustParseAddr("192.0.2.2")
	peerB       = netip.MustParseAddr("192.0.2.3")
	allOn       = Options{IPMasq: true, ForwardRules: true, RestrictTunnelPort: true}
)

type nsEnv struct {
	name    string
	repairs atomic.Int64
}

func newNSEnv(t *testing.T) *nsEnv {
	t.Helper()
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skipf("nft not installed (make deps): %v", err)
	}
	rootUnchanged(t)
	return &nsEnv{name: nstest.Temp(t, "nft")}
}

// manager returns a Manager counting its repairs in e.repairs.
func (e *nsEnv) manager(t *testing.T, opts Options) *Manager {
	opts.OnRepair = func() { e.repairs.Add(1) }
	return New(opts, testr.New(t))
}

func (e *nsEnv) do(t testing.TB, fn func() error) {
	t.Helper()
	if err := nsutil.Do(e.name, fn); err != nil {
		t.Fatal(err)
	}
}

// nft runs nft by hand in the namespace.
func (e *nsEnv) nft(t *testing.T, args ...string) string {
	t.Helper()
	out, err := nstest.Run(e.name, append([]string{"nft"}, args...)...)
	if err != nil {
		t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

// table returns `nft list table ip weft`, or "" when there is none.
func (e *nsEnv) table(t *testing.T) string {
	t.Helper()
	return e.tableOf(t, "ip")
}

// tableOf returns `nft list table <family> weft`, or "" when there is none.
func (e *nsEnv) tableOf(t *testing.T, family string) string {
	t.Helper()
	out, err := nstest.Run(e.name, "nft", "list", "table", family, TableName)
	if err != nil {
		return ""
	}
	return out
}

var handle = regexp.MustCompile(`# handle (\d+)$`)

// ruleHandle returns the handle of the first rule holding text in chain of the weft table
// of family.
func (e *nsEnv) ruleHandle(t *testing.T, family, chain, text string) string {
	t.Helper()
	for _, l := range strings.Split(e.nft(t, "-a", "list", "chain", family, TableName, chain), "\n") {
		if strings.Contains(l, text) {
			if m := handle.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
				return m[1]
			}
		}
	}
	t.Fatalf("no rule with %q in chain %s", text, chain)
	return ""
}

// rootUnchanged fails t if the root namespace's nftables ruleset changes while it runs.
func rootUnchanged(t *testing.T) {
	t.Helper()
	dump := func() string {
		out, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list ruleset in the root namespace: %v: %s", err, out)
		}
		return string(out)
	}
	before := dump()
	t.Cleanup(func() {
		if after := dump(); after != before {
			t.Errorf("the root namespace's ruleset changed!\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// wantLines are lines `nft list table ip weft` shows for allOn with udp 8472.
var wantLines = []string{
	"type nat hook postrouting priority srcnat; policy accept;",
	`meta mark & 0x00004000 == 0x00004000 counter packets 0 bytes 0 return comment "weft: kube-proxy marked, no masq"`,
	`ip saddr 10.244.3.0/24 ip daddr 10.244.0.0/16 counter packets 0 bytes 0 return comment "weft: own subnet to network, no masq"`,
	`ip saddr 10.244.0.0/16 ip daddr 10.244.3.0/24 counter packets 0 bytes 0 return comment "weft: network to own subnet, no masq"`,
	`ip saddr != 10.244.0.0/16 ip daddr 10.244.3.0/24 counter packets 0 bytes 0 return comment "weft: outside to own subnet, no masq"`,
	`ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 counter packets 0 bytes 0 masquerade fully-random comment "weft: masq network to outside"`,
	`ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 counter packets 0 bytes 0 masquerade fully-random comment "weft: masq outside to network"`,
	"type filter hook forward priority filter; policy accept;",
	`ip saddr 10.244.0.0/16 counter packets 0 bytes 0 accept comment "weft: forward from network"`,
	`ip daddr 10.244.0.0/16 counter packets 0 bytes 0 accept comment "weft: forward to network"`,
	"type filter hook input priority filter; policy accept;",
	`udp dport 8472 ip saddr @peers counter packets 0 bytes 0 accept comment "weft: tunnel from peer"`,
	`udp dport 8472 counter packets 0 bytes 0 drop comment "weft: tunnel from non-peer, drop"`,
	"type ipv4_addr",
	"elements = { 192.0.2.2, 192.0.2.3 }",
}

func checkTable(t *testing.T, listing string, want []string) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(listing, "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("table lacks %q:\n%s", w, listing)
		}
	}
}

func TestNSInstallRepairIdle(t *testing.T) {
	e := newNSEnv(t)
	// A table that is not weft's stays as it is.
	e.nft(t, "add", "table", "ip", "other")
	e.nft(t, "add", "chain", "ip", "other", "input", "{ type filter hook input priority 0; }")
	e.nft(t, "add", "rule", "ip", "other", "input", "tcp", "dport", "22", "accept")
	other := e.nft(t, "list", "table", "ip", "other")

	m := e.manager(t, allOn)
	m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
	m.SetTunnelPort(firewall.TunnelUDP, 8472)
	m.SetPeers([]netip.Addr{peerB, peerA})
	e.do(t, m.Sync)
	listing := e.table(t)
	checkTable(t, listing, wantLines)
	t.Logf("nft list table ip %s:\n%s", TableName, listing)
	if n := strings.Count(listing, "comment \"weft: "); n != 6+2+2 {
		t.Errorf("%d rules with a weft comment, want 10", n)
	}
	if e.repairs.Load() != 0 {
		t.Fatal("installing counted as a repair")
	}

	// An idle pass writes nothing.
	writes := m.writes
	e.do(t, m.Sync)
	if m.writes != writes {
		t.Fatalf("idle pass wrote %d transactions", m.writes-writes)
	}

	// A deleted rule, a changed rule and a deleted element come back, each a repair.
	e.nft(t, "delete", "rule", "ip", TableName, "postrouting", "handle", e.ruleHandle(t, "ip", "postrouting", "masq outside to network"))
	e.nft(t, "replace", "rule", "ip", TableName, "forward", "handle", e.ruleHandle(t, "ip", "forward", "forward to network"),
		"ip", "daddr", "10.9.0.0/16", "accept", "comment", `"weft: forward to network"`)
	e.nft(t, "delete", "element", "ip", TableName, SetName, "{ 192.0.2.2 }")
	e.do(t, m.Sync)
	checkTable(t, e.table(t), wantLines)
	if got := e.repairs.Load(); got != 3 {
		t.Errorf("%d repairs counted, want 3", got)
	}
	if e.table(t) == "" || strings.Contains(e.table(t), "10.9.0.0") {
		t.Fatalf("changed rule not put right:\n%s", e.table(t))
	}

	// A foreign rule added to weft's chain is removed.
	e.nft(t, "add", "rule", "ip", TableName, "input", "accept")
	e.do(t, m.Sync)
	checkTable(t, e.table(t), wantLines)
	if strings.Contains(e.nft(t, "list", "chain", "ip", TableName, "input"), "\t\taccept\n") {
		t.Fatalf("foreign rule kept:\n%s", e.table(t))
	}
	if got := e.nft(t, "list", "table", "ip", "other"); got != other {
		t.Fatalf("foreign table changed:\n%s\nwas\n%s", got, other)
	}
}

// TestNSRunRestoresTableAtResync: Run's periodic pass puts back a deleted table, and (ipv4)
// a deleted rule (the times are logged against the period: a loaded machine may take
// longer), and follows SetPeers from another goroutine; for IPv6 (an IPv6-only network)
// the "ip6 weft" table, from the same loop.
func TestNSRunRestoresTableAtResync(t *testing.T) {
	const period = 300 * time.Millisecond
	t.Run("ipv4", func(t *testing.T) {
		e := newNSEnv(t)
		m := e.runInNS(t, period, firewall.Overlay{Network: testNetwork, Subnet: testSubnet}, peerA, peerB)
		e.deletedTableBack(t, "ip", period, wantLines, func(l string) bool {
			return strings.Contains(l, "elements = { 192.0.2.2, 192.0.2.3 }")
		})
		e.waitFor(t, "the repairs to be counted", func() bool { return e.repairs.Load() == 4 }) // three chains and the set

		e.nft(t, "delete", "rule", "ip", TableName, "input", "handle", e.ruleHandle(t, "ip", "input", "drop"))
		took := e.waitFor(t, "the deleted rule to come back", func() bool { return strings.Contains(e.table(t), "tunnel from non-peer, drop") })
		t.Logf("a deleted rule was back after %v (period %v)", took, period)
		if took > period+time.Second {
			t.Logf("NOTE: the rule came back only after %v, more than a period (%v) and a second", took, period)
		}

		// Peers follow SetPeers from another goroutine, in the set only.
		m.SetPeers([]netip.Addr{peerB, netip.MustParseAddr("198.51.100.7")})
		e.waitFor(t, "the new elements", func() bool { return strings.Contains(e.table(t), "elements = { 192.0.2.3, 198.51.100.7 }") })
		m.SetPeers(nil)
		e.waitFor(t, "an empty set", func() bool {
			return !strings.Contains(e.table(t), "elements") && strings.Contains(e.table(t), "@peers")
		})
	})
	t.Run("ipv6", func(t *testing.T) {
		e := newNSEnv(t)
		e.runInNS(t, period, ipv6Only, peer6A, peer6B)
		e.deletedTableBack(t, "ip6", period, wantLines6, hasElements6)
		if e.table(t) != "" {
			t.Fatalf("an IPv6-only network got an ip table:\n%s", e.table(t))
		}
	})
}

// runInNS starts a Manager with every feature on, a udp 8472 tunnel, the overlay ov and
// the peers, and runs it in the namespace with the given resync period until t ends.
func (e *nsEnv) runInNS(t *testing.T, period time.Duration, ov firewall.Overlay, peers ...netip.Addr) *Manager {
	opts := allOn
	opts.Resync = period
	m := e.manager(t, opts)
	m.SetNetwork(ov)
	m.SetTunnelPort(firewall.TunnelUDP, 8472)
	m.SetPeers(peers)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nsutil.Do(e.name, func() error { return m.Run(ctx) }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return m
}

// deletedTableBack waits for the table of family to be complete (its
// elements as hasElements wants, and the last masquerade rule), deletes it by hand, and
// fails t unless it comes back holding want; how long that took is logged against the
// period.
func (e *nsEnv) deletedTableBack(t *testing.T, family string, period time.Duration, want []string, hasElements func(string) bool) {
	t.Helper()
	complete := func() bool {
		l := e.tableOf(t, family)
		return hasElements(l) && strings.Contains(l, "masq outside to network")
	}
	e.waitFor(t, "the table", complete)
	e.nft(t, "delete", "table", family, TableName)
	took := e.waitFor(t, "the deleted "+family+" table to come back", complete)
	t.Logf("a deleted %s table was back after %v (period %v)", family, took, period)
	if took > period+time.Second {
		t.Logf("NOTE: the table came back only after %v, more than a period (%v) and a second", took, period)
	}
	checkTable(t, e.tableOf(t, family), want)
}

// waitFor polls cond every 20 ms for at most 15 s (a hang bound: nft runs as a process,
// slow on a loaded machine) and returns how long it took; on timeout it fails t, showing
// the namespace's ruleset.
func (e *nsEnv) waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 15*time.Second {
			t.Fatalf("timed out waiting for %s:\n%s", what, e.nft(t, "list", "ruleset"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func TestNSFeaturesOffAndCleanup(t *testing.T) {
	e := newNSEnv(t)
	e.nft(t, "add", "table", "ip", "other")
	m := e.manager(t, allOn)
	m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
	m.SetTunnelPort(firewall.TunnelGRE, 0)
	m.SetPeers([]netip.Addr{peerA})
	e.do(t, m.Sync)
	if l := e.table(t); !strings.Contains(l, "meta l4proto gre ip saddr @peers") {
		t.Fatalf("gre rule missing:\n%s", l)
	}

	// Restarted with masquerading off and a backend without a tunnel: those chains and
	// the set go, the forward chain stays.
	m2 := e.manager(t, Options{ForwardRules: true})
	m2.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
	m2.SetTunnelPort("", 0)
	e.do(t, m2.Sync)
	l := e.table(t)
	if strings.Contains(l, "postrouting") || strings.Contains(l, "chain input") || strings.Contains(l, "set peers") || !strings.Contains(l, "chain forward") {
		t.Fatalf("after turning features off:\n%s", l)
	}
	// Everything off: no table at all.
	m3 := e.manager(t, Options{})
	m3.SetTunnelPort("", 0)
	e.do(t, m3.Sync)
	if l := e.table(t); l != "" {
		t.Fatalf("table left with every feature off:\n%s", l)
	}
	e.do(t, m3.Sync) // nothing to do, nothing fails

	e.do(t, m.Sync)
	for range 2 {
		e.do(t, m.Cleanup)
		if l := e.table(t); l != "" {
			t.Fatalf("table left after Cleanup:\n%s", l)
		}
	}
	if !strings.Contains(e.nft(t, "list", "tables"), "table ip other") {
		t.Fatal("Cleanup removed a table that is not weft's")
	}
}

// TestNSManyPeersOneRule: 2000 peers are one rule and a set of 2000 elements; one joining
// is one element added.
func TestNSManyPeersOneRule(t *testing.T) {
	e := newNSEnv(t)
	m := e.manager(t, allOn)
	m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
	m.SetTunnelPort(firewall.TunnelUDP, 8472)
	peers := make([]netip.Addr, 0, 2001)
	for a := netip.MustParseAddr("198.18.0.1"); len(peers) < 2001; a = a.Next().Next() {
		peers = append(peers, a)
	}
	m.SetPeers(peers[:2000])
	start := time.Now()
	e.do(t, m.Sync)
	install := time.Since(start)
	m.SetPeers(peers)
	start = time.Now()
	e.do(t, m.Sync)
	join := time.Since(start)
	start = time.Now()
	e.do(t, m.Sync)
	idle := time.Since(start)
	out := e.nft(t, "-j", "list", "set", "ip", TableName, SetName)
	if n := strings.Count(out, `"198.18.`); n != 2001 {
		t.Fatalf("set holds %d elements, want 2001", n)
	}
	rules := strings.Count(e.nft(t, "list", "chain", "ip", TableName, "input"), "comment \"weft: ")
	if rules != 2 {
		t.Fatalf("input chain has %d rules, want 2", rules)
	}
	t.Logf("2000 peers: %d tunnel rules (one accept matching the set, one drop), set of 2001 after one joined; install %v, join %v, idle pass %v",
		rules, install.Round(time.Millisecond), join.Round(time.Millisecond), idle.Round(time.Millisecond))
}
