package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/test/cluster"
)

// The stand-in for flanneld's udp backend that the rollback test switches a node to. It is
// this test binary run again as a helper process (TestFlanneldStandInProcess) inside a
// node's namespace, and it does what flanneld's udp backend does to the node, in the same
// order and with the same calls (flannel's pkg/ip/tun.go and pkg/backend/udp):
//
//   - open /dev/net/tun and TUNSETIFF the name "flannel%d" with IFF_TUN|IFF_NO_PI: the
//     kernel creates the first free flannelN (flannel0 unless it exists) and the device is
//     not persistent; nothing else is set on the queue (no offloads, no persistence);
//   - configureIface: add the own subnet's network address as a /32 (an error is fatal),
//     set the MTU, bring the link up, add the route to the Network through it, where
//     EEXIST is ignored;
//   - listen on UDP <node address>:8285 and forward: a packet read from the TUN (into a
//     buffer of MTU bytes, as flanneld's proxy does) goes, TTL decremented, as the whole
//     payload of one datagram to the peer whose subnet holds the destination; a datagram's
//     payload is written, TTL decremented, to the TUN.
//
// It talks to no store: the test gives it the own lease and the peers. It prints
// "ready <device>" once configured, and runs until it is killed.

// standInEnv carries the stand-in's configuration (JSON) to the helper process.
const standInEnv = "WEFT_TEST_FLANNELD_STANDIN"

// standInConfig is the stand-in's configuration.
type standInConfig struct {
	NodeIP  netip.Addr                  // the address the UDP socket binds (flanneld: the interface's)
	Subnet  netip.Prefix                // the own lease's subnet
	Network netip.Prefix                // the whole flannel network
	MTU     int                         // the external MTU minus 28
	Peers   map[netip.Prefix]netip.Addr // peer subnet -> public IP
}

const flanneldUDPPort = 8285

// TestFlanneldStandInProcess is not a test: it is the stand-in's entry point when the test
// binary runs as a helper process (standInEnv set), and returns at once otherwise.
func TestFlanneldStandInProcess(t *testing.T) {
	raw := os.Getenv(standInEnv)
	if raw == "" {
		return
	}
	var cfg standInConfig
	err := json.Unmarshal([]byte(raw), &cfg)
	if err == nil {
		err = runStandIn(cfg)
	}
	fmt.Fprintln(os.Stderr, "stand-in failed:", err)
	os.Exit(1)
}

func runStandIn(cfg standInConfig) error {
	// pkg/ip/tun.go: OpenTun("flannel%d").
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ifr, err := unix.NewIfreq("flannel%d")
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("TUNSETIFF: %w", err)
	}
	name := ifr.Name()
	tunFile := os.NewFile(uintptr(fd), "tun") // blocking, as flanneld's

	// configureIface.
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	local := &net.IPNet{IP: cfg.Subnet.Addr().AsSlice(), Mask: net.CIDRMask(32, 32)}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: local}); err != nil {
		return fmt.Errorf("failed to add IP address %s to %s: %w", local, name, err)
	}
	if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return err
	}
	route := "added"
	dst := &net.IPNet{IP: cfg.Network.Addr().AsSlice(), Mask: net.CIDRMask(cfg.Network.Bits(), 32)}
	err = netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_UNIVERSE, Dst: dst})
	if errors.Is(err, unix.EEXIST) {
		route = "exists" // ignored, as flanneld does
	} else if err != nil {
		return fmt.Errorf("failed to add route (%s -> %s): %w", dst, name, err)
	}

	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.NodeIP, flanneldUDPPort)))
	if err != nil {
		return err
	}
	fmt.Printf("ready %s route=%s\n", name, route)

	errc := make(chan error, 2)
	go func() { errc <- standInTUNToUDP(tunFile, conn, cfg) }()
	go func() { errc <- standInUDPToTUN(conn, tunFile, cfg.MTU) }()
	return <-errc
}

