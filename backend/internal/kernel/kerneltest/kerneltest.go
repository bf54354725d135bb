// Package kerneltest builds throwaway network topologies for the tests of weft's kernel
// backends: two "nodes" (namespaces) joined by a veth, pod namespaces behind a bridge on a
// node, and a monitor that counts netlink change notifications so a test can assert that an
// idempotent call wrote nothing.
//
// Everything it creates lives in namespaces made by nstest.Temp and is removed when the
// test ends; it never touches the namespace the test runs in. It is imported by tests only.
package kerneltest

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/test/nstest"
)

// Node is a namespace standing for one host, with its underlay interface.
type Node struct {
	NS    string     // namespace name
	Iface string     // underlay interface name inside NS
	Addr  netip.Addr // underlay address on Iface (192.0.2.x)
}

// TwoNodes makes two namespaces joined by a veth "eth0" on each side, addressed
// 192.0.2.1/24 and 192.0.2.2/24, up. The test is skipped where namespaces are unavailable.
func TwoNodes(t testing.TB) (a, b Node) {
	t.Helper()
	a = Node{NS: nstest.Temp(t, "nodea"), Iface: "eth0", Addr: netip.MustParseAddr("192.0.2.1")}
	b = Node{NS: nstest.Temp(t, "nodeb"), Iface: "eth0", Addr: netip.MustParseAddr("192.0.2.2")}
	MustRun(t, a.NS, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b.NS)
	for _, n := range []Node{a, b} {
		MustRun(t, n.NS, "ip", "addr", "add", n.Addr.String()+"/24", "dev", "eth0")
		MustRun(t, n.NS, "ip", "link", "set", "eth0", "up")
	}
	for _, n := range []Node{a, b} {
		waitOperUp(t, n)
	}
	return a, b
}

// waitOperUp waits (at most 5 s) until the node's eth0 is operationally up. The kernel
// reports carrier changes from its link watch, up to a second late; a test that counts
// netlink changes must not see that one.
func waitOperUp(t testing.TB, n Node) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := nstest.Run(n.NS, "cat", "/sys/class/net/"+n.Iface+"/operstate")
		if err == nil && strings.TrimSpace(out) == "up" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not up after 5 s (operstate %q, %v)", n.NS, n.Iface, strings.TrimSpace(out), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// AddPod puts a pod behind node: a bridge cni0 holding gw (e.g. 10.244.1.1/24) in the node
