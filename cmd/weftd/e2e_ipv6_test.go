package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/cluster"
)

// ipv6Network is the IPv6 pod network of the IPv6 end-to-end tests.
const ipv6Network = "fd00:10:244::/56"

// ipv6Families are the two ways a network runs IPv6: with IPv4 and alone. Each config
// takes the backend object.
var ipv6Families = []struct {
	name, config string
	v4           bool
}{
	{"dual-stack", `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"` + ipv6Network + `","Backend":%s}`, true},
	{"ipv6-only", `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"` + ipv6Network + `","Backend":%s}`, false},
}

// ipv6Backends are the backends that carry IPv6, with whether their state lives in the
// kernel (and so survives a SIGKILL of weftd).
var ipv6Backends = []struct {
	name, backend string
	kernel        bool
	// netRoute: one route to the whole IPv6 network through the backend's device (the
	// forwarder picks the peer), instead of one route per peer.
	netRoute bool
	// v6only: the backend runs IPv6-only networks (gre in userspace, with GRE over the
	// IPv6 underlay).
	v6only bool
}{
	{"vxlan", `{"Type":"vxlan"}`, true, false, true},
	{"host-gw", `{"Type":"host-gw"}`, true, false, true},
	{"gre-userspace", `{"Type":"gre","Mode":"userspace"}`, false, true, true},
}

// leaseKeyOf is the etcd key (below the prefix) of the lease a subnet file describes.
func leaseKeyOf(env subnetenv.Env) string {
	var sn, sn6 netip.Prefix
	if env.Subnet.IsValid() {
		sn = env.Subnet.Masked()
	}
	if env.IPv6Subnet.IsValid() {
		sn6 = env.IPv6Subnet.Masked()
	}
	return "subnets/" + subnet.LeaseKey(sn, sn6)
}

// route6To returns the node's main-table IPv6 route to dst ("" when none).
func route6To(t *testing.T, c *cluster.Cluster, node int, dst string) string {
	t.Helper()
	return ipOut(t, c, node, "-6", "route", "show", "exact", dst)
}

