package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// TestMasqueradeAndRuleRepair: with --ip-masq, a pod reaching "the internet" is seen there
// with its node's address, pod-to-pod traffic keeps the pod's address, and a rule deleted by
// hand is back within the resync period. The INPUT chain admits the tunnel port from peers.
func TestMasqueradeAndRuleRepair(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2, Internet: true})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	_, pods, envs := startNodes(t, c, []int{0, 1}, "--ip-masq", "--iptables-resync", "1", "--healthz-port", healthPort)
	if !envs[0].IPMasq {
		t.Fatal("FLANNEL_IPMASQ=false with --ip-masq")
	}
	pingAll(t, pods, 10*time.Second)

	eventually(t, 5*time.Second, "masquerade rules installed", func() error {
		if out, _ := c.Exec(c.NodeNS(0), "iptables", "-t", "nat", "-S", "WEFT-POSTRTG"); !strings.Contains(out, "MASQUERADE") {
			return fmt.Errorf("nat chain: %s", out)
		}
		return nil
	})
	src, err := cluster.TCPTransferSource(pods[0], c.Internet(), 1<<20, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if src.Addr() != c.NodeIP(0) {
		t.Errorf("the internet saw %s, want the node's address %s", src.Addr(), c.NodeIP(0))
	}
	src, err = cluster.TCPTransferSource(pods[0], pods[1], 1<<20, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if src.Addr() != pods[0].IP {
		t.Errorf("pod 1 saw %s, want pod 0's own address %s", src.Addr(), pods[0].IP)
	}

	// Every rule carries a weft comment; the tunnel port is admitted from the peers' set,
	// which holds the peer.
	input, _ := c.Exec(c.NodeNS(0), "iptables", "-S", "WEFT-INPUT")
	if !strings.Contains(input, "--match-set weft-peers src") || !strings.Contains(input, "--dport 8472") {
		t.Errorf("WEFT-INPUT lacks the peers' vxlan rule:\n%s", input)
	}
	eventually(t, 5*time.Second, "the peer in the ipset", func() error {
		if set, _ := c.Exec(c.NodeNS(0), "ipset", "list", "weft-peers"); !strings.Contains(set, "\n"+c.NodeIP(1).String()+"\n") {
			return fmt.Errorf("ipset weft-peers:\n%s", set)
		}
		return nil
	})
	for _, table := range []string{"nat", "filter"} {
		out, _ := c.Exec(c.NodeNS(0), "iptables", "-t", table, "-S")
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "-A WEFT-") && !strings.Contains(line, "--comment") {
				t.Errorf("rule without a comment: %s", line)
			}
		}
	}

	if v := metric(t, c, 0, "weft_dataplane_repairs_total", "kind", "iptables"); v != 0 {
		t.Fatalf("iptables repairs = %v before anything was deleted (installing is not repairing)", v)
	}
	// Delete one MASQUERADE rule by hand; it is back within the 1 s resync period.
	nat, _ := c.Exec(c.NodeNS(0), "iptables", "-t", "nat", "-S", "WEFT-POSTRTG")
	var rule string
	for _, line := range strings.Split(nat, "\n") {
		if strings.Contains(line, "MASQUERADE") {
			rule = line
			break
		}
	}
	args := append([]string{"iptables", "-t", "nat", "-D"}, splitRule(strings.TrimPrefix(rule, "-A "))...)
	if out, err := c.Exec(c.NodeNS(0), args...); err != nil {
		t.Fatalf("deleting %q: %v %s", rule, err, out)
	}
	start := time.Now()
	eventually(t, 3*time.Second, "deleted rule restored", func() error {
		out, _ := c.Exec(c.NodeNS(0), "iptables", "-t", "nat", "-S", "WEFT-POSTRTG")
		if !strings.Contains(out, rule) {
			return fmt.Errorf("missing %q", rule)
		}
		return nil
	})
	t.Logf("rule restored after %s", time.Since(start).Round(10*time.Millisecond))
	if v := metric(t, c, 0, "weft_dataplane_repairs_total", "kind", "iptables"); v != 1 {
		t.Errorf("iptables repairs = %v, want 1", v)
	}
}

// splitRule splits an iptables -S line into arguments, keeping quoted comments whole.
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
