package vxlan

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/nstest"
)

// testNode is one node namespace running the backend.
type testNode struct {
	kerneltest.Node
	subnet  netip.Prefix
	subnet6 netip.Prefix // zero unless the node runs IPv6
	addr6   netip.Addr   // IPv6 underlay address; zero unless the node runs IPv6
	be      *Backend
	attrs   subnet.LeaseAttrs
	nw      *network
	repairs *kerneltest.Repairs // what the network reported through OnRepair
}

func (n *testNode) lease() subnet.Lease {
	return subnet.Lease{Subnet: n.subnet, IPv6Subnet: n.subnet6, Attrs: n.attrs}
}

func added(ls ...subnet.Lease) []subnet.Event {
	var evs []subnet.Event
	for _, l := range ls {
		evs = append(evs, subnet.Event{Type: subnet.Added, Lease: l})
	}
	return evs
}

func removed(ls ...subnet.Lease) []subnet.Event {
	var evs []subnet.Event
	for _, l := range ls {
		evs = append(evs, subnet.Event{Type: subnet.Removed, Lease: subnet.Lease{Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet}})
	}
	return evs
}

// inet is one address family of the tests that run for both: the device and the shapes
// in which ip(8) shows its entries.
type inet struct {
	name     string // the subtest's name
	ip       string // ip(8)'s family option
	dev      string // the VXLAN device
	mtu      int    // its MTU over the 1500-byte eth0
	hostBits int    // the prefix length of its address
	metric   string // how ip(8) shows a tunnel route's metric
}

var (
	ipv4 = inet{name: "ipv4", ip: "-4", dev: "flannel.1", mtu: 1450, hostBits: 32}
	ipv6 = inet{name: "ipv6", ip: "-6", dev: "flannel-v6.1", mtu: 1430, hostBits: 128, metric: " metric 1024"}
)

// forEachFamily runs test once for each family, as the subtests "ipv4" and "ipv6".
func forEachFamily(t *testing.T, test func(*testing.T, inet)) {
	for _, f := range []inet{ipv4, ipv6} {
		t.Run(f.name, func(t *testing.T) { test(t, f) })
	}
}

// subnet is n's subnet of family f.
func (f inet) subnet(n *testNode) netip.Prefix {
	if f == ipv6 {
		return n.subnet6
	}
	return n.subnet
}

// underlay is n's underlay address of family f.
func (f inet) underlay(n *testNode) netip.Addr {
	if f == ipv6 {
		return n.addr6
	}
	return n.Addr
}

// twoNodes starts two connected nodes with a pod each for family f: IPv4 only, or dual
// stack for IPv6 (so that the IPv6 tests also see the IPv4 side untouched).
func (f inet) twoNodes(t *testing.T, keys map[string]any) (a, b *testNode, podNSA, podNSB string) {
	t.Helper()
	if f == ipv6 {
		return twoNodes6(t, true, keys)
	}
	return twoNodes(t, keys)
}

// ofLease is l's subnet and public address of family f.
func (f inet) ofLease(l subnet.Lease) (netip.Prefix, netip.Addr) {
	if f == ipv6 {
		return l.IPv6Subnet, l.Attrs.PublicIPv6
	}
	return l.Subnet, l.Attrs.PublicIP
}

// pod is the address of n's pod in family f.
func (f inet) pod(n *testNode) netip.Addr {
	return withLast(f.subnet(n).Masked().Addr(), 2)
}

// withLast is a with its last byte set to b.
func withLast(a netip.Addr, b byte) netip.Addr {
	s := a.AsSlice()
	s[len(s)-1] = b
	r, _ := netip.AddrFromSlice(s)
	return r
}

// peerInPlace returns a check that node a has f's device up with its address, and the
// route, neighbour and FDB entry of family f for peer b.
func peerInPlace(f inet, a, b *testNode) func() error {
	macA, macB := vtepMAC(f.underlay(a), 1).String(), vtepMAC(f.underlay(b), 1).String()
	vtep := f.subnet(b).Masked().Addr().String()
	dev := f.dev
	return func() error {
		for _, c := range []struct{ argv, want string }{
			{"ip -o link show " + dev, "link/ether " + macA},
			{"ip -o link show " + dev, ",UP"},
			{"ip -o link show " + dev, fmt.Sprintf(" mtu %d ", f.mtu)},
			{"ip " + f.ip + " -o addr show dev " + dev + " scope global", fmt.Sprintf("%s/%d", f.subnet(a).Masked().Addr(), f.hostBits)},
			{"ip " + f.ip + " route show exact " + f.subnet(b).String(), "via " + vtep + " dev " + dev + f.metric + " onlink"},
			{"ip " + f.ip + " neigh show dev " + dev, vtep + " lladdr " + macB + " PERMANENT"},
			{"bridge fdb show dev " + dev, macB + " dst " + f.underlay(b).String() + " self permanent"},
		} {
			out, err := nstest.Run(a.NS, strings.Fields(c.argv)...)
			if err != nil || !strings.Contains(out, c.want) {
				return fmt.Errorf("%s: %q (%v), want %q", c.argv, strings.TrimSpace(out), err, c.want)
			}
		}
		return nil
	}
}

