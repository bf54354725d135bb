//go:build linux

package gre

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/backend/internal/tundev/tundevtest"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/nstest"
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

func run(t *testing.T, ns string, argv ...string) string {
	t.Helper()
	return tundevtest.Run(t, ns, argv...)
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	tc := tundevtest.NewCluster(t)
	c := &cluster{nodeA: tc.NodeA, nodeB: tc.NodeB, podA: tc.PodA, podB: tc.PodB}
	cfg, err := subnet.ParseConfig([]byte(`{"Network":"10.244.0.0/16","Backend":{"Type":"gre"}}`))
	if err != nil {
		t.Fatal(err)
	}
	c.cfg = cfg
	return c
}

// node is one running gre backend.
type node struct {
	*tundevtest.Node
	be      *greBackend
	repairs *kerneltest.Repairs // what the network reported through OnRepair
}

// newBackend builds the backend for the node namespace ns with the given Backend object.
func newBackend(t *testing.T, c *cluster, ns, addr, backendJSON string) *greBackend {
	t.Helper()
	return newBackendReporting(t, c, ns, addr, backendJSON, nil)
}

// newBackendReporting is newBackend with repairs reported to onRepair (may be nil).
func newBackendReporting(t *testing.T, c *cluster, ns, addr, backendJSON string, onRepair func(string)) *greBackend {
	t.Helper()
	cfg := *c.cfg
	cfg.Backend = []byte(backendJSON)
	ext := tundevtest.External(t, ns, addr)
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2)))
	be, err := New(backend.Env{Ext: ext, Network: &cfg, Log: logger.WithValues("node", addr), OnRepair: onRepair})
	if err != nil {
		t.Fatal(err)
	}
	return be.(*greBackend)
}

// startNode prepares and activates a backend inside ns, runs it and applies the peers.
// The returned node is stopped by Stop (and at cleanup).
func startNode(t *testing.T, c *cluster, ns, addr, own, backendJSON string, peers ...subnet.Lease) *node {
	t.Helper()
	repairs := &kerneltest.Repairs{}
	be := newBackendReporting(t, c, ns, addr, backendJSON, repairs.Report)
	lease := subnet.Lease{Subnet: netip.MustParsePrefix(own), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(addr)}}
	return &node{Node: tundevtest.StartNode(t, ns, be, lease, nil, peers...), be: be, repairs: repairs}
}

func (n *node) stats() Stats { return n.NW.(StatsReporter).Stats() }

func greLease(sn, pub string) subnet.Lease {
	return subnet.Lease{Subnet: netip.MustParsePrefix(sn), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(pub), BackendType: Name}}
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

// plainGRE is the header weft sends: no flags, version 0, IPv4.
var plainGRE = []byte{0, 0, 0x08, 0x00}

// sendForgedGRE sends, from inside ns through an IPPROTO_RAW socket (so any outer source
// can be set), an IPv4 datagram of protocol 47 from -> to carrying greHeader and payload.
func sendForgedGRE(t *testing.T, ns, from, to string, greHeader, payload []byte) {
	t.Helper()
	b := make([]byte, 20, 20+len(greHeader)+len(payload))
	b[0] = 0x45
	b[8], b[9] = 64, ipProtoGRE
	s, d := netip.MustParseAddr(from).As4(), netip.MustParseAddr(to).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	b = append(append(b, greHeader...), payload...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[10:], ipChecksum(b[:20]))
	if err := nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, b, 0, &unix.SockaddrInet4{Addr: d})
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

// nextGRE reads captured packets until a GRE datagram from src to dst arrives whose
// payload satisfies match (bounded by attempts and the socket's 1s timeout), and returns
// the whole outer packet.
func nextGRE(t *testing.T, fd int, src, dst string, match func(inner []byte) bool) []byte {
	t.Helper()
	buf := make([]byte, 65536)
	for i := 0; i < 200; i++ {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		b := buf[:n]
		if len(b) < 24 || b[9] != ipProtoGRE {
			continue
		}
		hl := int(b[0]&0xf) * 4
		if netip.AddrFrom4([4]byte(b[12:16])).String() == src && netip.AddrFrom4([4]byte(b[16:20])).String() == dst &&
			len(b) >= hl+4 && match(b[hl+4:]) {
			return append([]byte(nil), b...)
		}
	}
	t.Fatalf("no GRE %s -> %s captured", src, dst)
	return nil
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// listenUDP opens a UDP socket inside ns on addr; closed at cleanup.
func listenUDP(t *testing.T, ns, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := nsutil.Do(ns, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// kernelHasGRE reports whether a gre link can be made in a throwaway namespace, and the
// error when it cannot.
func kernelHasGRE(t *testing.T) error {
	t.Helper()
	ns := nstest.Temp(t, "greprobe")
	_, err := nstest.Run(ns, "ip", "link", "add", "probe0", "type", "gre", "local", "192.0.2.1", "ttl", "64")
	return err
}

// sendUDP sends one datagram with payload from namespace ns to dst (address:port).
func sendUDP(t *testing.T, ns, dst, payload string) {
	t.Helper()
	if err := nsutil.Do(ns, func() error {
		conn, err := net.Dial("udp", dst)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write([]byte(payload))
		return err
	}); err != nil {
		t.Fatalf("send a datagram from %s to %s: %v", ns, dst, err)
	}
}
