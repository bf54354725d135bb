package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// killAndRestart SIGKILLs weftd on the given nodes, removes their subnet files (to see them
// written again) and starts weftd again at once. It returns when the kill happened and
// waits for every subnet file, checking that the subnet did not change.
func killAndRestart(t *testing.T, c *cluster.Cluster, ds map[int]*cluster.Weftd, nodes []int) (killed time.Time, ready time.Duration) {
	t.Helper()
	before := map[int]string{}
	for _, n := range nodes {
		env, err := c.WaitSubnetEnv(n, 0)
		if err != nil {
			t.Fatal(err)
		}
		before[n] = leaseKeyOf(env)
	}
	killed = time.Now()
	for _, n := range nodes {
		ds[n].Kill()
	}
	for _, n := range nodes {
		if err := os.Remove(c.SubnetFile(n)); err != nil {
			t.Fatal(err)
		}
		if err := ds[n].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		env, err := c.WaitSubnetEnv(n, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if leaseKeyOf(env) != before[n] {
			t.Fatalf("node %d subnets after restart %s, want %s", n, leaseKeyOf(env), before[n])
		}
	}
	return killed, time.Since(killed)
}

// vtepMAC returns flannel.1's MAC on node n.
func vtepMAC(t *testing.T, c *cluster.Cluster, n int) string {
	t.Helper()
	out := ipOut(t, c, n, "-o", "link", "show", "flannel.1")
	i := strings.Index(out, "link/ether ")
	if i < 0 {
		t.Fatalf("no MAC in %q", out)
	}
	return strings.Fields(out[i:])[1]
}

// TestRestartKeepsTraffic: SIGKILL of weftd on both nodes and an immediate restart, with
// host-gw and vxlan, keep the subnet (and the VTEP MAC) and lose no packet of a 20 ms ping
// between pods: the kernel state stays in place while no weftd runs, and the new one adopts
// it without tearing anything down.
func TestRestartKeepsTraffic(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		state        func(t *testing.T, c *cluster.Cluster, n int) string
	}{
		{"host-gw", `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`, nil},
		{"vxlan", `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`, vtepMAC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster.New(t, cluster.Options{Nodes: 2})
			c.PutConfig(tc.config)
			ds, pods, _ := startNodes(t, c, []int{0, 1})
			pingAll(t, pods, 10*time.Second)
			before := map[int]string{}
			if tc.state != nil {
				for n := range ds {
					before[n] = tc.state(t, c, n)
				}
			}
			const interval = 20 * time.Millisecond
			ping := startStreamPing(t, pods[0], pods[1].IP, interval, int(time.Minute/interval))
			time.Sleep(time.Second)
			_, ready := killAndRestart(t, c, ds, []int{0, 1})
			for n := range ds {
				if err := ds[n].WaitLog("Wrote subnet file", 5*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(time.Second) // traffic after the new weftds took over
			res := ping.Stop(t)
			t.Logf("%s: both weftds SIGKILLed and restarted, subnet files rewritten after %s; ping every %s: %s",
				tc.name, ready.Round(time.Millisecond), interval, res.Summary())
			if res.LostCount() != 0 || res.Err != nil {
				t.Errorf("lost pod packets across the restart: %s (%v) %v", res.Summary(), res.Err, res.Lost)
			}
			if tc.state != nil {
				for n := range ds {
					if after := tc.state(t, c, n); after != before[n] {
						t.Errorf("node %d backend state changed across the restart: %q -> %q", n, before[n], after)
					}
				}
			}
		})
	}
}

// TestRestartUDP: the udp backend forwards in userspace, so pod traffic stops while weftd
// is down; the TUN device flannel0 is not persistent (as flanneld's, so that flanneld can
// take the node over: TestRollbackUDPToFlanneld), so it goes with the killed process and
// the new one creates it again. The test checks that pod traffic flows again through the
// new processes and logs the forwarding gap across the SIGKILL and the new process's
// start-up steps from its log timestamps.
func TestRestartUDP(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`)
	ds, pods, _ := startNodes(t, c, []int{0, 1})
	pingAll(t, pods, 10*time.Second)

	const interval = 5 * time.Millisecond // finer than the 20 ms of the other tests: this one measures a gap
	ping := startStreamPing(t, pods[0], pods[1].IP, interval, int(time.Minute/interval))
	time.Sleep(time.Second)
	killed, ready := killAndRestart(t, c, ds, []int{0, 1})
	// A reply after both new weftds wrote their subnet files went through the new
	// processes: forwarding resumed. 30 s bounds a hang only; the gap is logged.
	ping.WaitReplyAfter(t, killed.Add(ready), 30*time.Second)
	res := ping.Stop(t)

	// The gap: the longest between two replies across the kill (replies in flight at the
	// kill may arrive just after it).
	gap, end := res.LongestGapAfter(killed)
	if end.IsZero() {
		t.Fatalf("no replies after the restart: %s\n%s", res.Summary(), res.Output)
	}
	t.Logf("udp: both weftds SIGKILLed and restarted; longest gap between replies %s, forwarding again %s after the kill (%d requests lost at %s intervals); subnet files after %s",
		gap.Round(time.Millisecond), end.Sub(killed).Round(time.Millisecond), res.LostCount(), interval, ready.Round(time.Millisecond))
	for n := range ds {
		t.Logf("node %d start-up steps (since the kill):\n%s", n, startupSteps(ds[n].RunLog(), killed))
		if r := routeTo(t, c, n, "10.244.0.0/16"); !strings.Contains(r, "dev flannel0") {
			t.Errorf("node %d route for the Network after the restart: %q, want dev flannel0", n, r)
		}
	}
	if gap > 100*time.Millisecond {
		t.Logf("NOTE: the udp forwarding gap %s exceeds the 100 ms target", gap.Round(time.Millisecond))
	}
}

var klogTime = regexp.MustCompile(`^[IWE]\d{4} (\d\d:\d\d:\d\d\.\d{6}) +\d+ [^\]]+\] "([^"]*)"`)