// namespace, and a new pod namespace with pod (e.g. 10.244.1.2) on a veth into the bridge,
// default route via gw. IP forwarding is switched on in the node. mtu (0: leave default)
// is set on the pod's interface, as the CNI plugin does from FLANNEL_MTU. It returns the
// pod namespace.
func AddPod(t testing.TB, node Node, gw netip.Prefix, pod netip.Addr, mtu int) string {
	t.Helper()
	podNS := nstest.Temp(t, "pod")
	MustRun(t, node.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	if _, err := nstest.Run(node.NS, "ip", "link", "show", "cni0"); err != nil {
		MustRun(t, node.NS, "ip", "link", "add", "cni0", "type", "bridge")
		MustRun(t, node.NS, "ip", "addr", "add", gw.String(), "dev", "cni0")
		MustRun(t, node.NS, "ip", "link", "set", "cni0", "up")
	}
	host := fmt.Sprintf("veth%d", pod.As4()[3])
	MustRun(t, node.NS, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", podNS)
	MustRun(t, node.NS, "ip", "link", "set", host, "master", "cni0", "up")
	if mtu > 0 {
		MustRun(t, podNS, "ip", "link", "set", "eth0", "mtu", fmt.Sprint(mtu))
	}
	MustRun(t, podNS, "ip", "addr", "add", netip.PrefixFrom(pod, gw.Bits()).String(), "dev", "eth0")
	MustRun(t, podNS, "ip", "link", "set", "eth0", "up")
	MustRun(t, podNS, "ip", "route", "add", "default", "via", gw.Addr().String())
	return podNS
}

// MustRun runs a command inside ns and fails the test on error.
func MustRun(t testing.TB, ns string, argv ...string) string {
	t.Helper()
	out, err := nstest.Run(ns, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Monitor counts rtnetlink change notifications (links, IPv4 addresses, routes and
// neighbours, and FDB entries) in one namespace. IPv6 changes are not counted: the kernel
// makes them on its own (link-local addresses, DAD); tests of IPv6 entries subscribe with
// kernel.IPv6 instead.
type Monitor struct {
	n    atomic.Int64
	last atomic.Value // string: a description of the last change seen
}

// Watch starts a Monitor on ns; it stops when the test ends.
func Watch(t testing.TB, ns string) *Monitor {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	m := &Monitor{}
	routes := make(chan netlink.RouteUpdate, 64)
	neighs := make(chan netlink.NeighUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	links := make(chan netlink.LinkUpdate, 64)
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	see := func(s string) { m.n.Add(1); m.last.Store(s) }
	go func() {
		for {
			select {
			case u, ok := <-routes:
				if !ok {
					return
				}
				if u.Family == unix.AF_INET6 {
					continue
				}
				see(fmt.Sprintf("route %d %v", u.Type, u.Route))
			case u, ok := <-neighs:
				if !ok {
					return
				}
				if u.Family == unix.AF_INET6 {
					continue
				}
				see(fmt.Sprintf("neigh %d %v", u.Type, u.Neigh))
			case u, ok := <-addrs:
				if !ok {
					return
				}
				if u.LinkAddress.IP.To4() == nil {
					continue
				}
				see(fmt.Sprintf("addr %v %v", u.NewAddr, u.LinkAddress))
			case u, ok := <-links:
				if !ok {
					return
				}
				if u.IfInfomsg.Family == unix.AF_INET6 {
					continue
				}
				see(fmt.Sprintf("link %d %s", u.Header.Type, u.Attrs().Name))
			case <-done:
				return
			}
		}
	}()
	return m
}

// Settle waits until no notification has arrived for quiet (bounded by 5 s), then returns
// how many arrived since the last Settle and a description of the last one.
func (m *Monitor) Settle(quiet time.Duration) (int, string) {
	deadline := time.Now().Add(5 * time.Second)
	prev := m.n.Load()
	for time.Now().Before(deadline) {
		time.Sleep(quiet)
		cur := m.n.Load()
		if cur == prev {
			break
		}
		prev = cur
	}
	n := m.n.Swap(0)
	last, _ := m.last.Load().(string)
	return int(n), last
}

// Contains reports whether s contains every one of subs.
func Contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// Repairs counts the repairs a backend reports through backend.Env.OnRepair, by kind.
// It is safe for concurrent use.
type Repairs struct {
	mu sync.Mutex
	n  map[string]int
}

// Report is the OnRepair function.
func (r *Repairs) Report(kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[kind]++
}

// Count returns how many repairs of kind were reported.
func (r *Repairs) Count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[kind]
}

// String lists the counts, for test messages.
func (r *Repairs) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.n)
}

// WaitFor polls check every 5 ms until it returns nil and returns how long that took.
// within is how long the behaviour is expected to take: taking longer is logged with the
// time it took, not failed, since a loaded machine stalls any process now and then and
// timings belong in the benchmarks. The test fails, with check's last error, only when
// check has not passed after WaitBound(within).
func WaitFor(t testing.TB, within time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	bound := WaitBound(within)
	for {
		err := check()
		took := time.Since(start)
		if err == nil {
			if took > within {
				t.Logf("%s: took %s, more than the expected %s (a loaded machine?)", what, took.Round(time.Millisecond), within)
			}
			return took
		}
		if took > bound {
			t.Fatalf("%s: not within %s (expected within %s): %v", what, bound, within, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitBound is how long WaitFor waits for a behaviour expected within d before it fails
// the test: ten times d, and at least 15 s.
func WaitBound(d time.Duration) time.Duration { return max(10*d, 15*time.Second) }
