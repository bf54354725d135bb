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
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
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
//
// It has no goroutine: Settle reads the socket itself. The kernel queues a notification on
// the socket when it makes the change, so every change made before Settle returns is
// counted by it, however late a loaded machine would have scheduled a reader.
type Monitor struct {
	mu   sync.Mutex // guards all below; held while reading the socket
	s    *nl.NetlinkSocket
	n    int    // notifications counted since the last Settle
	last string // a description of the last one
}

// Watch starts a Monitor on ns; it stops when the test ends.
func Watch(t testing.TB, ns string) *Monitor {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s, err := nl.SubscribeAt(h, netns.None(), unix.NETLINK_ROUTE,
		unix.RTNLGRP_LINK, unix.RTNLGRP_NEIGH, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV4_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	// Room for the notifications of a whole test step (the kernel drops them, and says
	// so with ENOBUFS, when the socket is full).
	if err := unix.SetsockoptInt(s.GetFd(), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		_ = unix.SetsockoptInt(s.GetFd(), unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	m := &Monitor{s: s}
	t.Cleanup(func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		s.Close()
	})
	return m
}

// Settle waits until no notification has arrived for quiet (bounded by 5 s), then returns
// how many arrived since the last Settle and a description of the last one.
func (m *Monitor) Settle(quiet time.Duration) (int, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drainLocked()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(quiet)
		if m.drainLocked() == 0 {
			break
		}
	}
	n, last := m.n, m.last
	m.n = 0
	return n, last
}

// drainLocked counts the notifications queued on the socket, without waiting, and
// returns how many there were.
func (m *Monitor) drainLocked() int {
	buf := make([]byte, 1<<16)
	got := 0
	see := func(s string) { m.n++; m.last = s; got++ }
	for {
		n, _, err := unix.Recvfrom(m.s.GetFd(), buf, unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return got
		case err == unix.ENOBUFS:
			see("notifications lost (the socket was full)")
			continue
		case err != nil:
			see(fmt.Sprintf("reading notifications: %v", err))
			return got
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			see(fmt.Sprintf("parsing notifications: %v", err))
			continue
		}
		for _, msg := range msgs {
			if d, ok := describe(msg); ok {
				see(d)
			}
		}
	}
}

// describe describes a notification the Monitor counts; ok is false for one it does not
// (IPv6, or not a change).
func describe(msg syscall.NetlinkMessage) (d string, ok bool) {
	typ, b := msg.Header.Type, msg.Data
	switch typ {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		if len(b) < unix.SizeofIfInfomsg || nl.DeserializeIfInfomsg(b).Family == unix.AF_INET6 {
			return "", false
		}
		name := "?"
		hdr := unix.NlMsghdr(msg.Header)
		if l, err := netlink.LinkDeserialize(&hdr, b); err == nil {
			name = l.Attrs().Name
		}
		return fmt.Sprintf("link %d %s", typ, name), true
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		if len(b) < unix.SizeofIfAddrmsg || nl.DeserializeIfAddrmsg(b).Family != unix.AF_INET {
			return "", false
		}
		am := nl.DeserializeIfAddrmsg(b)
		return fmt.Sprintf("addr %d %s/%d on %d", typ, attrIP(b[unix.SizeofIfAddrmsg:], unix.IFA_ADDRESS), am.Prefixlen, am.Index), true
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		if len(b) < unix.SizeofRtMsg || nl.DeserializeRtMsg(b).Family == unix.AF_INET6 {
			return "", false
		}
		rm := nl.DeserializeRtMsg(b)
		return fmt.Sprintf("route %d %s/%d table %d type %d", typ, attrIP(b[unix.SizeofRtMsg:], unix.RTA_DST), rm.Dst_len, rm.Table, rm.Type), true
	case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
		n, err := netlink.NeighDeserialize(b)
		if err != nil {
			return fmt.Sprintf("neigh %d (%v)", typ, err), true
		}
		if n.Family == unix.AF_INET6 {
			return "", false
		}
		return fmt.Sprintf("neigh %d %v", typ, *n), true
	}
	return "", false
}

// attrIP returns the address in the route attribute typ of attrs, or "?".
func attrIP(attrs []byte, typ uint16) string {
	as, err := nl.ParseRouteAttr(attrs)
	if err != nil {
		return "?"
	}
	for _, a := range as {
		if a.Attr.Type == typ {
			if ip, ok := netip.AddrFromSlice(a.Value); ok {
				return ip.String()
			}
		}
	}
	return "?"
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