// newBackend builds the backend inside the node's namespace with the given Backend keys.
func newBackend(t *testing.T, kn kerneltest.Node, keys map[string]any) *Backend {
	t.Helper()
	return newBackendWith(t, kn, keys, nil)
}

// newBackendWith is newBackend with the Env changed by edit (nil: the IPv4 defaults).
func newBackendWith(t *testing.T, kn kerneltest.Node, keys map[string]any, edit func(*backend.Env)) *Backend {
	t.Helper()
	raw, err := json.Marshal(keys)
	if err != nil {
		t.Fatal(err)
	}
	var be backend.Backend
	err = nsutil.Do(kn.NS, func() error {
		ifc, err := net.InterfaceByName(kn.Iface)
		if err != nil {
			return err
		}
		env := backend.Env{
			Ext: backend.ExternalInterface{Iface: ifc, IfaceAddr: kn.Addr, PublicIP: kn.Addr},
			Network: &subnet.Config{
				Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24,
				BackendType: Name, Backend: raw,
			},
			Log: testr.New(t),
		}
		if edit != nil {
			edit(&env)
		}
		be, err = New(env)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	b := be.(*Backend)
	t.Cleanup(func() { b.Close() })
	return b
}

// startNode runs New, Prepare and Activate for kn with subnet sn. Only New runs inside the
// namespace: the rest must work from any thread.
func startNode(t *testing.T, kn kerneltest.Node, sn string, keys map[string]any) *testNode {
	t.Helper()
	n := &testNode{Node: kn, subnet: netip.MustParsePrefix(sn), be: newBackend(t, kn, keys)}
	activate(t, n)
	return n
}

// activate runs Prepare and Activate for n's backend, with its repairs counted in
// n.repairs, and closes the network when the test ends.
func activate(t *testing.T, n *testNode) {
	t.Helper()
	n.repairs = &kerneltest.Repairs{}
	n.be.env.OnRepair = n.repairs.Report
	var err error
	ctx := context.Background()
	if n.attrs, err = n.be.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	nw, err := n.be.Activate(ctx, n.lease())
	if err != nil {
		t.Fatal(err)
	}
	n.nw = nw.(*network)
	t.Cleanup(func() { n.nw.Close() })
}

// runInBackground starts Run with a short resync and stops it when the test ends.
func runInBackground(t *testing.T, nw *network, every time.Duration) {
	nw.resync = every
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := nw.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// connect gives each node the other as a peer.
func connect(t *testing.T, a, b *testNode) {
	t.Helper()
	if err := a.nw.Apply(context.Background(), added(b.lease())); err != nil {
		t.Fatal(err)
	}
	if err := b.nw.Apply(context.Background(), added(a.lease())); err != nil {
		t.Fatal(err)
	}
}

// ping sends a few pings from ns to dst (IPv4 or IPv6) and fails the test if none come
// back.
func ping(t *testing.T, ns string, dst netip.Addr) {
	t.Helper()
	argv := []string{"ping", "-c", "2", "-i", "0.2", "-W", "2", dst.String()}
	if dst.Is6() {
		argv = append([]string{"ping", "-6"}, argv[1:]...)
	}
	if _, err := nstest.Run(ns, argv...); err != nil {
		t.Fatalf("ping %s from %s: %v", dst, ns, err)
	}
}

// eventually retries check until it returns nil, for at most d.
func eventually(t *testing.T, d time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tcpTransfer sends size bytes over TCP from namespace from to dst in namespace to
// (cluster.TCPTransfer: count and SHA-256 checked at the receiver).
func tcpTransfer(t *testing.T, from, to string, dst netip.Addr, size int) {
	t.Helper()
	if err := cluster.TCPTransfer(&cluster.Pod{NS: from}, &cluster.Pod{NS: to, IP: dst}, size, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
