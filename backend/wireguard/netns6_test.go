//go:build linux

package wireguard

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/backend/internal/tundev/tundevtest"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/nstest"
)

// dualNode is a node of a wireguard network with IPv6 (dual stack unless config says
// otherwise): its number i names its subnets 10.244.i.0/24 and fd00:10:0:i::/64.
type dualNode struct {
	ns, pod, addr string
	addr6         string // the node's IPv6 underlay address; "" for none
	config        string // the network config; dualConfig when ""
	i             int
	keyFile       string
	repairs       *kerneltest.Repairs
	*tundevtest.Node
}

const dualConfig = `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10::/48","IPv6SubnetLen":64,` +
	`"Backend":{"Type":"wireguard","Mode":"auto","Implementation":"userspace"}}`

func (n *dualNode) subnets() (netip.Prefix, netip.Prefix) {
	return netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", n.i)), netip.MustParsePrefix(fmt.Sprintf("fd00:10:0:%d::/64", n.i))
}

func (n *dualNode) netConfig(t *testing.T) *subnet.Config {
	t.Helper()
	raw := n.config
	if raw == "" {
		raw = dualConfig
	}
	cfg, err := subnet.ParseConfig([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// lease is the node's lease as flanneld writes it: the subnet, PublicIP and BackendData
// of IPv4 when the network runs it, and the IPv6 subnet, BackendV6Data (the same key)
// and, with an IPv6 underlay address, PublicIPv6 (else null).
func (n *dualNode) lease(t *testing.T) subnet.Lease {
	k, _, err := loadOrCreateKey(n.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := n.netConfig(t)
	sn4, sn6 := n.subnets()
	l := subnet.Lease{Attrs: subnet.LeaseAttrs{BackendType: Name}}
	if cfg.EnableIPv4 {
		l.Subnet, l.Attrs.PublicIP, l.Attrs.BackendData = sn4, netip.MustParseAddr(n.addr), backendData(k.public())
	}
	l.IPv6Subnet, l.Attrs.BackendV6Data = sn6, backendData(k.public())
	if n.addr6 != "" {
		l.Attrs.PublicIPv6 = netip.MustParseAddr(n.addr6)
	}
	return l
}

// setupIPv6 gives node and pod namespaces IPv6, the pod an IPv6 address behind cni0 and,
// with addr6, the node's eth0 that underlay address.
func (n *dualNode) setupIPv6(t *testing.T) {
	t.Helper()
	_, sn6 := n.subnets()
	gw, pod := sn6.Addr().Next(), sn6.Addr().Next().Next()
	for _, c := range []struct{ ns, link string }{{n.ns, "cni0"}, {n.ns, "eth0"}, {n.pod, "eth0"}} {
		for _, k := range []string{"all", "default", c.link} {
			// No duplicate address detection: link-local addresses are usable at once.
			run(t, c.ns, "sysctl", "-qw", "net.ipv6.conf."+k+".accept_dad=0")
			run(t, c.ns, "sysctl", "-qw", "net.ipv6.conf."+k+".disable_ipv6=0")
		}
	}
	run(t, n.ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	run(t, n.ns, "ip", "addr", "add", netip.PrefixFrom(gw, 64).String(), "dev", "cni0", "nodad")
	run(t, n.pod, "ip", "addr", "add", netip.PrefixFrom(pod, 64).String(), "dev", "eth0", "nodad")
	run(t, n.pod, "ip", "-6", "route", "add", "default", "via", gw.String())
	if n.addr6 != "" {
		run(t, n.ns, "ip", "addr", "add", n.addr6+"/64", "dev", "eth0", "nodad")
	}
	// The links existed before accept_dad=0: their link-local addresses stay tentative
	// until duplicate address detection ends (about a second), and meanwhile the node's
	// first forwarded packet to the pod waits for neighbour discovery. Wait it out, so
	// that the first pings do not.
	kerneltest.WaitFor(t, 10*time.Second, "no tentative IPv6 address", func() error {
		for _, ns := range []string{n.ns, n.pod} {
			if out, err := nstest.Run(ns, "ip", "-6", "-o", "addr", "show", "tentative"); err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("in %s: %s (%v)", ns, out, err)
			}
		}
		return nil
	})
}

func (n *dualNode) start(t *testing.T, peers ...subnet.Lease) {
	t.Helper()
	cfg := n.netConfig(t)
	n.repairs = &kerneltest.Repairs{}
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2)))
	ext := tundevtest.External(t, n.ns, n.addr)
	if !cfg.EnableIPv4 {
		ext.IfaceAddr, ext.PublicIP = netip.Addr{}, netip.Addr{}
	}
	if n.addr6 != "" {
		ext.IfaceAddrV6, ext.PublicIPv6 = netip.MustParseAddr(n.addr6), netip.MustParseAddr(n.addr6)
	}
	be, err := newBackend(backend.Env{Ext: ext, Network: cfg, Log: logger.WithValues("node", n.addr), OnRepair: n.repairs.Report}, n.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	own := n.lease(t)
	own.Attrs = subnet.LeaseAttrs{PublicIP: own.Attrs.PublicIP, PublicIPv6: own.Attrs.PublicIPv6}
	n.Node = tundevtest.StartNode(t, n.ns, be, own, func(nw backend.Network) {
		nw.(*wgNetwork).setPeriod(200 * time.Millisecond)
	}, peers...)
}

// TestUserspaceDualStack: in a dual-stack network (Mode auto, IPv4 underlay) each node has
// one flannel-wg with both the IPv4 and IPv6 own-subnet addresses and routes, its lease
// carries BackendData and BackendV6Data as flanneld writes them, each peer's allowed IPs
// are both its subnets, pods ping over both families, a deleted IPv6 route or address is
// put back (the time is logged), and then the repairs stop.
func TestUserspaceDualStack(t *testing.T) {
	skipWithoutNamespaces(t)
	c := tundevtest.NewCluster(t)
	a := &dualNode{ns: c.NodeA, pod: c.PodA, addr: "192.0.2.1", i: 1, keyFile: filepath.Join(t.TempDir(), "wgkey")}
	b := &dualNode{ns: c.NodeB, pod: c.PodB, addr: "192.0.2.2", i: 2, keyFile: filepath.Join(t.TempDir(), "wgkeyb")}
	for _, n := range []*dualNode{a, b} {
		if _, _, err := loadOrCreateKey(n.keyFile); err != nil {
			t.Fatal(err)
		}
		n.setupIPv6(t)
	}
	a.start(t, b.lease(t))
	b.start(t, a.lease(t))

	pub := a.lease(t).Attrs.BackendData
	want := `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"wireguard","BackendData":` + string(pub) + `,"BackendV6Data":` + string(pub) + `}`
	if got, err := json.Marshal(a.Attrs); err != nil || string(got) != want {
		t.Fatalf("lease value %s (%v), want %s", got, err, want)
	}
	if out := run(t, c.NodeA, "ip", "-6", "-o", "addr", "show", "dev", DeviceName); !strings.Contains(out, "inet6 fd00:10:0:1::/128") {
		t.Fatalf("%s IPv6 addresses: %s", DeviceName, out)
	}
	const want6 = "fd00:10::/48 dev " + DeviceName + " metric 1024"
	if out := run(t, c.NodeA, "ip", "-6", "route", "show", "fd00:10::/48"); !strings.Contains(out, want6) {
		t.Fatalf("IPv6 route: %s", out)
	}
	if out := run(t, c.NodeA, "ip", "route", "show", "10.244.0.0/16"); !strings.Contains(out, "10.244.0.0/16 dev "+DeviceName) {
		t.Fatalf("IPv4 route: %s", out)
	}
	for _, dst := range []string{"10.244.2.2", "fd00:10:0:2::2"} {
		if err := waitPing(t, c.PodA, dst, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := waitPing(t, c.PodB, strings.Replace(strings.Replace(dst, ".2.2", ".1.2", 1), ":2::2", ":1::2", 1), 3*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	d := a.NW.(backend.Describer).Describe()
	sn4, sn6 := b.subnets()
	if d.Peers[sn4].State != backend.PeerProgrammed || d.Peers[sn6].State != backend.PeerProgrammed {
		t.Fatalf("Describe().Peers = %+v", d.Peers)
	}
	for _, c6 := range []struct {
		name, kind string
		argv       []string
	}{
		{"IPv6 route deleted", "route", []string{"ip", "-6", "route", "del", "fd00:10::/48", "dev", DeviceName}},
		{"IPv6 address deleted", "address", []string{"ip", "-6", "addr", "del", "fd00:10:0:1::/128", "dev", DeviceName}},
	} {
		before := a.repairs.Count(c6.kind)
		run(t, c.NodeA, c6.argv...)
		took := kerneltest.WaitFor(t, time.Second, c6.name+": repaired", func() error {
			if a.repairs.Count(c6.kind) == before {
				return fmt.Errorf("no %s repair yet (%s)", c6.kind, a.repairs)
			}
			return nil
		})
		if err := waitPing(t, c.PodA, "fd00:10:0:2::2", 2*time.Second); err != nil {
			t.Fatalf("%s: pods do not talk over IPv6: %v", c6.name, err)
		}
		t.Logf("%s: repaired within %v", c6.name, took.Round(time.Millisecond))
	}
	if out := run(t, c.NodeA, "ip", "-6", "route", "show", "fd00:10::/48"); !strings.Contains(out, want6) {
		t.Fatalf("IPv6 route after repairs: %s", out)
	}
	// Left alone, the checks (every 200 ms here) soon find nothing more to repair: a late
	// follow-up of the repairs above may still count, but then the counts stay the same
	// for a window of ten checks.
	took, seen := waitRepairsStable(t, a.repairs, 2*time.Second)
	t.Logf("repairs stable (%s) %v after the last repair; counts seen: %v", a.repairs, took.Round(time.Millisecond), seen)
}

// waitRepairsStable waits until r's counts stay the same for window, and returns how long
// that took and the counts seen on the way. It fails the test, with those counts, when they
// still change after kerneltest.WaitBound(window): repairs that go on with nobody
// changing anything.
func waitRepairsStable(t *testing.T, r *kerneltest.Repairs, window time.Duration) (time.Duration, []string) {
	t.Helper()
	start := time.Now()
	bound := kerneltest.WaitBound(window)
	seen := []string{r.String()}
	for {
		time.Sleep(window)
		now := r.String()
		if now == seen[len(seen)-1] {
			return time.Since(start), seen
		}
		seen = append(seen, now)
		if time.Since(start) > bound {
			t.Fatalf("repairs went on with nobody changing anything for %v: counts seen %v", bound, seen)
		}
	}
}
