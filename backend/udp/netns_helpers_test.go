//go:build linux

package udp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/backend/internal/tundev/tundevtest"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
)

// The test cluster: two nodes on one veth link, each with a pod behind a gateway address.
//
//	pod A 10.244.1.2 --(veth)-- 10.244.1.1 node A 192.0.2.1 ==(veth)== 192.0.2.2 node B 10.244.2.1 --(veth)-- 10.244.2.2 pod B
//
// Every device, address and route lives in namespaces the test creates.
type cluster struct {
	nodeA, nodeB, podA, podB string
	cfg                      *subnet.Config
}

const networkJSON = `{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`

func run(t *testing.T, ns string, argv ...string) string {
	t.Helper()
	return tundevtest.Run(t, ns, argv...)
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	tc := tundevtest.NewCluster(t)
	c := &cluster{nodeA: tc.NodeA, nodeB: tc.NodeB, podA: tc.PodA, podB: tc.PodB}
	cfg, err := subnet.ParseConfig([]byte(networkJSON))
	if err != nil {
		t.Fatal(err)
	}
	c.cfg = cfg
	return c
}

// node is one running udp backend.
type node struct {
	*tundevtest.Node
	repairs *kerneltest.Repairs // what the network reported through OnRepair
}

// startNode builds the backend for the node namespace ns, prepares and activates it
// inside ns, and runs it. The returned node is stopped by Stop (and at cleanup).
func startNode(t *testing.T, c *cluster, ns, addr, own string, backendJSON string, peers ...subnet.Lease) *node {
	t.Helper()
	return startNodeEvery(t, c, ns, addr, own, backendJSON, 0, peers...)
}

// startNodeEvery is startNode with Run's full checks every resync (0: the default).
func startNodeEvery(t *testing.T, c *cluster, ns, addr, own string, backendJSON string, resync time.Duration, peers ...subnet.Lease) *node {
	t.Helper()
	cfg := *c.cfg
	cfg.Backend = []byte(backendJSON)
	ext := tundevtest.External(t, ns, addr)
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2)))
	repairs := &kerneltest.Repairs{}
	be, err := New(backend.Env{Ext: ext, Network: &cfg, Log: logger.WithValues("node", addr), OnRepair: repairs.Report})
	if err != nil {
		t.Fatal(err)
	}
	var beforeRun func(backend.Network)
	if resync > 0 {
		beforeRun = func(nw backend.Network) { nw.(*udpNetwork).plane.SetResync(resync) }
	}
	lease := subnet.Lease{Subnet: netip.MustParsePrefix(own), Attrs: subnet.LeaseAttrs{PublicIP: ext.PublicIP}}
	return &node{Node: tundevtest.StartNode(t, ns, be, lease, beforeRun, peers...), repairs: repairs}
}

func (n *node) stats() Stats { return n.NW.(StatsReporter).Stats() }

func peerLease(sn, pub string) subnet.Lease {
	return subnet.Lease{Subnet: netip.MustParsePrefix(sn), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(pub)}}
}

// ping runs ping in ns and returns its output; it fails the test unless ok matches.
func ping(t *testing.T, ns string, ok bool, args ...string) string {
	t.Helper()
	return tundevtest.Ping(t, ns, ok, args...)
}

// innerUDP builds an IPv4/UDP packet (UDP checksum 0, header checksum right).
func innerUDP(src, dst string, dport uint16, ttl uint8, data string) []byte {
	return tundevtest.InnerUDP(src, dst, dport, ttl, data)
}

func ipChecksum(h []byte) uint16 { return tundevtest.IPChecksum(h) }

// sendForged sends, from inside ns through a raw socket, a UDP datagram with any outer
// source carrying payload to dst.
func sendForged(t *testing.T, ns string, from, to netip.AddrPort, payload []byte) {
	t.Helper()
	outer := innerUDP(from.Addr().String(), to.Addr().String(), to.Port(), 64, "")
	outer = append(outer[:28], payload...)
	binary.BigEndian.PutUint16(outer[2:], uint16(len(outer)))
	binary.BigEndian.PutUint16(outer[20:], from.Port())
	binary.BigEndian.PutUint16(outer[24:], uint16(8+len(payload)))
	binary.BigEndian.PutUint16(outer[10:], 0)
	binary.BigEndian.PutUint16(outer[10:], ipChecksum(outer[:20]))
	if err := nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, outer, 0, &unix.SockaddrInet4{Addr: to.Addr().As4()})
	}); err != nil {
		t.Fatal(err)
	}
}

// capture opens a packet socket on eth0 inside ns that sees IPv4 packets (without the
// Ethernet header). It is closed at cleanup.
func capture(t *testing.T, ns string) int {
	t.Helper()
	return tundevtest.Capture(t, ns)
}

// nextUDP reads captured packets until a UDP datagram from src to dst:port arrives
// (bounded by attempts and the socket's 1s timeout) and returns the whole outer packet.
func nextUDP(t *testing.T, fd int, src, dst string, port uint16) []byte {
	t.Helper()
	buf := make([]byte, 65536)
	for i := 0; i < 200; i++ {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		b := buf[:n]
		if len(b) < 28 || b[9] != unix.IPPROTO_UDP {
			continue
		}
		hl := int(b[0]&0xf) * 4
		if netip.AddrFrom4([4]byte(b[12:16])).String() == src && netip.AddrFrom4([4]byte(b[16:20])).String() == dst &&
			binary.BigEndian.Uint16(b[hl+2:]) == port {
			return append([]byte(nil), b...)
		}
	}
	t.Fatalf("no UDP %s -> %s:%d captured", src, dst, port)
	return nil
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

type subnetEvent = subnet.Event

func removal(l subnet.Lease) subnet.Event { return subnet.Event{Type: subnet.Removed, Lease: l} }