// standInTUNToUDP is flanneld's tun_to_udp: read one packet into an MTU-sized buffer,
// find the peer, decrement the TTL, send. A read that fills the buffer with a packet whose
// total length is larger (a superpacket the kernel should not hand a reader without the
// virtio-net header) is reported once: flanneld would forward it truncated.
func standInTUNToUDP(tunFile *os.File, conn *net.UDPConn, cfg standInConfig) error {
	buf := make([]byte, cfg.MTU)
	oversized := false
	for {
		n, err := tunFile.Read(buf)
		if err != nil {
			return fmt.Errorf("TUN read: %w", err)
		}
		p := buf[:n]
		if n < 20 || p[0]>>4 != 4 {
			continue
		}
		if tot := int(binary.BigEndian.Uint16(p[2:4])); tot > n && !oversized {
			oversized = true
			fmt.Printf("oversized packet from the TUN: total length %d, read %d\n", tot, n)
		}
		dst := netip.AddrFrom4([4]byte(p[16:20]))
		var next netip.Addr
		for sn, pub := range cfg.Peers {
			if sn.Contains(dst) {
				next = pub
			}
		}
		if !next.IsValid() || !decrementTTL(p) {
			continue
		}
		_, _ = conn.WriteToUDPAddrPort(p, netip.AddrPortFrom(next, flanneldUDPPort))
	}
}

// standInUDPToTUN is flanneld's udp_to_tun: any datagram of at least an IPv4 header,
// TTL decremented, is written to the TUN.
func standInUDPToTUN(conn *net.UDPConn, tunFile *os.File, mtu int) error {
	buf := make([]byte, mtu)
	for {
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return fmt.Errorf("UDP read: %w", err)
		}
		if n < 20 || !decrementTTL(buf[:n]) {
			continue
		}
		_, _ = tunFile.Write(buf[:n])
	}
}

// decrementTTL lowers an IPv4 packet's TTL and patches the header checksum (RFC 1624);
// it reports false, for a packet to drop, when the TTL reaches zero.
func decrementTTL(p []byte) bool {
	if p[8] <= 1 {
		return false
	}
	p[8]--
	sum := uint32(binary.BigEndian.Uint16(p[10:12])) + 0x0100
	sum = sum&0xffff + sum>>16
	binary.BigEndian.PutUint16(p[10:12], uint16(sum))
	return true
}

// standIn is a running stand-in process on one node.
type standIn struct {
	node int
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{} // closed once reaped
}

// startStandIn starts the stand-in in node n's namespace. It is killed, by its PID, when
// the test ends (and with the test process: Pdeathsig).
func startStandIn(t *testing.T, c *cluster.Cluster, n int, cfg standInConfig) *standIn {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", c.NodeNS(n), exe, "-test.run=^TestFlanneldStandInProcess$")
	cmd.Env = append(os.Environ(), standInEnv+"="+string(raw))
	s := &standIn{node: n, cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// ip netns exec execs the helper, so the PID is the stand-in's.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Dir = filepath.Dir(exe)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// waitReady waits up to timeout for the stand-in to configure its device and returns the
// device's name and what happened to its route ("added" or "exists").
func (s *standIn) waitReady(timeout time.Duration) (dev, route string, err error) {
	deadline := time.Now().Add(timeout)
	for {
		out := s.out.String()
		if i := strings.Index(out, "ready "); i >= 0 {
			if f := strings.Fields(out[i:]); len(f) >= 3 {
				return f[1], strings.TrimPrefix(f[2], "route="), nil
			}
		}
		select {
		case <-s.done:
			return "", "", fmt.Errorf("stand-in on node %d exited: %s", s.node, out)
		default:
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("stand-in on node %d not ready within %v: %s", s.node, timeout, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop SIGTERMs the stand-in (flanneld's queue closes as it exits) and waits, bounded,
// until it is reaped; idempotent.
func (s *standIn) stop(t *testing.T) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Errorf("stand-in on node %d (pid %d) ignored SIGTERM", s.node, s.cmd.Process.Pid)
	}
}

// lockedBuffer is a bytes.Buffer safe for the process's writes and the test's reads.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
