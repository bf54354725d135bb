package main

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/test/cluster"
)

// TestHostGW runs real weftd binaries with the host-gw backend in a namespace cluster and
// walks through a node's life: start, join, leave, restart, old subnet file, lost lease,
// broken config.
func TestHostGW(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 4})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	ds, pods, envs := startNodes(t, c, []int{0, 1, 2})
	for i, env := range envs {
		if env.MTU != 1500 || env.Network.String() != "10.244.0.0/16" || env.IPMasq {
			t.Errorf("node %d subnet.env: %+v", i, env)
		}
	}
	pingAll(t, pods, 10*time.Second)
	if err := cluster.TCPTransfer(pods[0], pods[1], 16<<20, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// The lease is stored exactly as flanneld writes it.
	if got, want := etcdGet(t, c, leaseKey(envs[0])), fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null,"BackendType":"host-gw"}`, c.NodeIP(0)); got != want {
		t.Errorf("lease value %s, want %s", got, want)
	}

	t.Run("join", func(t *testing.T) {
		d3, p3, e3 := startNodes(t, c, []int{3})
		ds[3], pods[3], envs[3] = d3[3], p3[3], e3[3]
		pingAll(t, pods, 10*time.Second)
	})

	t.Run("leave", func(t *testing.T) {
		if err := ds[2].Stop(); err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
		gone := envs[2].Subnet.Masked().String()
		if routeTo(t, c, 0, gone) == "" {
			t.Fatal("route removed by a clean stop: the lease is kept, so the route must stay")
		}
		etcdDelete(t, c, leaseKey(envs[2]))
		for _, n := range []int{0, 1, 3} {
			eventually(t, 5*time.Second, fmt.Sprintf("node %d drops the route to %s", n, gone), func() error {
				if r := routeTo(t, c, n, gone); r != "" {
					return fmt.Errorf("still there: %s", r)
				}
				return nil
			})
		}
		delete(pods, 2)
	})

	t.Run("restart after SIGKILL keeps the subnet", func(t *testing.T) {
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
		pingAll(t, pods, 10*time.Second)
	})

	t.Run("old subnet file is taken back when free", func(t *testing.T) {
		old := subnetenv.Env{Network: envs[2].Network, Subnet: mustPrefix("10.244.200.1/24"), MTU: 1500}
		if err := subnetenv.Write(c.SubnetFile(2), old); err != nil {
			t.Fatal(err)
		}
		if err := ds[2].Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "node 2 takes 10.244.200.0/24", func() error {
			env, err := subnetenv.Read(c.SubnetFile(2))
			if err != nil || env.Subnet != old.Subnet || etcdGet(t, c, "subnets/10.244.200.0-24") == "" {
				return fmt.Errorf("subnet file %+v (%v)", env, err)
			}
			return nil
		})
	})

	t.Run("own lease deleted while running", func(t *testing.T) {
		if err := os.Remove(c.SubnetFile(0)); err != nil {
			t.Fatal(err)
		}
		etcdDelete(t, c, leaseKey(envs[0]))
		if err := ds[0].WaitLog("MY LEASE IS GONE", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		env, err := c.WaitSubnetEnv(0, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if env.Subnet != envs[0].Subnet || etcdGet(t, c, leaseKey(envs[0])) == "" {
			t.Fatalf("re-acquired %s (lease %q), want %s", env.Subnet, etcdGet(t, c, leaseKey(envs[0])), envs[0].Subnet)
		}
		pingAll(t, pods, 10*time.Second)
	})

	t.Run("broken config leaves the data plane alone", func(t *testing.T) {
		c.PutConfig(`{"Network":"10.244.0.0/16","SubnetLen":31,"Backend":{"Type":"host-gw"}}`)
		if err := ds[3].WaitLog("network config in etcd is now invalid", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		c.PutConfig(`not json`)
		time.Sleep(500 * time.Millisecond)
		for n, d := range ds {
			if n != 2 && !d.Running() {
				t.Fatalf("node %d weftd exited on a broken config:\n%s", n, d.Log())
			}
		}
		pingAll(t, pods, 5*time.Second)
	})
}

// TestWaitsForConfig: weftd started before any config (then with invalid ones: a bad value,
// an unknown backend, a backend that cannot carry the network's families) waits, says why
// once, and starts as soon as a valid config appears.
func TestWaitsForConfig(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 1})
	d := c.StartNode(0)
	if err := d.WaitLog("No network config in etcd at /coreos.com/network/config", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.PutConfig(`{"Network":"10.244.0.0/16","SubnetMin":"10.244.300.0","Backend":{"Type":"host-gw"}}`)
	if err := d.WaitLog(`SubnetMin \"10.244.300.0\" is not an IPv4 address`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"nope"}}`)
	if err := d.WaitLog(`Backend.Type \"nope\" is not a known backend`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Valid keys, but udp carries IPv4 only: refused by the config check, not by the
	// backend once weftd has started it (weftd would exit then).
	c.PutConfig(`{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10::/48","Backend":{"Type":"udp"}}`)
	if err := d.WaitLog(`Backend (Type \"udp\"): the udp backend carries IPv4 only, as flanneld's: the network config sets EnableIPv6=true`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if !d.Running() {
		t.Fatalf("weftd exited on a udp config with IPv6:\n%s", d.Log())
	}
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	if _, err := c.WaitSubnetEnv(0, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if !d.Running() {
		t.Fatal("weftd exited")
	}
}
