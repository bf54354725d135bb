package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/test/cluster"
)

// overlayCase describes one encapsulating backend for the shared end-to-end walk.
type overlayCase struct {
	config  string // the network config
	mtuLoss int    // underlay MTU - FLANNEL_MTU
	// peerState returns what node n has programmed for the peer (route, neighbour, fdb
	// or peer entry) as text; "" means nothing.
	peerState func(t *testing.T, c *cluster.Cluster, n int, peer subnetenv.Env, peerIP netip.Addr) string
	// leaseCheck checks a node's lease value.
	leaseCheck func(t *testing.T, value string, nodeIP netip.Addr)
	// restartCheck returns backend state that must survive a restart (e.g. the VTEP MAC).
	restartState func(t *testing.T, c *cluster.Cluster, n int) string
}

// runOverlay is the end-to-end walk every overlay backend must pass in a namespace cluster
// with real weftd binaries and a real etcd: reachability, a 50 MB transfer, MTU-sized DF
// pings, leave, join and restart.
func runOverlay(t *testing.T, oc overlayCase) {
	c := cluster.New(t, cluster.Options{Nodes: 4})
	c.PutConfig(oc.config)
	ds, pods, envs := startNodes(t, c, []int{0, 1, 2})
	for i, env := range envs {
		if env.MTU != 1500-oc.mtuLoss {
			t.Errorf("node %d FLANNEL_MTU %d, want %d", i, env.MTU, 1500-oc.mtuLoss)
		}
		oc.leaseCheck(t, etcdGet(t, c, leaseKey(env)), c.NodeIP(i))
	}
	pingAll(t, pods, 10*time.Second)

	t.Run("50 MB transfer", func(t *testing.T) {
		if err := cluster.TCPTransfer(pods[0], pods[2], 50<<20, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("MTU-sized DF ping passes, one byte more is refused", func(t *testing.T) {
		mtu := envs[0].MTU
		res, err := pods[0].PingWith(pods[1].IP, 2, 5*time.Second, cluster.PingOptions{Size: mtu - 28, DF: true, Interval: 200 * time.Millisecond})
		if err != nil || res.Received != 2 {
			t.Fatalf("DF ping of %d bytes (IP packet = FLANNEL_MTU): %+v %v", mtu-28, res, err)
		}
		res, err = pods[0].PingWith(pods[1].IP, 1, time.Second, cluster.PingOptions{Size: mtu - 27, DF: true})
		if !res.TooLong {
			t.Fatalf("DF ping one byte over FLANNEL_MTU: want \"message too long\", got %+v %v", res, err)
		}
	})

	t.Run("leave", func(t *testing.T) {
		if oc.peerState(t, c, 0, envs[2], c.NodeIP(2)) == "" {
			t.Fatal("node 0 has no state for peer 2 before it leaves")
		}
		if err := ds[2].Stop(); err != nil {
			t.Fatal(err)
		}
		etcdDelete(t, c, leaseKey(envs[2]))
		for _, n := range []int{0, 1} {
			eventually(t, 5*time.Second, fmt.Sprintf("node %d forgets node 2", n), func() error {
				if s := oc.peerState(t, c, n, envs[2], c.NodeIP(2)); s != "" {
					return fmt.Errorf("still has: %s", s)
				}
				return nil
			})
		}
		delete(pods, 2)
	})

	t.Run("join", func(t *testing.T) {
		d3, p3, e3 := startNodes(t, c, []int{3})
		ds[3], pods[3], envs[3] = d3[3], p3[3], e3[3]
		pingAll(t, pods, 10*time.Second)
	})

	t.Run("restart keeps subnet and backend state, pods keep talking", func(t *testing.T) {
		before := ""
		if oc.restartState != nil {
			before = oc.restartState(t, c, 1)
		}
		ds[1].Kill()
		if err := os.Remove(c.SubnetFile(1)); err != nil {
			t.Fatal(err)
		}
		if err := ds[1].Start(); err != nil {
			t.Fatal(err)
		}
		env, err := c.WaitSubnetEnv(1, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if env.Subnet != envs[1].Subnet {
			t.Fatalf("subnet after restart %s, want %s", env.Subnet, envs[1].Subnet)
		}
		if oc.restartState != nil {
			if after := oc.restartState(t, c, 1); after != before {
				t.Fatalf("backend state changed across restart: %q -> %q", before, after)
			}
		}
		pingAll(t, pods, 10*time.Second)
	})
}

func ipOut(t *testing.T, c *cluster.Cluster, n int, args ...string) string {
	t.Helper()
	out, err := c.Exec(c.NodeNS(n), append([]string{"ip"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func TestVXLAN(t *testing.T) {
	runOverlay(t, overlayCase{
		config:  `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`,
		mtuLoss: 50,
		leaseCheck: func(t *testing.T, v string, ip netip.Addr) {
			prefix := fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"`, ip)
			if !strings.HasPrefix(v, prefix) || !strings.HasSuffix(v, `"}}`) {
				t.Errorf("vxlan lease %s, want flanneld's form %s…\"}}", v, prefix)
			}
		},
		peerState: func(t *testing.T, c *cluster.Cluster, n int, peer subnetenv.Env, _ netip.Addr) string {
			sn := peer.Subnet.Masked()
			var parts []string
			if r := ipOut(t, c, n, "-4", "route", "show", "exact", sn.String()); r != "" {
				parts = append(parts, "route "+r)
			}
			if nb := ipOut(t, c, n, "-4", "neigh", "show", sn.Addr().String(), "dev", "flannel.1"); nb != "" {
				parts = append(parts, "neigh "+nb)
			}
			if fdb := ipOut(t, c, n, "link", "show", "flannel.1"); fdb == "" {
				t.Fatal("no flannel.1")
			}
			out, err := c.Exec(c.NodeNS(n), "bridge", "fdb", "show", "dev", "flannel.1")
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "dst "+peerIPOf(c, peer)) {
					parts = append(parts, "fdb "+line)
				}
			}
			return strings.Join(parts, "; ")
		},
		restartState: func(t *testing.T, c *cluster.Cluster, n int) string {
			out := ipOut(t, c, n, "-o", "link", "show", "flannel.1")
			i := strings.Index(out, "link/ether ")
			if i < 0 {
				t.Fatalf("no MAC in %q", out)
			}
			return strings.Fields(out[i:])[1]
		},
	})
}

// peerIPOf finds the node address whose subnet file names this subnet.
func peerIPOf(c *cluster.Cluster, peer subnetenv.Env) string {
	for i := 0; i < c.NodeCount(); i++ {
		if env, err := subnetenv.Read(c.SubnetFile(i)); err == nil && env.Subnet == peer.Subnet {
			return c.NodeIP(i).String()
		}
	}
	return "?"
}

func TestUDP(t *testing.T) {
	runOverlay(t, overlayCase{
		config:  `{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`,
		mtuLoss: 28,
		leaseCheck: func(t *testing.T, v string, ip netip.Addr) {
			if want := fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null}`, ip); v != want {
				t.Errorf("udp lease %s, want flanneld's %s", v, want)
			}
		},
		// The peer table is in userspace: a node that knows the peer forwards to it; one
		// that does not answers "net unreachable" for an address in the Network.
		peerState: func(t *testing.T, c *cluster.Cluster, n int, peer subnetenv.Env, _ netip.Addr) string {
			dst := peer.Subnet.Addr().Next() // the peer's cni0 address, x.y.z.2 minus one
			out, _ := c.Exec(c.NodeNS(n), "ping", "-c", "1", "-W", "1", dst.String())
			if strings.Contains(out, "Unreachable") {
				return ""
			}
			return "peer entry (ping: " + strings.TrimSpace(out) + ")"
		},
		restartState: func(t *testing.T, c *cluster.Cluster, n int) string {
			return ipOut(t, c, n, "-4", "route", "show", "dev", "flannel0")
		},
	})
}
