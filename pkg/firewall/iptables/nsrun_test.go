package iptables

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

// Run's repair loop in a namespace, for both families.

// TestNSRunRestoresAtResync: Run's periodic pass puts back a rule deleted by hand (the time
// is logged against the period: a loaded machine may take longer), and the peers a setter
// on another goroutine names reach the namespace's set; for IPv6 (an IPv6-only network),
// the ip6tables rules from the same loop.
func TestNSRunRestoresAtResync(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) {
		e := newNSEnv(t, "iptables")
		const period = 300 * time.Millisecond
		m := e.manager(t, Options{IPMasq: true, ForwardRules: true, RestrictTunnelPort: true, Resync: period})
		m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
		m.SetTunnelPort("udp", 8472)
		e.runInNS(t, m)

		count := func(table, chain string) int { // -1 while the chain does not exist yet
			out, err := nstest.Run(e.name, "iptables", "-w", "-t", table, "-S", chain)
			if err != nil {
				return -1
			}
			return len(parseListing(chain, strings.Split(out, "\n")))
		}
		natCount := func() int { return count("nat", NATChain) }
		e.waitFor(t, "the nat rules", func() bool { return natCount() == 6 })

		e.run(t, "-t", "nat", "-D", NATChain, "5")
		took := e.waitFor(t, "the deleted rule to come back", func() bool { return natCount() == 6 })
		t.Logf("a rule deleted by hand was back after %v (period %v)", took, period)
		if took > period+time.Second {
			t.Logf("NOTE: the rule came back only after %v, more than a period (%v) and a second", took, period)
		}
		e.checkChain(t, m, &natDef)

		// A setter called from another goroutine still changes only the namespace's set.
		m.SetPeers([]netip.Addr{peerA})
		e.waitFor(t, "the peer in the set", func() bool { got, _ := e.members(t); return slices.Equal(got, []string{peerA.String()}) })
		e.checkChain(t, m, &inputDef)

		// A member deleted, or the set flushed, by hand is back at the next pass.
		e.runTool(t, "ipset", "flush", PeerSet)
		took = e.waitFor(t, "the flushed set refilled", func() bool { got, _ := e.members(t); return len(got) == 1 })
		t.Logf("a flushed set was refilled after %v", took)
	})
	t.Run("ipv6", func(t *testing.T) {
		e := newNSEnv6(t, "iptables")
		m := e.manager6(t, Options{IPMasq: true, ForwardRules: true, RestrictTunnelPort: true, Resync: 100 * time.Millisecond})
		m.SetNetwork(ipv6Only)
		m.SetTunnelPort("udp", 8472)
		m.SetPeers([]netip.Addr{peer6A})
		e.runInNS(t, m)
		has := func() bool {
			out, err := nstest.Run(e.name, e.bin6, "-w", "-t", "filter", "-S", ForwardChain)
			return err == nil && strings.Contains(out, "weft: forward to network")
		}
		e.waitFor(t, "the IPv6 rules", has)
		e.run6(t, "-t", "filter", "-D", ForwardChain, "2")
		took := e.waitFor(t, "the deleted IPv6 rule to come back", has)
		t.Logf("deleted ip6tables rule back after %v", took)
		// A new IPv6 peer reaches the set promptly, without waiting for the period.
		m.SetPeers([]netip.Addr{peer6A, peer6B})
		e.waitFor(t, "the new IPv6 peer", func() bool { got, _ := e.members6(t); return len(got) == 2 })
	})
}

// runInNS runs m.Run in the namespace until t ends, and then checks that it returned nil.
func (e *nsEnv) runInNS(t *testing.T, m *Manager) {
	runUntilEnd(t, func(ctx context.Context) error {
		// Run stays on this locked thread, in the namespace, until ctx ends.
		return nsutil.Do(e.name, func() error { return m.Run(ctx) })
	})
}

// waitFor polls cond every 20 ms for at most 15 s (a hang bound: iptables runs as processes,
// slow on a loaded machine) and returns how long it took; on timeout it fails t, showing
// the namespace's rules of both families.
func (e *nsEnv) waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 15*time.Second {
			save, _ := e.saveOf(e.bin + "-save")
			save6, _ := e.saveOf(strings.Replace(e.bin, "iptables", "ip6tables", 1) + "-save")
			t.Fatalf("timed out waiting for %s:\n%s\n%s", what, save, save6)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}