// TestIPv6 runs dual-stack and IPv6-only networks with every backend that carries IPv6, on
// an underlay with both families: the subnet file and the lease are flanneld's, pods ping
// over each family the network runs and move 4 MiB over IPv6 (SHA-256 checked), a deleted
// IPv6 route comes back, and (kernel backends) a SIGKILL restart of both weftds loses no
// IPv6 ping.
func TestIPv6(t *testing.T) {
	for _, fam := range ipv6Families {
		for _, be := range ipv6Backends {
			if !fam.v4 && !be.v6only {
				continue // refused by the backend, with an error its unit test checks
			}
			t.Run(fam.name+"/"+be.name, func(t *testing.T) {
				c := cluster.New(t, cluster.Options{Nodes: 2, IPv6: true})
				c.PutConfig(fmt.Sprintf(fam.config, be.backend))
				ds, pods, envs := startNodes(t, c, []int{0, 1})
				for i, env := range envs {
					if env.IPv6Network.String() != ipv6Network || env.IPv6Subnet.Bits() != 64 ||
						!mustPrefix(ipv6Network).Contains(env.IPv6Subnet.Addr()) || env.IPv6Subnet.Addr() != env.IPv6Subnet.Masked().Addr().Next() {
						t.Errorf("node %d subnet.env IPv6: %+v", i, env)
					}
					if env.Subnet.IsValid() != fam.v4 || env.Network.IsValid() != fam.v4 {
						t.Errorf("node %d subnet.env IPv4 part %s %s, want one only in a dual-stack network", i, env.Network, env.Subnet)
					}
				}
				checkIPv6Lease(t, c, 0, envs[0], fam.v4)

				for i, from := range pods {
					for j, to := range pods {
						if i == j {
							continue
						}
						eventually(t, 15*time.Second, fmt.Sprintf("pod %d pings pod %d over IPv6", i, j), func() error {
							return from.V6().Ping(to.IPv6, 1, 2*time.Second)
						})
						if fam.v4 {
							eventually(t, 10*time.Second, fmt.Sprintf("pod %d pings pod %d over IPv4", i, j), func() error {
								return from.Ping(to.IP, 1, 2*time.Second)
							})
						}
					}
				}
				if err := cluster.TCPTransfer(pods[0].V6(), pods[1].V6(), 4<<20, 30*time.Second); err != nil {
					t.Fatal(err)
				}

				// A deleted route to the peer's IPv6 subnet (or to the network, for a
				// backend with one route for all peers) is put back.
				peer6 := envs[1].IPv6Subnet.Masked().String()
				if be.netRoute {
					peer6 = ipv6Network
				}
				before := route6To(t, c, 0, peer6)
				if before == "" {
					t.Fatalf("node 0 has no IPv6 route to %s", peer6)
				}
				ipOut(t, c, 0, "-6", "route", "del", peer6)
				deleted := time.Now()
				eventually(t, 5*time.Second, "the deleted IPv6 route comes back", func() error {
					if r := route6To(t, c, 0, peer6); r == "" {
						return fmt.Errorf("no route to %s", peer6)
					}
					return nil
				})
				t.Logf("%s %s: deleted IPv6 route %q back after %s", fam.name, be.name, before, time.Since(deleted).Round(time.Millisecond))
				eventually(t, 5*time.Second, "pods ping over IPv6 after the repair", func() error {
					return pods[0].V6().Ping(pods[1].IPv6, 1, 2*time.Second)
				})

				if !be.kernel {
					return
				}
				const interval = 20 * time.Millisecond
				ping := startStreamPing(t, pods[0].V6(), pods[1].IPv6, interval, int(time.Minute/interval))
				time.Sleep(time.Second)
				_, ready := killAndRestart(t, c, ds, []int{0, 1})
				for n := range ds {
					if err := ds[n].WaitLog("Wrote subnet file", 5*time.Second); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(time.Second)
				res := ping.Stop(t)
				t.Logf("%s %s: both weftds SIGKILLed and restarted (subnet files after %s); IPv6 ping every %s: %s",
					fam.name, be.name, ready.Round(time.Millisecond), interval, res.Summary())
				if res.LostCount() != 0 || res.Err != nil {
					t.Errorf("lost IPv6 pod packets across the restart: %s (%v) %v", res.Summary(), res.Err, res.Lost)
				}
			})
		}
	}
}

// checkIPv6Lease checks node n's lease in etcd: flanneld's key, and a value with the
// node's IPv6 underlay address as PublicIPv6 and, without IPv4, "0.0.0.0" as PublicIP.
func checkIPv6Lease(t *testing.T, c *cluster.Cluster, n int, env subnetenv.Env, v4 bool) {
	t.Helper()
	key := leaseKeyOf(env)
	if !strings.Contains(key, "&fd00:10:244:") || (!v4 && !strings.HasPrefix(key, "subnets/0.0.0.0-0&")) {
		t.Errorf("lease key %q is not flanneld's for this network", key)
	}
	raw := etcdGet(t, c, key)
	var v struct {
		PublicIP, PublicIPv6 string
		BackendType          string
		BackendData          json.RawMessage
		BackendV6Data        json.RawMessage
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatalf("lease %s = %q: %v", key, raw, err)
	}
	wantIP := "0.0.0.0"
	if v4 {
		wantIP = c.NodeIP(n).String()
	}
	if v.PublicIP != wantIP || v.PublicIPv6 != c.NodeIPv6(n).String() || !strings.HasPrefix(raw, `{"PublicIP":"`+wantIP+`","PublicIPv6":"`) {
		t.Errorf("lease %s = %s, want PublicIP %s and PublicIPv6 %s first, as flanneld writes them", key, raw, wantIP, c.NodeIPv6(n))
	}
	if v.BackendType == "vxlan" && (len(v.BackendV6Data) == 0 || (len(v.BackendData) != 0) != v4) {
		t.Errorf("vxlan lease %s = %s: want BackendV6Data, and BackendData only with IPv4", key, raw)
	}
	t.Logf("lease %s = %s", key, raw)
}

// TestIPv6FlanneldLeases: a dual-stack host-gw cluster where a third node's lease is
// written as flanneld writes it (the test programs that node by hand, as flanneld would):
// the weftd nodes route both of its subnets to its addresses, and their pods reach its pod
// over IPv4 and IPv6.
func TestIPv6FlanneldLeases(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 3, IPv6: true})
	c.PutConfig(fmt.Sprintf(ipv6Families[0].config, `{"Type":"host-gw"}`))
	_, pods, envs := startNodes(t, c, []int{0, 1})

	// Node 2 is "flanneld": its lease, byte for byte as flanneld's host-gw writes it.
	sn, sn6 := mustPrefix("10.244.77.0/24"), mustPrefix("fd00:10:244:77::/64")
	value := fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":"%s","BackendType":"host-gw"}`, c.NodeIP(2), c.NodeIPv6(2))
	etcdPut(t, c, "subnets/"+subnet.LeaseKey(sn, sn6), value)
	flannel := subnetenv.Env{Network: envs[0].Network, Subnet: netip.PrefixFrom(sn.Addr().Next(), 24),
		IPv6Network: envs[0].IPv6Network, IPv6Subnet: netip.PrefixFrom(sn6.Addr().Next(), 64), MTU: 1500}
	if err := subnetenv.Write(c.SubnetFile(2), flannel); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1} {
		ipOut(t, c, 2, "route", "add", envs[n].Subnet.Masked().String(), "via", c.NodeIP(n).String())
		ipOut(t, c, 2, "-6", "route", "add", envs[n].IPv6Subnet.Masked().String(), "via", c.NodeIPv6(n).String())
	}
	p2 := c.AddPod(2)
	for _, n := range []int{0, 1} {
		eventually(t, 10*time.Second, fmt.Sprintf("node %d routes the flanneld node's subnets", n), func() error {
			r4, r6 := routeTo(t, c, n, sn.String()), route6To(t, c, n, sn6.String())
			if !strings.Contains(r4, "via "+c.NodeIP(2).String()) || !strings.Contains(r6, "via "+c.NodeIPv6(2).String()) {
				return fmt.Errorf("routes %q and %q", r4, r6)
			}
			return nil
		})
		eventually(t, 10*time.Second, fmt.Sprintf("pod %d reaches the flanneld node's pod over both families", n), func() error {
			if err := pods[n].Ping(p2.IP, 1, 2*time.Second); err != nil {
				return err
			}
			return pods[n].V6().Ping(p2.IPv6, 1, 2*time.Second)
		})
	}
	if err := cluster.TCPTransfer(p2.V6(), pods[0].V6(), 1<<20, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestIPv6FlanneldLeasesVXLAN: a dual-stack vxlan cluster and a lease written as flanneld's
// vxlan writes it (a VTEP MAC per family): each weftd node programs both of its families,
// the IPv6 side on flannel-v6.1 (route, neighbour, FDB entry to its PublicIPv6).
func TestIPv6FlanneldLeasesVXLAN(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 3, IPv6: true})
	c.PutConfig(fmt.Sprintf(ipv6Families[0].config, `{"Type":"vxlan"}`))
	_, pods, _ := startNodes(t, c, []int{0, 1})
	pingAll(t, pods, 10*time.Second)

	sn, sn6 := mustPrefix("10.244.77.0/24"), mustPrefix("fd00:10:244:77::/64")
	const mac4, mac6 = "0e:11:22:33:44:55", "0e:11:22:33:44:66"
	value := fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":"%s","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"%s"},"BackendV6Data":{"VNI":1,"VtepMAC":"%s"}}`,
		c.NodeIP(2), c.NodeIPv6(2), mac4, mac6)
	etcdPut(t, c, "subnets/"+subnet.LeaseKey(sn, sn6), value)
	for _, n := range []int{0, 1} {
		eventually(t, 10*time.Second, fmt.Sprintf("node %d programs both families of the flanneld lease", n), func() error {
			checks := []struct{ what, out, want string }{
				{"IPv4 route", routeTo(t, c, n, sn.String()), "via " + sn.Addr().String() + " dev flannel.1"},
				{"IPv6 route", route6To(t, c, n, sn6.String()), "via " + sn6.Addr().String() + " dev flannel-v6.1"},
				{"IPv6 neighbour", ipOut(t, c, n, "-6", "neigh", "show", sn6.Addr().String(), "dev", "flannel-v6.1"), "lladdr " + mac6},
				{"IPv6 FDB entry", execOut(t, c, n, "bridge", "fdb", "show", "dev", "flannel-v6.1"), mac6 + " dst " + c.NodeIPv6(2).String()},
			}
			for _, ck := range checks {
				if !strings.Contains(ck.out, ck.want) {
					return fmt.Errorf("%s: %q lacks %q", ck.what, ck.out, ck.want)
				}
			}
			return nil
		})
	}
}

// execOut runs a command in node n's namespace and returns its trimmed output.
func execOut(t *testing.T, c *cluster.Cluster, n int, argv ...string) string {
	t.Helper()
	out, err := c.Exec(c.NodeNS(n), argv...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// TestBackendChangeCleansUpIPv6: in a dual-stack network, vxlan -> host-gw removes
// flannel-v6.1 as well as flannel.1, and host-gw -> gre (userspace) removes the IPv6 host-gw
// routes, which would be more specific than gre's one route for the IPv6 network. Pods talk
// over IPv6 after each change.
func TestBackendChangeCleansUpIPv6(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2, IPv6: true})
	config := func(backend string) string { return fmt.Sprintf(ipv6Families[0].config, backend) }
	c.PutConfig(config(`{"Type":"vxlan"}`))
	ds, pods, envs := startNodes(t, c, []int{0, 1})
	ping6 := func() {
		t.Helper()
		for i, from := range pods {
			to := pods[1-i]
			eventually(t, 15*time.Second, fmt.Sprintf("pod %d pings pod %d over IPv6", i, 1-i), func() error {
				return from.V6().Ping(to.IPv6, 1, 2*time.Second)
			})
		}
	}
	ping6()
	change := func(backend string) {
		t.Helper()
		for n := range ds {
			ds[n].Kill()
		}
		c.PutConfig(config(backend))
		killAndRestartStopped(t, c, ds)
	}

	change(`{"Type":"host-gw"}`)
	for n := range ds {
		if err := ds[n].WaitLog("Removed a device left by another backend", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		for _, dev := range []string{"flannel.1", "flannel-v6.1"} {
			if out, err := c.Exec(c.NodeNS(n), "ip", "link", "show", dev); err == nil {
				t.Errorf("node %d still has %s after vxlan -> host-gw: %s", n, dev, out)
			}
		}
	}
	ping6()

	change(`{"Type":"gre","Mode":"userspace"}`)
	for n := range ds {
		if err := ds[n].WaitLog("Removed a host-gw route left by another backend", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		peer6 := envs[1-n].IPv6Subnet.Masked().String()
		if r := route6To(t, c, n, peer6); r != "" {
			t.Errorf("node %d keeps the IPv6 host-gw route %q after host-gw -> gre", n, r)
		}
	}
	ping6()
}
