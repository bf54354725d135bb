//go:build linux

// Package tundevtest holds the namespace test helpers that the userspace TUN backends'
// tests (udp, gre) share: the two-node, two-pod cluster, running commands and ping inside
// its namespaces, building IPv4/UDP packets and capturing a node's underlay traffic.
//
// Everything it creates lives in namespaces made by nstest.Temp and is removed when the
// test ends; it never touches the namespace the test runs in. It is imported by tests only.
package tundevtest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

// Cluster is the test topology: two nodes on one veth link, each with a pod behind a
// gateway address.
//
//	pod A 10.244.1.2 --(veth)-- 10.244.1.1 node A 192.0.2.1 ==(veth)== 192.0.2.2 node B 10.244.2.1 --(veth)-- 10.244.2.2 pod B
//
// The nodes' underlay device and the pods' device are eth0, the nodes' pod-side veth is
// cni0. Every device, address and route lives in namespaces the test creates.
type Cluster struct {
	NodeA, NodeB, PodA, PodB string // namespace names
}

// Run runs argv in ns and returns its output; it fails the test on error.
func Run(t *testing.T, ns string, argv ...string) string {
	t.Helper()
	out, err := nstest.Run(ns, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// NewCluster creates the namespaces and links of the Cluster, removed when the test ends.
func NewCluster(t *testing.T) Cluster {
	t.Helper()
	c := Cluster{
		NodeA: nstest.Temp(t, "nodeA"),
		NodeB: nstest.Temp(t, "nodeB"),
		PodA:  nstest.Temp(t, "podA"),
		PodB:  nstest.Temp(t, "podB"),
	}
	// The underlay link. Creating both ends inside node A and moving one keeps the root
	// namespace untouched.
	Run(t, c.NodeA, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0b")
	Run(t, c.NodeA, "ip", "link", "set", "eth0b", "netns", c.NodeB)
	Run(t, c.NodeB, "ip", "link", "set", "eth0b", "name", "eth0")
	for ns, addr := range map[string]string{c.NodeA: "192.0.2.1/24", c.NodeB: "192.0.2.2/24"} {
		Run(t, ns, "ip", "addr", "add", addr, "dev", "eth0")
		Run(t, ns, "ip", "link", "set", "eth0", "up")
		Run(t, ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	}
	for _, p := range []struct{ node, pod, gw, addr string }{
		{c.NodeA, c.PodA, "10.244.1.1", "10.244.1.2"},
		{c.NodeB, c.PodB, "10.244.2.1", "10.244.2.2"},
	} {
		Run(t, p.node, "ip", "link", "add", "cni0", "type", "veth", "peer", "name", "pod0")
		Run(t, p.node, "ip", "link", "set", "pod0", "netns", p.pod)
		Run(t, p.node, "ip", "addr", "add", p.gw+"/24", "dev", "cni0")
		Run(t, p.node, "ip", "link", "set", "cni0", "up")
		Run(t, p.pod, "ip", "link", "set", "pod0", "name", "eth0")
		Run(t, p.pod, "ip", "addr", "add", p.addr+"/24", "dev", "eth0")
		Run(t, p.pod, "ip", "link", "set", "eth0", "up")
		Run(t, p.pod, "ip", "route", "add", "default", "via", p.gw)
	}
	return c
}

// Ping runs ping in ns and returns its output; it fails the test unless ok matches.
func Ping(t *testing.T, ns string, ok bool, args ...string) string {
	t.Helper()
	out, err := nstest.Run(ns, append([]string{"ping", "-n", "-W", "2"}, args...)...)
	if (err == nil) != ok {
		t.Fatalf("ping %v in %s: success %v, want %v:\n%s", args, ns, err == nil, ok, out)
	}
	return out
}

// InnerUDP builds an IPv4/UDP packet (UDP checksum 0, header checksum right).
func InnerUDP(src, dst string, dport uint16, ttl uint8, data string) []byte {
	b := make([]byte, 28+len(data))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8], b[9] = ttl, unix.IPPROTO_UDP
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[20:], 33333)
	binary.BigEndian.PutUint16(b[22:], dport)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(data)))
	copy(b[28:], data)
	binary.BigEndian.PutUint16(b[10:], IPChecksum(b[:20]))
	return b
}

// IPChecksum is the IPv4 header checksum of h, skipping its checksum field.
func IPChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i != 10 {
			sum += uint32(h[i])<<8 | uint32(h[i+1])
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Capture opens a packet socket on eth0 inside ns that sees IPv4 packets (without the
// Ethernet header), with a 1s receive timeout. It is closed at cleanup.
func Capture(t *testing.T, ns string) int {
	t.Helper()
	return CaptureEtherType(t, ns, unix.ETH_P_IP)
}

// CaptureEtherType is Capture for the packets of EtherType etherType (unix.ETH_P_IPV6 for
// IPv6).
func CaptureEtherType(t *testing.T, ns string, etherType uint16) int {
	t.Helper()
	var fd int
	if err := nsutil.Do(ns, func() error {
		iface, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		proto := htons(etherType)
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto)); err != nil {
			return err
		}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1}); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: iface.Index})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
