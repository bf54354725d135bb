package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/pkg/status"
	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/nstest"
)

// greConfig is the network config of the gre tests for a Mode ("" for none: auto).
func greConfig(mode string) string {
	if mode == "" {
		return `{"Network":"10.244.0.0/16","Backend":{"Type":"gre"}}`
	}
	return fmt.Sprintf(`{"Network":"10.244.0.0/16","Backend":{"Type":"gre","Mode":%q}}`, mode)
}

// greLeaseCheck: a gre lease names its backend and carries no BackendData.
func greLeaseCheck(t *testing.T, v string, ip netip.Addr) {
	t.Helper()
	if want := fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null,"BackendType":"gre"}`, ip); v != want {
		t.Errorf("gre lease %s, want %s", v, want)
	}
}

// kernelGRE tries to make a gre link in a throwaway namespace: nil when the kernel has GRE
// (ip_gre), else the error ("Unknown device type"). Detected at run time, never assumed.
func kernelGRE(t *testing.T) error {
	t.Helper()
	ns := nstest.Temp(t, "greprobe")
	_, err := nstest.Run(ns, "ip", "link", "add", "probe0", "type", "gre", "local", "192.0.2.1", "ttl", "64")
	return err
}

// TestGREUserspace: the shared overlay walk with userspace GRE (a TUN and a raw socket).
func TestGREUserspace(t *testing.T) {
	runOverlay(t, overlayCase{
		config:     greConfig("userspace"),
		mtuLoss:    24,
		leaseCheck: greLeaseCheck,
		// The peer table is in userspace: a node that knows the peer forwards to it; one
		// that does not answers "net unreachable" for an address in the Network.
		peerState: func(t *testing.T, c *cluster.Cluster, n int, peer subnetenv.Env, _ netip.Addr) string {
			dst := peer.Subnet.Addr().Next()
			out, _ := c.Exec(c.NodeNS(n), "ping", "-c", "1", "-W", "1", dst.String())
			if strings.Contains(out, "Unreachable") {
				return ""
			}
			return "peer entry (ping: " + strings.TrimSpace(out) + ")"
		},
		restartState: func(t *testing.T, c *cluster.Cluster, n int) string {
			return ipOut(t, c, n, "-4", "route", "show", "dev", "weft-gre0") + " | " +
				ipOut(t, c, n, "-4", "-o", "addr", "show", "dev", "weft-gre0")
		},
	})
}

// TestGREKernel: the shared overlay walk with the kernel's GRE device. It needs ip_gre.
func TestGREKernel(t *testing.T) {
	if err := kernelGRE(t); err != nil {
		t.Skipf("kernel has no GRE support (ip_gre): %v", err)
	}
	runOverlay(t, overlayCase{
		config:     greConfig("kernel"),
		mtuLoss:    24,
		leaseCheck: greLeaseCheck,
		peerState: func(t *testing.T, c *cluster.Cluster, n int, peer subnetenv.Env, peerIP netip.Addr) string {
			var parts []string
			if r := ipOut(t, c, n, "-4", "route", "show", "exact", peer.Subnet.Masked().String()); r != "" {
				parts = append(parts, "route "+r)
			}
			if nb := ipOut(t, c, n, "-4", "neigh", "show", peerIPOf(c, peer), "dev", "weft.gre"); nb != "" {
				parts = append(parts, "neigh "+nb)
			}
			return strings.Join(parts, "; ")
		},
		restartState: func(t *testing.T, c *cluster.Cluster, n int) string {
			out, err := c.Exec(c.NodeNS(n), "cat", "/sys/class/net/weft.gre/ifindex")
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(out)
		},
	})
}

// TestGREAutoPicksUserspace: on a kernel without ip_gre, Mode auto logs once that gre runs
// in userspace and why, and the network works.
func TestGREAutoPicksUserspace(t *testing.T) {
	if err := kernelGRE(t); err == nil {
		t.Skip("this kernel has GRE support (ip_gre): auto picks the kernel device (TestGREKernel)")
	}
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(greConfig(""))
	ds, pods, envs := startNodes(t, c, []int{0, 1}, "--healthz-port", healthPort)
	for i, d := range ds {
		if err := d.WaitLog("GRE runs in userspace", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		log := d.RunLog()
		_, line, _ := strings.Cut(log, "GRE runs in userspace")
		line, _, _ = strings.Cut(line, "\n")
		for _, want := range []string{"kernel has no GRE support (ip_gre)", "reason=", "weft-gre0"} {
			if !strings.Contains(line, want) {
				t.Errorf("node %d: the userspace line lacks %q: %s", i, want, line)
			}
		}
		if n := countLines(log, "GRE runs in userspace"); n != 1 {
			t.Errorf("node %d logged the userspace choice %d times", i, n)
		}
		if envs[i].MTU != 1476 {
			t.Errorf("node %d FLANNEL_MTU %d, want 1476", i, envs[i].MTU)
		}
	}
	pingAll(t, pods, 10*time.Second)
	var st status.Status
	if err := json.Unmarshal([]byte(get(t, c, 0, status.Path)), &st); err != nil {
		t.Fatal(err)
	}
	if st.Backend.Type != "gre" || st.Backend.Device != "weft-gre0" || !st.Backend.Active ||
		st.Backend.Info["mode"] != "userspace" || !strings.Contains(st.Backend.Info["userspaceReason"], "ip_gre") {
		t.Errorf("status backend %+v", st.Backend)
	}
}

// TestGREKernelModeFails: Mode kernel on a kernel without ip_gre cannot work on this node,
// so weftd says why, naming ip_gre, and exits non-zero before taking a lease.
func TestGREKernelModeFails(t *testing.T) {
	if err := kernelGRE(t); err == nil {
		t.Skip("this kernel has GRE support (ip_gre): kernel mode works (TestGREKernel)")
	}
	c := cluster.New(t, cluster.Options{Nodes: 1})
	c.PutConfig(greConfig("kernel"))
	d := c.StartNode(0)
	err := d.Wait(20 * time.Second)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("weftd with Mode kernel on a kernel without GRE: exit %v, want a non-zero status\n%s", err, d.Log())
	}
	log := d.RunLog()
	for _, want := range []string{"kernel has no GRE support (ip_gre)", "weft.gre", `Mode \"kernel\"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if _, err := c.WaitSubnetEnv(0, 0); err == nil {
		t.Error("a subnet file was written")
	}
	if out := ipOut(t, c, 0, "-o", "link", "show"); strings.Contains(out, "weft.gre") || strings.Contains(out, "weft-gre0") {
		t.Errorf("devices left behind:\n%s", out)
	}
}

