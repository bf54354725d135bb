package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/pkg/status"
	"github.com/weftnet/weft/test/cluster"
)

const healthPort = "10267"

// nodeHTTP returns a client whose connections are dialled inside node i's namespace, where
// weftd's health endpoint listens on 127.0.0.1.
func nodeHTTP(c *cluster.Cluster, i int) *http.Client {
	ns := c.NodeNS(i)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = nsutil.Do(ns, func() error {
				var d net.Dialer
				conn, err = d.DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
}

func get(t *testing.T, c *cluster.Cluster, i int, path string) string {
	t.Helper()
	resp, err := nodeHTTP(c, i).Get("http://127.0.0.1:" + healthPort + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric returns the value of one sample, parsed with the Prometheus text parser.
func metric(t *testing.T, c *cluster.Cluster, i int, name, label, value string) float64 {
	t.Helper()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(get(t, c, i, "/metrics")))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	fam, ok := fams[name]
	if !ok {
		return 0
	}
	for _, m := range fam.Metric {
		match := label == ""
		for _, l := range m.Label {
			if l.GetName() == label && l.GetValue() == value {
				match = true
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	return 0
}

// listenUDP opens a UDP listener inside a pod and returns a channel of received payloads.
func listenUDP(t *testing.T, p *cluster.Pod, port int) <-chan string {
	t.Helper()
	var conn net.PacketConn
	if err := nsutil.Do(p.NS, func() (err error) {
		conn, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan string, 16)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

// innerUDP builds an IPv4/UDP packet with a valid header checksum (UDP checksum 0).
func innerUDP(src, dst netip.Addr, dport int, payload string) []byte {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	copy(b[12:16], src.AsSlice())
	copy(b[16:20], dst.AsSlice())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], 40000)
	binary.BigEndian.PutUint16(b[22:], uint16(dport))
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

// sendRawUDP sends a UDP datagram with a forged source address and port from inside ns
// (a raw socket with IP_HDRINCL), as an attacker on the underlay could.
func sendRawUDP(t *testing.T, ns string, src, dst netip.AddrPort, payload []byte) {
	t.Helper()
	pkt := innerUDP(src.Addr(), dst.Addr(), int(dst.Port()), string(payload))
	binary.BigEndian.PutUint16(pkt[20:], src.Port())
	err := nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestUDPAntiSpoofingAndObservability: datagrams to port 8285 from a non-peer, and from a
// peer's address carrying an inner source outside its subnet, never reach a pod and are
// counted; /metrics and /status report what the node really has.
func TestUDPAntiSpoofingAndObservability(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`)
	// The firewall (--restrict-tunnel-port) would drop the stranger's datagram before the
	// forwarder sees it; switch it off here to test the forwarder's own checks, the second
	// line of defence. The firewall's drop is tested in the fault tests.
	_, pods, envs := startNodes(t, c, []int{0, 1}, "--healthz-port", healthPort, "--restrict-tunnel-port=false")
	pingAll(t, pods, 10*time.Second)
	got := listenUDP(t, pods[1], 9999)
	node1 := netip.AddrPortFrom(c.NodeIP(1), 8285)

	// 1. From a non-peer (the hub's address) carrying a packet from node 0's pod.
	sendRawUDP(t, c.HubNS(), netip.AddrPortFrom(cluster.HubIP, 8285), node1, innerUDP(pods[0].IP, pods[1].IP, 9999, "from a stranger"))
	// 2. From peer node 0's address and port, with an inner source outside its subnet.
	sendRawUDP(t, c.NodeNS(0), netip.AddrPortFrom(c.NodeIP(0), 8285), node1, innerUDP(netip.MustParseAddr("10.244.250.7"), pods[1].IP, 9999, "spoofed inner source"))
	// 3. A control: the same kind of packet from the peer with a proper inner source arrives.
	sendRawUDP(t, c.NodeNS(0), netip.AddrPortFrom(c.NodeIP(0), 8285), node1, innerUDP(pods[0].IP, pods[1].IP, 9999, "control"))
	select {
	case msg := <-got:
		if msg != "control" {
			t.Fatalf("the pod received %q", msg)
		}
	case <-time.After(15 * time.Second): // a hang bound: one packet, but a loaded machine may stall
		t.Fatal("the control datagram did not arrive: the test's forging is broken")
	}
	select {
	case msg := <-got:
		t.Fatalf("the pod received %q", msg)
	case <-time.After(300 * time.Millisecond):
	}
	if v := metric(t, c, 1, "weft_drops_total", "reason", "not-peer"); v < 1 {
		t.Errorf("not-peer drops = %v, want >= 1", v)
	}
	if v := metric(t, c, 1, "weft_drops_total", "reason", "spoofed-inner-source"); v < 1 {
		t.Errorf("spoofed-inner-source drops = %v, want >= 1", v)
	}

	// Counters move with traffic.
	before := metric(t, c, 0, "weft_packets_total", "direction", "tunnel-out")
	if err := cluster.TCPTransfer(pods[0], pods[1], 4<<20, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if after := metric(t, c, 0, "weft_packets_total", "direction", "tunnel-out"); after < before+1000 {
		t.Errorf("tunnel-out packets %v -> %v after a 4 MiB transfer", before, after)
	}
	if v := metric(t, c, 0, "weft_lease_held", "", ""); v != 1 {
		t.Errorf("weft_lease_held = %v", v)
	}
	if v := metric(t, c, 0, "weft_peers", "", ""); v != 1 {
		t.Errorf("weft_peers = %v", v)
	}
	if v := metric(t, c, 0, "weft_lease_expires_in_seconds", "", ""); v < 80000 {
		t.Errorf("lease expires in %v s, want about a day", v)
	}

	// /status says what the node has.
	var st status.Status
	if err := json.Unmarshal([]byte(get(t, c, 0, status.Path)), &st); err != nil {
		t.Fatal(err)
	}
	if st.Lease.Subnet != envs[0].Subnet.Masked() || st.Backend.Type != "udp" || st.Backend.Device != "flannel0" || st.Backend.MTU != envs[0].MTU || !st.Backend.Active {
		t.Errorf("status %+v", st)
	}
	if len(st.Peers) != 1 || st.Peers[0].Subnet != envs[1].Subnet.Masked() || st.Peers[0].State != status.PeerProgrammed || st.Peers[0].PublicIP != c.NodeIP(1) {
		t.Errorf("status peers %+v", st.Peers)
	}
	if !strings.Contains(get(t, c, 0, "/readyz"), "ok") {
		t.Errorf("/readyz: %s", get(t, c, 0, "/readyz"))
	}
}

// TestRepairCountedInMetrics: a host-gw route deleted by hand comes back and the repair
// counter moves.
func TestRepairCountedInMetrics(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	_, pods, envs := startNodes(t, c, []int{0, 1}, "--healthz-port", healthPort)
	pingAll(t, pods, 10*time.Second)
	peer := envs[1].Subnet.Masked().String()
	if _, err := c.Exec(c.NodeNS(0), "ip", "route", "del", peer); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "route restored", func() error {
		if routeTo(t, c, 0, peer) == "" {
			return fmt.Errorf("no route to %s", peer)
		}
		return nil
	})
	if v := metric(t, c, 0, "weft_dataplane_repairs_total", "kind", "route"); v < 1 {
		t.Errorf("weft_dataplane_repairs_total{kind=route} = %v", v)
	}
	pingAll(t, pods, 5*time.Second)
}
