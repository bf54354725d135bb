package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// wgDualConfig is a dual-stack network with flanneld's wireguard defaults: no Mode (so
// "separate": flannel-wg for IPv4 and flannel-wg-v6 for IPv6) and no Implementation
// (auto: userspace on a kernel without WireGuard), byte for byte a config a flanneld
// cluster runs.
const wgDualConfig = `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"` + ipv6Network + `","Backend":{"Type":"wireguard"}}`

// TestWireGuardDualStackSeparate: weftd nodes on a dual-stack wireguard network in the
// default Mode (separate) publish flanneld's lease (the same public key in BackendData
// and BackendV6Data, PublicIPv6 set), run flannel-wg on UDP 51820 and flannel-wg-v6 on
// UDP 51821, and their pods ping over both families and carry a SHA-256-checked TCP
// transfer over IPv6; flannel-wg-v6 deleted by hand comes back and IPv6 flows again.
func TestWireGuardDualStackSeparate(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2, IPv6: true})
	c.PutConfig(wgDualConfig)
	_, pods, envs := startWG(t, c, []int{0, 1}, "--healthz-port", healthPort)

	for i, env := range envs {
		_, pub := wgKeys(t, c, i)
		key := leaseKeyOf(env)
		raw := etcdGet(t, c, key)
		data := fmt.Sprintf(`{"PublicKey":"%s"}`, pub)
		want := fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":"%s","BackendType":"wireguard","BackendData":%s,"BackendV6Data":%s}`,
			c.NodeIP(i), c.NodeIPv6(i), data, data)
		if raw != want {
			t.Errorf("node %d lease %s = %s, want %s", i, key, raw, want)
		}
		if env.MTU != 1420 {
			t.Errorf("node %d FLANNEL_MTU %d, want 1420", i, env.MTU)
		}
		for _, dev := range []struct{ name, fam, addr, route string }{
			{"flannel-wg", "-4", env.Subnet.Masked().Addr().String() + "/32", "10.244.0.0/16"},
			{"flannel-wg-v6", "-6", env.IPv6Subnet.Masked().Addr().String() + "/128", ipv6Network},
		} {
			if out := ipOut(t, c, i, dev.fam, "-o", "addr", "show", "dev", dev.name, "scope", "global"); !strings.Contains(out, dev.addr) {
				t.Errorf("node %d %s addresses %q, want %s", i, dev.name, out, dev.addr)
			}
			if out := ipOut(t, c, i, dev.fam, "route", "show", "exact", dev.route); !strings.Contains(out, "dev "+dev.name) {
				t.Errorf("node %d route to %s %q, want via %s", i, dev.route, out, dev.name)
			}
		}
		if out := execOut(t, c, i, "ss", "-unl"); !strings.Contains(out, ":51820 ") || !strings.Contains(out, ":51821 ") {
			t.Errorf("node %d: want UDP 51820 and 51821 listening:\n%s", i, out)
		}
		// Each family's peers-only tunnel rules (--restrict-tunnel-port) match the port
		// of that family's device.
		for cmd, port := range map[string]string{"iptables": "51820", "ip6tables": "51821"} {
			eventually(t, 10*time.Second, fmt.Sprintf("node %d %s WEFT-INPUT on port %s", i, cmd, port), func() error {
				out := execOut(t, c, i, cmd, "-w", "-S", "WEFT-INPUT")
				if !strings.Contains(out, "--dport "+port+" ") || strings.Count(out, "--dport ") != 2 {
					return fmt.Errorf("rules:\n%s", out)
				}
				return nil
			})
		}
	}

	for i, from := range pods {
		to := pods[1-i]
		eventually(t, wgHandshakeWait, fmt.Sprintf("pod %d pings pod %d over IPv6", i, 1-i), func() error {
			return from.V6().Ping(to.IPv6, 1, 2*time.Second)
		})
		eventually(t, wgHandshakeWait, fmt.Sprintf("pod %d pings pod %d over IPv4", i, 1-i), func() error {
			return from.Ping(to.IP, 1, 2*time.Second)
		})
	}
	start := time.Now()
	if err := cluster.TCPTransfer(pods[0].V6(), pods[1].V6(), 20<<20, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("20 MiB over IPv6 through flannel-wg-v6 in %v", time.Since(start).Round(time.Millisecond))

	st := wgStatus(t, c, 0)
	if st.Backend.Device != "flannel-wg" || st.Backend.Info["deviceV6"] != "flannel-wg-v6" || st.Backend.Info["listenPortV6"] != "51821" ||
		st.Backend.Info["familyMode"] != "separate" || st.Backend.Info["peersWithHandshakeV6"] != "1 of 1" {
		b, _ := json.Marshal(st.Backend)
		t.Errorf("status backend %s", b)
	}

	ipOut(t, c, 0, "link", "del", "flannel-wg-v6")
	deleted := time.Now()
	eventually(t, 5*time.Second, "flannel-wg-v6 comes back with its route", func() error {
		if r := route6To(t, c, 0, ipv6Network); !strings.Contains(r, "dev flannel-wg-v6") {
			return fmt.Errorf("route to %s: %q", ipv6Network, r)
		}
		return nil
	})
	eventually(t, wgHandshakeWait, "pods ping over IPv6 after the repair", func() error {
		return pods[0].V6().Ping(pods[1].IPv6, 1, 2*time.Second)
	})
	t.Logf("flannel-wg-v6 deleted: back and carrying IPv6 after %v", time.Since(deleted).Round(time.Millisecond))
}

