package main

import (
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// Public IPs of TestPublicIPNotInterfaceAddress, both different from the node's eth0
// address: node 0's is a second address on eth0; node 1's sits on a second interface (a
// veth), and the other nodes route it through node 1's eth0 (as to a service address).
var (
	secondAddrIP = netip.MustParseAddr("192.0.2.200")
	otherIfaceIP = netip.MustParseAddr("198.51.100.50")
)

// TestPublicIPNotInterfaceAddress: with --iface eth0 and a --public-ip that an interface of
// the node holds but that is not eth0's address, tunnel traffic is sent from the public IP,
// so peers' WEFT-INPUT (--restrict-tunnel-port, the default), which admits lease public IPs
// only, lets it in: pods on all three nodes ping each other and checked TCP transfers pass,
// and no tunnel packet is dropped meanwhile. Each node logs what it does.
func TestPublicIPNotInterfaceAddress(t *testing.T) {
	for _, bc := range []struct{ name, config string }{
		{"vxlan", `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`},
		{"udp", `{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`},
		{"gre-userspace", greConfig("userspace")},
		{"gre-kernel", greConfig("kernel")},
	} {
		t.Run(bc.name, func(t *testing.T) {
			if bc.name == "gre-kernel" {
				if err := kernelGRE(t); err != nil {
					t.Skipf("kernel has no GRE support (ip_gre): %v", err)
				}
			}
			runPublicIP(t, bc.config)
		})
	}
}

func runPublicIP(t *testing.T, config string) {
	c := cluster.New(t, cluster.Options{Nodes: 3})
	c.PutConfig(config)
	ip := func(n int, args ...string) {
		t.Helper()
		if out, err := c.Exec(c.NodeNS(n), append([]string{"ip"}, args...)...); err != nil {
			t.Fatalf("node %d: ip %v: %v\n%s", n, args, err, out)
		}
	}
	ip(0, "addr", "add", secondAddrIP.String()+"/24", "dev", "eth0")
	// A veth pair inside node 1 (the kernel here may have no dummy driver): pub0 holds the
	// address, its peer end only keeps it up.
	ip(1, "link", "add", "pub0", "type", "veth", "peer", "name", "pub0p")
	ip(1, "addr", "add", otherIfaceIP.String()+"/32", "dev", "pub0")
	ip(1, "link", "set", "pub0p", "up")
	ip(1, "link", "set", "pub0", "up")
	for _, n := range []int{0, 2} {
		ip(n, "route", "add", otherIfaceIP.String()+"/32", "via", c.NodeIP(1).String(), "dev", "eth0")
	}

	public := map[int]netip.Addr{0: secondAddrIP, 1: otherIfaceIP, 2: c.NodeIP(2)}
	ds, pods := map[int]*cluster.Weftd{}, map[int]*cluster.Pod{}
	for n, pub := range public {
		ds[n] = c.StartNode(n, "--public-ip", pub.String())
	}
	for n := range public {
		if _, err := c.WaitSubnetEnv(n, 20*time.Second); err != nil {
			t.Fatalf("node %d: %v", n, err)
		}
		pods[n] = c.AddPod(n)
	}
	for n, want := range map[int]string{
		0: "Public IP 192.0.2.200 is another address of eth0 (interface address 192.0.2.1); tunnel traffic is sent from 192.0.2.200",
		1: "Public IP 198.51.100.50 is not on eth0 but on pub0; tunnel traffic is sent from 198.51.100.50",
	} {
		if err := ds[n].WaitLog(want, 5*time.Second); err != nil {
			t.Errorf("node %d: %v", n, err)
		}
	}
	// Each node admits exactly the other nodes' public IPs, none of them eth0 addresses
	// but node 2's.
	for n := range public {
		var others []netip.Addr
		for m, pub := range public {
			if m != n {
				others = append(others, pub)
			}
		}
		waitTunnelSources(t, c, n, others)
	}

	pingAll(t, pods, 15*time.Second)
	before := map[int]int{}
	for n := range public {
		before[n] = dropCount(t, c, n)
	}
	for _, pair := range [][2]int{{0, 1}, {1, 0}, {0, 2}, {2, 1}} {
		if err := cluster.TCPTransfer(pods[pair[0]], pods[pair[1]], 4<<20, 30*time.Second); err != nil {
			t.Errorf("node %d -> node %d: %v", pair[0], pair[1], err)
		}
	}
	for i, from := range pods {
		for j, to := range pods {
			if i != j {
				if err := from.Ping(to.IP, 3, 5*time.Second); err != nil {
					t.Errorf("pod on node %d -> pod on node %d: %v", i, j, err)
				}
			}
		}
	}
	for n := range public {
		if d := dropCount(t, c, n) - before[n]; d != 0 {
			t.Errorf("node %d: WEFT-INPUT dropped %d tunnel packets during the transfers", n, d)
		}
	}
	if t.Failed() {
		for n := range public {
			out, _ := c.Exec(c.NodeNS(n), "iptables", "-L", "WEFT-INPUT", "-v", "-n", "-x")
			t.Logf("node %d WEFT-INPUT:\n%s", n, out)
		}
	}
}
