package iptables

import (
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/test/nstest"
)

// binaries are the iptables front ends the namespace tests run with: whatever `iptables`
// is, and each backend explicitly.
var binaries = []string{"iptables", "iptables-nft", "iptables-legacy"}

func TestNSInstallRepairIdle(t *testing.T) {
	for _, bin := range binaries {
		t.Run(bin, func(t *testing.T) {
			e := newNSEnv(t, bin)
			// Foreign rules in the built-in chains must stay, in order, around weft's jumps.
			e.run(t, "-t", "nat", "-A", "POSTROUTING", "-o", "eth9", "-j", "MASQUERADE")
			e.run(t, "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")

			m := e.manager(t, allOn)
			m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
			m.SetTunnelPort("udp", 8285)
			m.SetPeers([]netip.Addr{peerB, peerA})
			e.do(t, m.Sync)

			for _, def := range chainDefs {
				e.checkChain(t, m, def)
			}
			hooks := map[string][]string{
				"POSTROUTING": {"-o eth9 -j MASQUERADE", `-m comment --comment "weft: masq" -j WEFT-POSTRTG`},
				"FORWARD":     {`-m comment --comment "weft: forward" -j WEFT-FWD`},
				"INPUT":       {`-m comment --comment "weft: tunnel input" -j WEFT-INPUT`, "-p tcp -m tcp --dport 22 -j ACCEPT"},
			}
			for _, def := range chainDefs {
				if got := e.rules(t, def.table, def.hook); !slices.Equal(got, hooks[def.hook]) {
					t.Errorf("%s = %q, want %q", def.hook, got, hooks[def.hook])
				}
			}
			if m.randomFully && !strings.Contains(e.run(t, "-t", "nat", "-S", NATChain), "--random-fully") {
				t.Error("nat chain lacks --random-fully")
			}
			// Every rule in or towards weft's chains carries a weft comment.
			save, err := nstest.Run(e.name, bin+"-save")
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, l := range strings.Split(save, "\n") {
				if strings.HasPrefix(l, "-A WEFT-") || strings.HasSuffix(l, "-j WEFT-POSTRTG") ||
					strings.HasSuffix(l, "-j WEFT-FWD") || strings.HasSuffix(l, "-j WEFT-INPUT") {
					n++
					if !strings.Contains(l, `--comment "weft: `) {
						t.Errorf("rule without a weft comment: %s", l)
					}
				}
			}
			if want := 3 + 6 + 2 + 2; n != want {
				t.Errorf("found %d weft rules, want %d:\n%s", n, want, save)
			}

			// Rules deleted by hand come back after one Sync.
			e.run(t, "-t", "nat", "-D", NATChain, "3")
			e.run(t, "-t", "filter", "-D", InputChain, "1")
			e.run(t, append([]string{"-t", "filter", "-D", "FORWARD"}, forwardDef.jump...)...)
			e.do(t, m.Sync)
			for _, def := range chainDefs {
				e.checkChain(t, m, def)
				if got := e.rules(t, def.table, def.hook); !slices.Equal(got, hooks[def.hook]) {
					t.Errorf("after repair %s = %q, want %q", def.hook, got, hooks[def.hook])
				}
			}

			// A pass with nothing to do lists and checks, and changes nothing.
			e.r.takeCalls()
			e.do(t, m.Sync)
			calls := e.r.takeCalls()
			if mod := modifyingCalls(calls); len(mod) != 0 || len(calls) > 7 {
				t.Fatalf("idle pass ran %v (modifying: %v); want at most 7 read-only runs (6 iptables, 1 set listing)", calls, mod)
			}
			t.Logf("idle pass: %d iptables runs: %v", len(calls), calls)
			if len(m.listed) != 0 {
				t.Errorf("render mispredicted %s's listing: %q", bin, m.listed)
			}
		})
	}
}