// TestWireGuardIPv6OnlySeparate: an IPv6-only wireguard network in the default Mode
// (separate) runs flannel-wg-v6 alone, on UDP 51821, with flanneld's lease (BackendV6Data
// only, PublicIP "0.0.0.0"); pods ping and carry a checked TCP transfer over IPv6.
func TestWireGuardIPv6OnlySeparate(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2, IPv6: true})
	c.PutConfig(`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"` + ipv6Network + `","Backend":{"Type":"wireguard"}}`)
	_, pods, envs := startWG(t, c, []int{0, 1}, "--healthz-port", healthPort)
	for i, env := range envs {
		_, pub := wgKeys(t, c, i)
		key := leaseKeyOf(env)
		want := fmt.Sprintf(`{"PublicIP":"0.0.0.0","PublicIPv6":"%s","BackendType":"wireguard","BackendV6Data":{"PublicKey":"%s"}}`, c.NodeIPv6(i), pub)
		if raw := etcdGet(t, c, key); raw != want {
			t.Errorf("node %d lease %s = %s, want %s", i, key, raw, want)
		}
		if out, err := c.Exec(c.NodeNS(i), "ip", "link", "show", "flannel-wg"); err == nil {
			t.Errorf("node %d has flannel-wg in an IPv6-only network in Mode separate: %s", i, out)
		}
		if r := route6To(t, c, i, ipv6Network); !strings.Contains(r, "dev flannel-wg-v6") {
			t.Errorf("node %d route to %s: %q", i, ipv6Network, r)
		}
		if out := execOut(t, c, i, "ss", "-unl"); !strings.Contains(out, ":51821 ") {
			t.Errorf("node %d: nothing listens on UDP 51821:\n%s", i, out)
		}
	}
	for i, from := range pods {
		to := pods[1-i]
		eventually(t, wgHandshakeWait, fmt.Sprintf("pod %d pings pod %d over IPv6", i, 1-i), func() error {
			return from.V6().Ping(to.IPv6, 1, 2*time.Second)
		})
	}
	if err := cluster.TCPTransfer(pods[0].V6(), pods[1].V6(), 4<<20, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if st := wgStatus(t, c, 0); st.Backend.Device != "flannel-wg-v6" || st.Backend.Info["listenPort"] != "51821" {
		t.Errorf("status backend %+v", st.Backend)
	}
}