// startupSteps renders the first lines of a weftd run as offsets from since.
func startupSteps(log string, since time.Time) string {
	var lines []string
	for _, line := range strings.Split(log, "\n") {
		m := klogTime.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		tod, err := time.ParseInLocation("15:04:05.000000", m[1], time.Local)
		if err != nil {
			continue
		}
		at := time.Date(since.Year(), since.Month(), since.Day(), tod.Hour(), tod.Minute(), tod.Second(), tod.Nanosecond(), time.Local)
		lines = append(lines, fmt.Sprintf("  %+8.1f ms  %s", float64(at.Sub(since).Microseconds())/1000, m[2]))
		if len(lines) == 25 {
			break
		}
	}
	return strings.Join(lines, "\n")
}

// TestBackendChangeCleansUp: weftd restarted after the network config's Backend.Type
// changed removes what the previous backend left: vxlan -> host-gw deletes flannel.1 (and
// with it every route, neighbour and fdb entry through it) and the vxlan INPUT rules;
// host-gw -> udp deletes the host-gw routes, which would otherwise be more specific than
// udp's one route for the Network. Pods talk again after each change.
func TestBackendChangeCleansUp(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	ds, pods, envs := startNodes(t, c, []int{0, 1})
	pingAll(t, pods, 10*time.Second)
	peerOf := map[int]int{0: 1, 1: 0}

	change := func(config string) {
		t.Helper()
		for n := range ds {
			ds[n].Kill()
		}
		c.PutConfig(config)
		killAndRestartStopped(t, c, ds)
	}

	change(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	for n := range ds {
		if err := ds[n].WaitLog("Removed a device left by another backend", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if out, err := c.Exec(c.NodeNS(n), "ip", "link", "show", "flannel.1"); err == nil {
			t.Errorf("node %d still has flannel.1 after vxlan -> host-gw: %s", n, out)
		}
		if out := ipOut(t, c, n, "-4", "route", "show"); strings.Contains(out, "flannel") {
			t.Errorf("node %d has routes through a vxlan device:\n%s", n, out)
		}
		peer := envs[peerOf[n]].Subnet.Masked().String()
		eventually(t, 5*time.Second, fmt.Sprintf("node %d host-gw route", n), func() error {
			if r := routeTo(t, c, n, peer); !strings.Contains(r, "via "+c.NodeIP(peerOf[n]).String()+" dev eth0") {
				return fmt.Errorf("route to %s: %q", peer, r)
			}
			return nil
		})
		eventually(t, 5*time.Second, fmt.Sprintf("node %d drops the vxlan INPUT rules", n), func() error {
			if out, _ := c.Exec(c.NodeNS(n), "iptables", "-S"); strings.Contains(out, "8472") {
				return fmt.Errorf("rules for 8472 remain:\n%s", out)
			}
			return nil
		})
	}
	pingAll(t, pods, 10*time.Second)

	change(`{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`)
	for n := range ds {
		if err := ds[n].WaitLog("Removed a host-gw route left by another backend", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		peer := envs[peerOf[n]].Subnet.Masked().String()
		if r := routeTo(t, c, n, peer); r != "" {
			t.Errorf("node %d keeps the host-gw route %q after host-gw -> udp", n, r)
		}
		if r := routeTo(t, c, n, "10.244.0.0/16"); !strings.Contains(r, "dev flannel0") {
			t.Errorf("node %d route for the Network: %q, want dev flannel0", n, r)
		}
	}
	pingAll(t, pods, 10*time.Second)
}

// killAndRestartStopped starts the (killed) weftds again after removing their subnet files,
// and waits for the files to be written again.
func killAndRestartStopped(t *testing.T, c *cluster.Cluster, ds map[int]*cluster.Weftd) {
	t.Helper()
	for n := range ds {
		if err := os.Remove(c.SubnetFile(n)); err != nil {
			t.Fatal(err)
		}
		if err := ds[n].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for n := range ds {
		if _, err := c.WaitSubnetEnv(n, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}