// TestGREUserspaceWireAndSpoofing: what crosses the underlay is plain GRE as any decoder
// (tcpdump) reads it, and forged GRE never reaches a pod and is counted.
func TestGREUserspaceWireAndSpoofing(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(greConfig("userspace"))
	_, pods, _ := startNodes(t, c, []int{0, 1}, "--healthz-port", healthPort)
	pingAll(t, pods, 10*time.Second)

	t.Run("tcpdump on the hub decodes GRE carrying the pods' packets", func(t *testing.T) {
		checkGREOnHub(t, c, pods)
	})

	t.Run("forged GRE never reaches a pod and is counted", func(t *testing.T) {
		got := listenUDP(t, pods[1], 9999)
		node1 := c.NodeIP(1)
		dropsBefore := greInputDrops(t, c, 1)
		// 1. From a non-peer (the hub's address) carrying a packet from node 0's pod:
		// WEFT-INPUT (--restrict-tunnel-port, on by default) drops it before the raw socket.
		sendRawGRE(t, c.HubNS(), cluster.HubIP, node1, innerUDP(pods[0].IP, pods[1].IP, 9999, "from a stranger"))
		// 2. From peer node 0's address, with an inner source outside its subnet: past the
		// firewall, the forwarder drops it.
		sendRawGRE(t, c.NodeNS(0), c.NodeIP(0), node1, innerUDP(netip.MustParseAddr("10.244.250.7"), pods[1].IP, 9999, "spoofed inner source"))
		// 3. A control: the same from the peer with a proper inner source arrives.
		sendRawGRE(t, c.NodeNS(0), c.NodeIP(0), node1, innerUDP(pods[0].IP, pods[1].IP, 9999, "control"))
		select {
		case msg := <-got:
			if msg != "control" {
				t.Fatalf("the pod received %q", msg)
			}
		case <-time.After(15 * time.Second): // a hang bound: one packet, but a loaded machine may stall
			t.Fatal("the control packet did not arrive: the test's forging is broken")
		}
		select {
		case msg := <-got:
			t.Fatalf("the pod received %q", msg)
		case <-time.After(300 * time.Millisecond):
		}
		if d := greInputDrops(t, c, 1) - dropsBefore; d != 1 {
			t.Errorf("WEFT-INPUT dropped %d GRE packets from non-peers, want 1", d)
		}
		if v := metric(t, c, 1, "weft_drops_total", "reason", "spoofed-inner-source"); v < 1 {
			t.Errorf("spoofed-inner-source drops = %v, want >= 1", v)
		}
	})
}

