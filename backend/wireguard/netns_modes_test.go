//go:build linux

package wireguard

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/backend/internal/tundev/tundevtest"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/nstest"
)

// The modes tests run tundevtest's two-node cluster with an IPv6 underlay beside the
// IPv4 one (2001:db8::1 and ::2 on the nodes' eth0), pods with both families.

// separateConfig is a dual-stack network in flanneld's default Mode (separate).
const separateConfig = `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10::/48","IPv6SubnetLen":64,` +
	`"Backend":{"Type":"wireguard","Implementation":"userspace"}}`

// only6Config is an IPv6-only network in the Mode given ("" for the default).
func only6Config(mode string) string {
	m := ""
	if mode != "" {
		m = fmt.Sprintf(`,"Mode":%q`, mode)
	}
	return `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10::/48","IPv6SubnetLen":64,` +
		`"Backend":{"Type":"wireguard","Implementation":"userspace"` + m + `}}`
}

// newModeNodes makes the cluster and its two nodes for a network config, with IPv6 set
// up and key files made. In an IPv6-only network the nodes' underlay has no IPv4.
func newModeNodes(t *testing.T, config string) (tundevtest.Cluster, *dualNode, *dualNode) {
	t.Helper()
	c := tundevtest.NewCluster(t)
	a := &dualNode{ns: c.NodeA, pod: c.PodA, addr: "192.0.2.1", addr6: "2001:db8::1", config: config, i: 1, keyFile: filepath.Join(t.TempDir(), "wgkey")}
	b := &dualNode{ns: c.NodeB, pod: c.PodB, addr: "192.0.2.2", addr6: "2001:db8::2", config: config, i: 2, keyFile: filepath.Join(t.TempDir(), "wgkeyb")}
	for _, n := range []*dualNode{a, b} {
		if _, _, err := loadOrCreateKey(n.keyFile); err != nil {
			t.Fatal(err)
		}
		n.setupIPv6(t)
		if !n.netConfig(t).EnableIPv4 {
			run(t, n.ns, "ip", "-4", "addr", "flush", "dev", "eth0")
		}
	}
	return c, a, b
}

// flanneldLease is n's lease parsed from the value flanneld writes in etcd (BackendData
// and BackendV6Data both {"PublicKey": ...}), so the test programs exactly that format.
func flanneldLease(t *testing.T, n *dualNode) subnet.Lease {
	t.Helper()
	l := n.lease(t)
	pub := string(l.Attrs.BackendV6Data)
	value := fmt.Sprintf(`{"PublicIP":%q,"PublicIPv6":%q,"BackendType":"wireguard","BackendData":%s,"BackendV6Data":%s}`, n.addr, n.addr6, pub, pub)
	var attrs subnet.LeaseAttrs
	if err := json.Unmarshal([]byte(value), &attrs); err != nil {
		t.Fatalf("%s: %v", value, err)
	}
	l.Attrs = attrs
	return l
}

// linkPeers returns the peers of the running device name on n: endpoint and allowed IPs
// by public key, as the device (wireguard-go) reports them.
func linkPeers(t *testing.T, n *dualNode, name string) map[string]string {
	t.Helper()
	for _, l := range n.NW.(*wgNetwork).links {
		if l.name != name {
			continue
		}
		l.mu.Lock()
		ps, err := l.eng.peers()
		l.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, p := range ps {
			var allowed []string
			for _, a := range p.AllowedIPs {
				allowed = append(allowed, a.String())
			}
			slices.Sort(allowed)
			out[p.PublicKey.String()] = p.Endpoint.String() + " " + strings.Join(allowed, ",")
		}
		return out
	}
	t.Fatalf("no device %s on node %s", name, n.addr)
	return nil
}