func TestNSPeersAndNetworkChange(t *testing.T) {
	e := newNSEnv(t, "iptables")
	m := e.manager(t, allOn)
	m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
	m.SetTunnelPort("udp", 8285)
	m.SetPeers([]netip.Addr{peerA, peerB})
	e.do(t, m.Sync)
	e.checkChain(t, m, &inputDef)

	if got, _ := e.members(t); !slices.Equal(got, []string{peerA.String(), peerB.String()}) {
		t.Fatalf("set holds %q", got)
	}
	// A peer that left leaves the set; the chain does not change.
	e.r.takeCalls()
	m.SetPeers([]netip.Addr{peerB})
	e.do(t, m.Sync)
	if got, _ := e.members(t); !slices.Equal(got, []string{peerB.String()}) {
		t.Fatalf("set after peer A left: %q", got)
	}
	if mod := modifyingCalls(e.r.takeCalls()); !slices.Equal(mod, []string{"ipset Del"}) {
		t.Fatalf("peer A leaving made %v, want one ipset Del", mod)
	}
	got := e.rules(t, "filter", InputChain)
	if len(got) != 2 || !strings.Contains(got[0], "--match-set "+PeerSet+" src") || !strings.HasSuffix(got[1], "-j DROP") {
		t.Fatalf("input chain: %q", got)
	}

	// GRE instead of UDP.
	m.SetTunnelPort("gre", 0)
	e.do(t, m.Sync)
	e.checkChain(t, m, &inputDef)
	if got := e.rules(t, "filter", InputChain); !strings.Contains(got[0], "-p gre") {
		t.Fatalf("gre rules: %q", got)
	}

	// A changed network replaces the nat and forward rules; nothing of the old one is left.
	m.SetNetwork(firewall.Overlay{Network: netip.MustParsePrefix("10.50.0.0/16"), Subnet: netip.MustParsePrefix("10.50.9.0/24")})
	e.do(t, m.Sync)
	e.checkChain(t, m, &natDef)
	e.checkChain(t, m, &forwardDef)
	if save, _ := nstest.Run(e.name, "iptables-save"); strings.Contains(save, "10.244.") {
		t.Fatalf("rules for the old network remain:\n%s", save)
	}
	e.r.takeCalls()
	e.do(t, m.Sync)
	if mod := modifyingCalls(e.r.takeCalls()); len(mod) != 0 {
		t.Fatalf("idle pass after the change modified: %v", mod)
	}
}

func TestNSCleanup(t *testing.T) {
	for _, bin := range binaries {
		t.Run(bin, func(t *testing.T) {
			e := newNSEnv(t, bin)
			e.run(t, "-t", "nat", "-A", "POSTROUTING", "-o", "eth9", "-j", "MASQUERADE")
			e.run(t, "-t", "filter", "-A", "FORWARD", "-j", "ACCEPT")
			e.run(t, "-t", "filter", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
			hooks := func() map[string][]string {
				out := map[string][]string{}
				for _, def := range chainDefs {
					out[def.hook] = e.rules(t, def.table, def.hook)
				}
				return out
			}
			before := hooks()

			m := e.manager(t, allOn)
			// Cleanup with nothing installed is fine.
			e.do(t, m.Cleanup)
			m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
			m.SetTunnelPort("udp", 8285)
			m.SetPeers([]netip.Addr{peerA})
			e.do(t, m.Sync)
			for range 2 {
				e.do(t, m.Cleanup)
				if after := hooks(); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Fatalf("built-in chains after Cleanup:\n%v\nbefore:\n%v", after, before)
				}
				save, err := nstest.Run(e.name, bin+"-save")
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(save, "WEFT") {
					t.Fatalf("weft chains left after Cleanup:\n%s", save)
				}
				if _, ok := e.members(t); ok {
					t.Fatalf("ipset %s left after Cleanup", PeerSet)
				}
			}
		})
	}
}

// TestNSGuardRefusesOtherNamespaces checks the guard itself: a call from a thread outside
// the test's namespace panics before any iptables command runs.
func TestNSGuardRefusesOtherNamespaces(t *testing.T) {
	e := newNSEnv(t, "iptables")
	defer func() {
		if recover() == nil {
			t.Fatal("nsRunner ran a command outside the test namespace")
		}
		if calls := e.r.takeCalls(); len(calls) != 0 {
			t.Fatalf("calls recorded: %v", calls)
		}
	}()
	_, _ = e.r.List("nat", "POSTROUTING") // this goroutine is not in the namespace
}

func TestNewFindsIPTables(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skipf("iptables not installed: %v", err)
	}
	e := newNSEnv(t, "iptables") // Find runs the *-save tools: in a namespace of the test's
	var tool *Tool
	e.do(t, func() (err error) {
		tool, err = Find(testr.New(t))
		return err
	})
	m := New(tool, Options{}, testr.New(t))
	if m.opts.Resync != DefaultResync {
		t.Fatalf("Resync = %v, want the default %v", m.opts.Resync, DefaultResync)
	}
}
