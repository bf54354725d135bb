package firewall_test

import (
	"context"
	"net/netip"
	"os/exec"
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
// as the daemon wires it (each mode's Replaces is the other), and checks with
// iptables-save, nft list ruleset and ipset list that nothing of the old mode is left and
// that nothing that is not weft's is touched. Every command runs inside the namespace.
func TestNSSwitchModes(t *testing.T) {
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	for _, bin := range []string{"iptables", "iptables-save", "nft", "ipset"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make deps): %v", bin, err)
		}
	}
	rootRuleset := func() string {
		out, _ := exec.Command("nft", "list", "ruleset").CombinedOutput()
		sets, _ := exec.Command("ipset", "list", "-n").CombinedOutput()
		return string(out) + string(sets)
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
	run("nft", "add", "table", "ip", "other")
	run("ipset", "create", "other-set", "hash:ip")
	foreign := func() {
		t.Helper()
		if !strings.Contains(run("iptables-save"), "--dport 22 -j ACCEPT") ||
			!strings.Contains(run("nft", "list", "tables"), "table ip other") ||
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
	peers := []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}
	inIPTables := func() bool {
		save := run("iptables-save")
		return strings.Contains(save, "-A WEFT-POSTRTG") && strings.Contains(save, "--match-set weft-peers src") &&
			strings.Contains(run("ipset", "list", "-n"), iptables.PeerSet)
	}
	noIPTables := func() bool {
		return !strings.Contains(run("iptables-save"), "WEFT") && !strings.Contains(run("ipset", "list", "-n"), iptables.PeerSet)
	}
	inNFT := func() bool {
		out, err := nstest.Run(ns, "nft", "list", "table", "ip", nftables.TableName)
		return err == nil && strings.Contains(out, "elements = { 192.0.2.2, 192.0.2.3 }")
	}
	noNFT := func() bool {
		_, err := nstest.Run(ns, "nft", "list", "table", "ip", nftables.TableName)
		return err != nil
	}
	// runUntil runs fw in the namespace until cond holds (bounded), then stops it.
	runUntil := func(what string, fw firewall.Firewall, cond func() bool) {
		t.Helper()
		fw.SetNetwork(firewall.Overlay{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.0/24")})
		fw.SetTunnelPort(firewall.TunnelUDP, 8472)
		fw.SetPeers(peers)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- nsutil.Do(ns, func() error { return fw.Run(ctx) }) }()
		defer func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return")
			}
		}()
		for start := time.Now(); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: timed out\niptables-save:\n%s\nnft list ruleset:\n%s\nipset list -n:\n%s", what,
					run("iptables-save"), run("nft", "list", "ruleset"), run("ipset", "list", "-n"))
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
	t.Logf("after switching back to iptables:\n%s", run("iptables-save"))
}