// pingBoth waits (bounded) until each pod answers the other's ping over each family given.
func pingBoth(t *testing.T, a, b *dualNode, v4 bool) {
	t.Helper()
	pairs := [][2]string{{a.pod, "fd00:10:0:2::2"}, {b.pod, "fd00:10:0:1::2"}}
	if v4 {
		pairs = append(pairs, [2]string{a.pod, "10.244.2.2"}, [2]string{b.pod, "10.244.1.2"})
	}
	for _, p := range pairs {
		start := time.Now()
		if err := waitPing(t, p[0], p[1], 5*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("ping %s answered after %v", p[1], time.Since(start).Round(time.Millisecond))
	}
}

// devState returns a check that node ns has the device name with exactly the given
// IPv4 and IPv6 addresses ("" for none) and routes to the given networks through it.
func devState(ns, name, addr4, addr6 string, routes ...string) func() error {
	return func() error {
		for _, c := range []struct{ fam, want string }{{"-4", addr4}, {"-6", addr6}} {
			out, err := nstest.Run(ns, "ip", c.fam, "-o", "addr", "show", "dev", name, "scope", "global")
			if err != nil {
				return fmt.Errorf("%s: %v: %s", name, err, out)
			}
			if (c.want == "") != (strings.TrimSpace(out) == "") || !strings.Contains(out, c.want) || strings.Count(out, "\n") > 1 {
				return fmt.Errorf("%s %s addresses %q, want only %q", name, c.fam, out, c.want)
			}
		}
		for _, r := range routes {
			fam := "-4"
			if strings.Contains(r, ":") {
				fam = "-6"
			}
			if out, _ := nstest.Run(ns, "ip", fam, "route", "show", "exact", r); !strings.Contains(out, "dev "+name) {
				return fmt.Errorf("route to %s: %q, want via %s", r, out, name)
			}
		}
		return nil
	}
}

// TestUserspaceSeparateDualStack: a dual-stack network in flanneld's default Mode
// (separate) runs two devices per node, flannel-wg (IPv4 subnets, PublicIP:51820) and
// flannel-wg-v6 (IPv6 subnets, [PublicIPv6]:51821), with one key; the lease carries the
// same key in BackendData and BackendV6Data; a peer lease in flanneld's exact format
// makes one peer on each device; pods ping over both families; flannel-wg-v6 deleted,
// or its route, comes back; a restart in Mode auto deletes flannel-wg-v6, and one in
// Mode separate again takes flannel-wg's IPv6 address and route back to a new one.
func TestUserspaceSeparateDualStack(t *testing.T) {
	skipWithoutNamespaces(t)
	c, a, b := newModeNodes(t, separateConfig)
	a.start(t, flanneldLease(t, b))
	b.start(t, flanneldLease(t, a))

	pub := string(a.lease(t).Attrs.BackendData)
	want := `{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"wireguard","BackendData":` + pub + `,"BackendV6Data":` + pub + `}`
	if got, err := json.Marshal(a.Attrs); err != nil || string(got) != want {
		t.Fatalf("lease value %s (%v), want %s", got, err, want)
	}
	if err := devState(c.NodeA, DeviceName, "inet 10.244.1.0/32", "", "10.244.0.0/16")(); err != nil {
		t.Fatal(err)
	}
	if err := devState(c.NodeA, DeviceNameV6, "", "inet6 fd00:10:0:1::/128", "fd00:10::/48")(); err != nil {
		t.Fatal(err)
	}
	if out := run(t, c.NodeA, "ip", "-6", "route", "show", "exact", "fd00:10::/48"); !strings.Contains(out, "metric 1024") {
		t.Fatalf("IPv6 route %q, want metric 1024 as flanneld's", out)
	}
	if out := run(t, c.NodeA, "ss", "-unl"); !strings.Contains(out, ":51820 ") || !strings.Contains(out, ":51821 ") {
		t.Fatalf("want UDP 51820 and 51821 listening:\n%s", out)
	}
	bKey := string(b.lease(t).Attrs.BackendData)
	bKey = strings.TrimSuffix(strings.TrimPrefix(bKey, `{"PublicKey":"`), `"}`)
	for dev, wantPeer := range map[string]string{
		DeviceName:   "192.0.2.2:51820 10.244.2.0/24",
		DeviceNameV6: "[2001:db8::2]:51821 fd00:10:0:2::/64",
	} {
		if got := linkPeers(t, a, dev); len(got) != 1 || got[bKey] != wantPeer {
			t.Fatalf("%s peers %v, want %s: %s", dev, got, bKey, wantPeer)
		}
	}
	if proto, port := a.NW.(backend.Tunnel).TunnelPort(); proto != "udp" || port != 51820 {
		t.Fatalf("TunnelPort() = %s %d", proto, port)
	}
	pingBoth(t, a, b, true)
	d := a.NW.(backend.Describer).Describe()
	sn4, sn6 := b.subnets()
	if d.Device != DeviceName || d.Info["deviceV6"] != DeviceNameV6 || d.Info["listenPortV6"] != "51821" ||
		d.Info["peersWithHandshake"] != "1 of 1" || d.Info["peersWithHandshakeV6"] != "1 of 1" ||
		d.Peers[sn4].State != backend.PeerProgrammed || d.Peers[sn6].State != backend.PeerProgrammed || len(d.Peers) != 2 {
		t.Fatalf("Describe() = %+v", d)
	}

	ifindex := run(t, c.NodeA, "cat", "/sys/class/net/"+DeviceName+"/ifindex")
	for _, d := range []struct {
		name, kind string
		argv       []string
	}{
		{DeviceNameV6 + " route deleted", "route", []string{"ip", "-6", "route", "del", "fd00:10::/48", "dev", DeviceNameV6}},
		{DeviceNameV6 + " address deleted", "address", []string{"ip", "-6", "addr", "flush", "dev", DeviceNameV6, "scope", "global"}},
		{DeviceNameV6 + " deleted", "device", []string{"ip", "link", "del", DeviceNameV6}},
	} {
		before := a.repairs.Count(d.kind)
		run(t, c.NodeA, d.argv...)
		took := kerneltest.WaitFor(t, 2*time.Second, d.name+": repaired", func() error {
			if a.repairs.Count(d.kind) == before {
				return fmt.Errorf("no %s repair yet (%s)", d.kind, a.repairs)
			}
			return devState(c.NodeA, DeviceNameV6, "", "inet6 fd00:10:0:1::/128", "fd00:10::/48")()
		})
		if err := waitPing(t, c.PodA, "fd00:10:0:2::2", 5*time.Second); err != nil {
			t.Fatalf("%s: pods do not talk over IPv6: %v\n%s", d.name, err, run(t, c.NodeA, "ip", "-6", "route"))
		}
		if got := linkPeers(t, a, DeviceNameV6); got[bKey] == "" {
			t.Fatalf("%s: %s peers %v", d.name, DeviceNameV6, got)
		}
		t.Logf("%s: repaired within %v", d.name, took.Round(time.Millisecond))
	}
	if got := run(t, c.NodeA, "cat", "/sys/class/net/"+DeviceName+"/ifindex"); got != ifindex {
		t.Fatalf("%s was re-created (ifindex %s -> %s) while only %s was touched", DeviceName, ifindex, got, DeviceNameV6)
	}
	if err := waitPing(t, c.PodA, "10.244.2.2", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	// The next run in Mode auto has no use for flannel-wg-v6 and deletes it.
	a.Stop(t)
	a.config = dualConfig
	a.start(t)
	if out, err := nstest.Run(c.NodeA, "ip", "link", "show", DeviceNameV6); err == nil {
		t.Fatalf("%s left after the change to Mode auto: %s", DeviceNameV6, out)
	}
	if err := devState(c.NodeA, DeviceName, "inet 10.244.1.0/32", "inet6 fd00:10:0:1::/128", "10.244.0.0/16", "fd00:10::/48")(); err != nil {
		t.Fatal(err)
	}
	// Back to Mode separate: flannel-wg gives its IPv6 address and route up to a new
	// flannel-wg-v6, and the pods talk again with node B, which stayed in Mode separate.
	a.Stop(t)
	a.config = separateConfig
	a.start(t, flanneldLease(t, b))
	if err := devState(c.NodeA, DeviceName, "inet 10.244.1.0/32", "", "10.244.0.0/16")(); err != nil {
		t.Fatal(err)
	}
	if err := devState(c.NodeA, DeviceNameV6, "", "inet6 fd00:10:0:1::/128", "fd00:10::/48")(); err != nil {
		t.Fatal(err)
	}
	pingBoth(t, a, b, true)
}

// TestUserspaceIPv6Only: an IPv6-only network (no IPv4 on the underlay) in Mode
// separate has flannel-wg-v6 alone, on ListenPortV6; in Mode auto and ipv6, flannel-wg on
// ListenPort; in each the peer is the other node's IPv6 subnet at its IPv6 address, the
// lease carries BackendV6Data only, pods ping over IPv6, and the device's deleted route
// comes back.
func TestUserspaceIPv6Only(t *testing.T) {
	skipWithoutNamespaces(t)
	for _, tc := range []struct {
		mode, dev, other string
		port             int
	}{
		{"", DeviceNameV6, DeviceName, 51821},
		{"auto", DeviceName, DeviceNameV6, 51820},
		{"ipv6", DeviceName, DeviceNameV6, 51820},
	} {
		name := tc.mode
		if name == "" {
			name = "separate (default)"
		}
		t.Run(name, func(t *testing.T) {
			c, a, b := newModeNodes(t, only6Config(tc.mode))
			a.start(t, b.lease(t))
			b.start(t, a.lease(t))
			if a.Attrs.BackendData != nil || string(a.Attrs.BackendV6Data) != string(a.lease(t).Attrs.BackendV6Data) ||
				a.Attrs.PublicIP.IsValid() || a.Attrs.PublicIPv6 != netip.MustParseAddr("2001:db8::1") {
				t.Fatalf("lease attributes %+v: want BackendV6Data only and PublicIPv6", a.Attrs)
			}
			if err := devState(c.NodeA, tc.dev, "", "inet6 fd00:10:0:1::/128", "fd00:10::/48")(); err != nil {
				t.Fatal(err)
			}
			if out, err := nstest.Run(c.NodeA, "ip", "link", "show", tc.other); err == nil {
				t.Fatalf("%s exists: %s", tc.other, out)
			}
			bKey := strings.TrimSuffix(strings.TrimPrefix(string(b.lease(t).Attrs.BackendV6Data), `{"PublicKey":"`), `"}`)
			wantPeer := fmt.Sprintf("[2001:db8::2]:%d fd00:10:0:2::/64", tc.port)
			if got := linkPeers(t, a, tc.dev); len(got) != 1 || got[bKey] != wantPeer {
				t.Fatalf("%s peers %v, want %s", tc.dev, got, wantPeer)
			}
			if _, port := a.NW.(backend.Tunnel).TunnelPort(); port != tc.port {
				t.Fatalf("TunnelPort() = %d, want %d", port, tc.port)
			}
			pingBoth(t, a, b, false)
			before := a.repairs.Count("route")
			run(t, c.NodeA, "ip", "-6", "route", "del", "fd00:10::/48", "dev", tc.dev)
			kerneltest.WaitFor(t, 2*time.Second, "route repaired", func() error {
				if a.repairs.Count("route") == before {
					return fmt.Errorf("no route repair yet (%s)", a.repairs)
				}
				return devState(c.NodeA, tc.dev, "", "inet6 fd00:10:0:1::/128", "fd00:10::/48")()
			})
			if err := waitPing(t, c.PodA, "fd00:10:0:2::2", 5*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestKernelSeparateDualStack is Mode separate with the kernel's WireGuard on node A and
// wireguard-go on node B: both of A's devices are kernel links, and pods ping over both
// families. It needs the wireguard module.
func TestKernelSeparateDualStack(t *testing.T) {
	skipWithoutNamespaces(t)
	if err := kernelHasWireGuard(t); err != nil {
		t.Skipf("kernel has no WireGuard support (module wireguard): %v", err)
	}
	c, a, b := newModeNodes(t, strings.Replace(separateConfig, `"userspace"`, `"kernel"`, 1))
	b.config = separateConfig
	a.start(t, flanneldLease(t, b))
	b.start(t, flanneldLease(t, a))
	for _, dev := range []string{DeviceName, DeviceNameV6} {
		if out := run(t, c.NodeA, "ip", "-d", "link", "show", dev); !strings.Contains(out, "wireguard") {
			t.Fatalf("%s is no kernel WireGuard link: %s", dev, out)
		}
	}
	pingBoth(t, a, b, true)
}
