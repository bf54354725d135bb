package firewall_test

import (
	"context"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/firewall/iptables"
	"github.com/weftnet/weft/pkg/firewall/nftables"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

// TestNSSwitchModes switches one namespace from iptables mode to nftables mode and back,
// as the daemon wires it (each mode's Replaces is the other), for an IPv4, a dual-stack and
// an IPv6-only network, and checks with iptables-save, ip6tables-save, nft list ruleset and
// ipset list that each mode keeps the rules and sets of exactly the families the network
// runs, that nothing of the old mode is left (of either family) and that nothing that is
// not weft's is touched. Every command runs inside the namespace.
func TestNSSwitchModes(t *testing.T) {
	v4 := firewall.Overlay{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.0/24")}
	v6 := firewall.Overlay{IPv6Network: netip.MustParsePrefix("fd00:10:244::/56"), IPv6Subnet: netip.MustParsePrefix("fd00:10:244:3::/64")}
	dual := v4
	dual.IPv6Network, dual.IPv6Subnet = v6.IPv6Network, v6.IPv6Subnet
	for name, ov := range map[string]firewall.Overlay{"IPv4": v4, "dual-stack": dual, "IPv6-only": v6} {
		t.Run(name, func(t *testing.T) { testSwitchModes(t, ov) })
	}
}

func testSwitchModes(t *testing.T, ov firewall.Overlay) {
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	for _, bin := range []string{"iptables", "iptables-save", "ip6tables", "ip6tables-save", "nft", "ipset"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make deps): %v", bin, err)
		}
	}
	rootRuleset := func() string {
		out, _ := exec.Command("nft", "list", "ruleset").CombinedOutput()
		sets, _ := exec.Command("ipset", "list", "-n").CombinedOutput()
		save6, _ := exec.Command("ip6tables-save").CombinedOutput()
		var b strings.Builder
		for _, l := range strings.Split(string(save6), "\n") {
			if !strings.HasPrefix(l, "#") {
				b.WriteString(counters.ReplaceAllString(l, "") + "\n")
			}
		}
		return string(out) + string(sets) + b.String()
	}
	before := rootRuleset()
	t.Cleanup(func() {
		if after := rootRuleset(); after != before {
			t.Errorf("the root namespace's rules changed!\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
	ns := nstest.Temp(t, "fwsw")
	run := func(args ...string) string {
		t.Helper()
		out, err := nstest.Run(ns, args...)
		if err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return out
	}
	// What is not weft's: an INPUT rule, a table, a set.
	run("iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
	run("ip6tables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
	run("nft", "add", "table", "ip", "other")
	run("nft", "add", "table", "ip6", "other")
	run("ipset", "create", "other-set", "hash:ip")
	foreign := func() {
		t.Helper()
		if !strings.Contains(run("iptables-save"), "--dport 22 -j ACCEPT") ||
			!strings.Contains(run("ip6tables-save"), "--dport 22 -j ACCEPT") ||
			!strings.Contains(run("nft", "list", "tables"), "table ip other") ||
			!strings.Contains(run("nft", "list", "tables"), "table ip6 other") ||
			!strings.Contains(run("ipset", "list", "-n"), "other-set") {
			t.Fatal("something that is not weft's was removed")
		}
	}

	var tool *iptables.Tool
	if err := nsutil.Do(ns, func() (err error) {
		tool, err = iptables.Find(testr.New(t))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	opts := firewall.Options{IPMasq: true, ForwardRules: true, RestrictTunnelPort: true, Resync: 200 * time.Millisecond}
	peers := []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("192.0.2.3")}
	runs4, runs6 := ov.Runs(firewall.IPv4), ov.Runs(firewall.IPv6)
	// hasSet reports whether ipset lists a set of exactly that name.
	hasSet := func(name string) bool {
		return slices.Contains(strings.Fields(run("ipset", "list", "-n")), name)
	}
	// famIPTables reports whether one family's chains and set are in place (want) or
	// entirely gone (!want).
	famIPTables := func(save, set, match string, want bool) bool {
		out := run(save)
		if !want {
			return !strings.Contains(out, "WEFT") && !hasSet(set)
		}
		return strings.Contains(out, "-A WEFT-POSTRTG") && strings.Contains(out, "--match-set "+set+" src") &&
			strings.Contains(out, match) && hasSet(set)
	}
	inIPTables := func() bool {
		return famIPTables("iptables-save", iptables.PeerSet, "10.244.3.0/24", runs4) &&
			famIPTables("ip6tables-save", iptables.PeerSet6, "fd00:10:244:3::/64", runs6)
	}
	noIPTables := func() bool {
		return famIPTables("iptables-save", iptables.PeerSet, "", false) && famIPTables("ip6tables-save", iptables.PeerSet6, "", false)
	}
	// famNFT reports whether one family's table is in place with its peers (want) or gone.
	famNFT := func(family, elements string, want bool) bool {
		out, err := nstest.Run(ns, "nft", "list", "table", family, nftables.TableName)
		if !want {
			return err != nil
		}
		return err == nil && strings.Contains(strings.Join(strings.Fields(out), " "), elements)
	}
	inNFT := func() bool {
		return famNFT("ip", "elements = { 192.0.2.2, 192.0.2.3 }", runs4) && famNFT("ip6", "elements = { 2001:db8::2 }", runs6)
	}
	noNFT := func() bool { return famNFT("ip", "", false) && famNFT("ip6", "", false) }
	// runUntil runs fw in the namespace until cond holds (bounded), then stops it.
	runUntil := func(what string, fw firewall.Firewall, cond func() bool) {
		t.Helper()
		fw.SetNetwork(ov)
		fw.SetTunnelPort(firewall.TunnelUDP, 8472)
		fw.SetPeers(peers)
		defer runIn(t, ns, fw)()
		for start := time.Now(); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: timed out\niptables-save:\n%s\nip6tables-save:\n%s\nnft list ruleset:\n%s\nipset list -n:\n%s", what,
					run("iptables-save"), run("ip6tables-save"), run("nft", "list", "ruleset"), run("ipset", "list", "-n"))
			}
		}
	}
	iptMode := func() firewall.Firewall {
		o := opts
		o.Replaces = nftables.Leftovers(testr.New(t))
		return iptables.New(tool, o, testr.New(t))
	}
	nftMode := func() firewall.Firewall {
		o := opts
		o.Replaces = iptables.New(tool, firewall.Options{DisableFullyRandom: true}, testr.New(t))
		return nftables.New(o, testr.New(t))
	}

	runUntil("iptables mode", iptMode(), func() bool { return inIPTables() && noNFT() })
	foreign()
	runUntil("iptables -> nftables", nftMode(), func() bool { return inNFT() && noIPTables() })
	foreign()
	if rs := run("nft", "list", "ruleset"); strings.Contains(rs, "WEFT") {
		t.Fatalf("iptables-nft still holds weft chains:\n%s", rs)
	}
	runUntil("nftables -> iptables", iptMode(), func() bool { return inIPTables() && noNFT() })
	foreign()
	t.Logf("after switching back to iptables:\n%s\n%s", run("iptables-save"), run("ip6tables-save"))
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// runIn runs fw in the namespace ns until the returned stop is called, which fails t
// unless Run then returns nil within 10 s.
func runIn(t *testing.T, ns string, fw firewall.Firewall) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nsutil.Do(ns, func() error { return fw.Run(ctx) }) }()
	return func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	}
}