// greInputDrops reads the packet counter of WEFT-INPUT's rule that drops GRE from
// non-peers on node n.
func greInputDrops(t *testing.T, c *cluster.Cluster, n int) int {
	t.Helper()
	out, err := c.Exec(c.NodeNS(n), "iptables", "-w", "-t", "filter", "-L", "WEFT-INPUT", "-n", "-v", "-x")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[2] == "DROP" && (f[3] == "47" || f[3] == "gre") {
			v, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatalf("WEFT-INPUT line %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("no GRE DROP rule in WEFT-INPUT:\n%s", out)
	return 0
}

// sendRawGRE sends, from inside ns, a GRE datagram with the given outer source (any
// address, through an IP_HDRINCL raw socket) to dst, carrying inner.
func sendRawGRE(t *testing.T, ns string, src, dst netip.Addr, inner []byte) {
	t.Helper()
	pkt := make([]byte, 24, 24+len(inner))
	pkt[0], pkt[8], pkt[9] = 0x45, 64, 47
	copy(pkt[12:16], src.AsSlice())
	copy(pkt[16:20], dst.AsSlice())
	pkt[22] = 0x08 // GRE: no flags, version 0, protocol 0x0800
	pkt = append(pkt, inner...)
	pkt[2], pkt[3] = byte(len(pkt)>>8), byte(len(pkt))
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(pkt[i])<<8 | uint32(pkt[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	pkt[10], pkt[11] = byte(^uint16(sum)>>8), byte(^uint16(sum))
	if err := nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.As4()})
	}); err != nil {
		t.Fatal(err)
	}
}

// checkGREOnHub captures IP protocol 47 on the hub's bridge with tcpdump while the pods
// ping each other, decodes the capture with tcpdump -r and checks that it shows GRE
// (version 0, no flags) between the nodes' public addresses carrying the pods' ICMP.
func checkGREOnHub(t *testing.T, c *cluster.Cluster, pods map[int]*cluster.Pod) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "gre.pcap")
	stop := startTcpdump(t, c.HubNS(), "br0", file, "ip", "proto", "47")
	for i, from := range pods {
		for j, to := range pods {
			if i != j {
				if err := from.Ping(to.IP, 2, 5*time.Second); err != nil {
					t.Fatalf("pod %d -> pod %d: %v", i, j, err)
				}
			}
		}
	}
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "tcpdump", "-r", file, "-nn", "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	text := string(out)
	// Every GRE packet is version 0 without checksum, key or sequence number.
	if all, plain := strings.Count(text, "GREv"), strings.Count(text, "GREv0, Flags [none]"); all == 0 || all != plain {
		t.Errorf("%d GRE packets decoded, %d of them plain GREv0 without flags:\n%s", all, plain, text)
	}
	for i, from := range pods {
		for j, to := range pods {
			if i == j {
				continue
			}
			outer := fmt.Sprintf("%s > %s: GREv0, Flags [none]", c.NodeIP(from.Node), c.NodeIP(to.Node))
			inner := fmt.Sprintf("%s > %s: ICMP echo request", from.IP, to.IP)
			if !strings.Contains(text, outer) || !strings.Contains(text, inner) || !strings.Contains(text, "proto GRE (47)") {
				t.Errorf("pod %d -> pod %d: the capture lacks %q or %q:\n%s", i, j, outer, inner, text)
			}
		}
	}
	if !t.Failed() {
		t.Logf("decoded capture (first lines):\n%s", firstLines(text, 8))
	}
}

// startTcpdump starts tcpdump writing to file inside ns and waits until it listens. The
// returned stop ends it (SIGINT, so it flushes the file) and waits; cleanup kills it by
// PID if the test ends first. --immediate-mode matters: without it libpcap hands packets
// over in blocks, and those of the last second are lost when tcpdump is stopped.
func startTcpdump(t *testing.T, ns, iface, file string, filter ...string) (stop func()) {
	t.Helper()
	args := append([]string{"netns", "exec", ns, "tcpdump", "-i", iface, "-n", "--immediate-mode", "-U", "-Z", "root", "-w", file}, filter...)
	cmd := exec.Command("ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tcpdump: %v", err)
	}
	done := make(chan error, 1)
	listening := make(chan struct{})
	var lines []string
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if !signalled && strings.Contains(sc.Text(), "listening on") {
				close(listening)
				signalled = true
			}
		}
		done <- cmd.Wait()
	}()
	finished := false
	t.Cleanup(func() {
		if !finished {
			_ = cmd.Process.Kill() // by PID: ip netns exec execs tcpdump
			<-done
		}
	})
	select {
	case <-listening:
	case err := <-done:
		finished = true
		t.Fatalf("tcpdump exited: %v\n%s", err, strings.Join(lines, "\n"))
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not start listening within 10s")
	}
	return func() {
		if finished {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		finished = true
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
