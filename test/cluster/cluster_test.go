package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/test/nstest"
)

// fakeWeftdPath is the stand-in daemon built once by TestMain (testdata/fakeweftd).
var fakeWeftdPath string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "weft-cluster-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	fakeWeftdPath = filepath.Join(dir, "fakeweftd")
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
	defer cancel()
	if err := Build(ctx, "./test/cluster/testdata/fakeweftd", fakeWeftdPath); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

const hostGW = `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`

func TestTwoNodeCluster(t *testing.T) {
	c := New(t, Options{Nodes: 2, Internet: true, WeftdPath: fakeWeftdPath})
	namespaces := []string{c.HubNS(), c.NodeNS(0), c.NodeNS(1), c.InternetNS()}
	listed := netnsList(t)
	for _, ns := range namespaces {
		if !slices.Contains(listed, ns) {
			t.Fatalf("namespace %s not in ip netns list %v", ns, listed)
		}
	}
	if got, want := c.EtcdEndpoint(), "http://192.0.2.254:2379"; got != want {
		t.Errorf("EtcdEndpoint = %s, want %s", got, want)
	}

	// The underlay, both ways, and the routed internet segment.
	if err := c.NodeHost(0).Ping(c.NodeIP(1), 3, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.NodeHost(1).Ping(c.NodeIP(0), 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.NodeHost(0).Ping(InternetIP, 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	out, err := c.Exec(c.NodeNS(0), "sysctl", "-n", "net.ipv4.ip_forward")
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Fatalf("node ip_forward = %q, %v", out, err)
	}

	c.PutConfig(hostGW)
	w0 := c.StartNode(0)
	w1 := c.StartNodeWith(1, WeftdOptions{Omit: []string{"healthz-ip"}, Env: []string{"FAKE=1"}})
	if slices.Contains(w1.Args(), "--healthz-ip") || !slices.Contains(w1.Args(), "--subnet-file") {
		t.Errorf("Omit not applied: %v", w1.Args())
	}
	// Each node its own WireGuard key file (never /run/flannel/wgkey, shared by all).
	for i, w := range []*Weftd{w0, w1} {
		if want := "WIREGUARD_KEY_FILE=" + c.WireGuardKeyFile(i); !slices.Contains(w.env, want) || !strings.HasPrefix(c.WireGuardKeyFile(i), c.NodeDir(i)) {
			t.Errorf("node %d weftd environment lacks %s", i, want)
		}
	}
	env0, err := c.WaitSubnetEnv(0, 20*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, w0.Log())
	}
	env1, err := c.WaitSubnetEnv(1, 20*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, w1.Log())
	}
	if env0.Subnet.String() != "10.244.1.1/24" || env1.Subnet.String() != "10.244.2.1/24" || env0.MTU != 1500 {
		t.Fatalf("subnet files: %+v %+v", env0, env1)
	}

	p0, p0b, p1 := c.AddPod(0), c.AddPod(0), c.AddPod(1)
	for _, tc := range []struct {
		pod  *Pod
		want string
	}{{p0, "10.244.1.2"}, {p0b, "10.244.1.3"}, {p1, "10.244.2.2"}} {
		if tc.pod.IP.String() != tc.want {
			t.Errorf("pod %s: want address %s", tc.pod, tc.want)
		}
	}
	if len(c.Pods()) != 3 {
		t.Errorf("Pods() = %v", c.Pods())
	}

	// Same node through cni0, then across nodes through the stand-in's host-gw routes.
	if err := p0.Ping(p0b.IP, 2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p0.Ping(p1.IP, 3, 10*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, w0.Log())
	}
	src, err := TCPTransferSource(p0, p1, 4<<20, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if src.Addr() != p0.IP {
		t.Errorf("receiver saw %s, want %s (no NAT between pods)", src, p0.IP)
	}
	if err := TCPTransfer(p1, p0b, 1<<20, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	// DF: 1472 bytes of payload fit a 1500 MTU, 1600 do not.
	if _, err := p0.PingWith(p1.IP, 1, 5*time.Second, PingOptions{Size: 1472, DF: true}); err != nil {
		t.Fatal(err)
	}
	res, err := p0.PingWith(p1.IP, 1, time.Second, PingOptions{Size: 1600, DF: true})
	if !errors.Is(err, ErrMessageTooLong) || !res.TooLong {
		t.Fatalf("oversized DF ping: %v (result %+v)", err, res)
	}

	// The internet only answers pods through a masquerading node.
	if _, err := c.Exec(c.NodeNS(0), "iptables", "-t", "nat", "-A", "POSTROUTING",
		"-s", "10.244.0.0/16", "!", "-d", "10.244.0.0/16", "-j", "MASQUERADE"); err != nil {
		t.Fatal(err)
	}
	src, err = TCPTransferSource(p0, c.Internet(), 64<<10, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if src.Addr() != c.NodeIP(0) {
		t.Errorf("internet saw %s, want the node address %s", src, c.NodeIP(0))
	}

	// etcd from the root namespace, through the hub.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := c.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, c.Prefix()+"/subnets/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	cli.Close()
	if err != nil || len(resp.Kvs) != 2 {
		t.Fatalf("leases in etcd: %v, %v", resp, err)
	}

	// Process control.
	pid := w0.PID()
	if err := w0.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := w0.WaitLog("fakeweftd: ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if w0.PID() == pid || !w0.Running() || processAlive(pid) {
		t.Errorf("restart: old pid %d alive=%v, new pid %d running=%v", pid, processAlive(pid), w0.PID(), w0.Running())
	}
	if err := w0.Stop(); err != nil {
		t.Errorf("Stop: %v\n%s", err, w0.Log())
	}
	if got := strings.Count(w0.Log(), "fakeweftd: ready"); got != 2 {
		t.Errorf("log shows %d starts, want 2:\n%s", got, w0.Log())
	}
	w1.Kill()
	if w1.Running() {
		t.Error("killed weftd still running")
	}
	if err := w1.Wait(time.Second); err == nil {
		t.Error("Wait after SIGKILL returned nil")
	}
	if err := w1.Start(); err != nil {
		t.Fatal(err)
	}
	if err := w1.Wait(300 * time.Millisecond); !errors.Is(err, ErrStillRunning) {
		t.Errorf("Wait on a running weftd: %v", err)
	}

	// Close with a weftd still running: everything goes.
	livePID := w1.PID()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, c, append(namespaces, p0.NS, p0b.NS, p1.NS), []int{pid, livePID})
	if _, err := c.TryAddPod(0); !errors.Is(err, ErrClosed) {
		t.Errorf("TryAddPod after Close: %v", err)
	}
	if err := w1.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
}

func TestOwnDirAndSinglePodErrors(t *testing.T) {
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var lines []string
	c, err := Start(ctx, Options{Nodes: 1, MTU: 1400, EtcdPrefix: "/weft/test", WeftdPath: fakeWeftdPath},
		func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(lines) == 0 {
		t.Error("no progress lines logged")
	}
	if c.Internet() != nil || c.InternetNS() != "" {
		t.Error("internet made without Options.Internet")
	}
	out, err := c.Exec(c.NodeNS(0), "cat", "/sys/class/net/eth0/mtu")
	if err != nil || strings.TrimSpace(out) != "1400" {
		t.Errorf("node eth0 mtu = %q, %v", out, err)
	}
	if _, err := c.TryAddPod(0); err == nil || !strings.Contains(err.Error(), "WaitSubnetEnv") {
		t.Errorf("TryAddPod without subnet file: %v", err)
	}
	if err := c.TryPutConfig(hostGW); err != nil {
		t.Fatal(err)
	}
	w, err := c.TryStartNode(0, WeftdOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(w.Args(), "/weft/test") {
		t.Errorf("--etcd-prefix not passed: %v", w.Args())
	}
	env, err := c.WaitSubnetEnv(0, 20*time.Second)
	if err != nil {
		t.Fatalf("%v\n%s", err, w.Log())
	}
	if env.MTU != 1400 {
		t.Errorf("FLANNEL_MTU = %d", env.MTU)
	}
	p, err := c.TryAddPod(0)
	if err != nil {
		t.Fatal(err)
	}
	out, err = c.Exec(p.NS, "cat", "/sys/class/net/eth0/mtu")
	if err != nil || strings.TrimSpace(out) != "1400" {
		t.Errorf("pod eth0 mtu = %q, %v", out, err)
	}
	if err := c.DeletePod(p); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(netnsList(t), p.NS) || len(c.Pods()) != 0 {
		t.Error("DeletePod left the pod")
	}
	dir := c.Dir()
	pid := w.PID()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start's own directory %s survived Close: %v", dir, err)
	}
	assertGone(t, c, []string{c.HubNS(), c.NodeNS(0)}, []int{pid})
}

func TestStartFailureCleansUp(t *testing.T) {
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the first ip command fails, after the hub namespace exists
	before := netnsList(t)
	if _, err := Start(ctx, Options{Nodes: 3}, nil); err == nil {
		t.Fatal("Start with a cancelled context succeeded")
	}
	mine := fmt.Sprintf("%s%d-", nstest.Prefix, os.Getpid())
	for _, ns := range netnsList(t) {
		if strings.HasPrefix(ns, mine) && !slices.Contains(before, ns) {
			t.Errorf("namespace %s left after a failed Start", ns)
		}
	}
	if _, err := Start(context.Background(), Options{Nodes: MaxNodes + 1}, nil); err == nil {
		t.Error("too many nodes accepted")
	}
}

func TestParsePing(t *testing.T) {
	for _, tc := range []struct {
		name       string
		out        string
		sent, recv int
		tooLong    bool
	}{
		{"ok", "3 packets transmitted, 3 received, 0% packet loss, time 402ms", 3, 3, false},
		{"local", "ping: local error: message too long, mtu=1450\n5 packets transmitted, 0 received, +5 errors", 5, 0, true},
		{"icmp", "From 10.244.1.1 icmp_seq=1 Frag needed and DF set (mtu = 1450)\n1 packets transmitted, 0 received, +1 errors", 1, 0, true},
		{"none", "", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := parsePing(tc.out)
			if r.Transmitted != tc.sent || r.Received != tc.recv || r.TooLong != tc.tooLong {
				t.Errorf("parsePing = %+v", r)
			}
		})
	}
}

func TestAddHostAndEnv(t *testing.T) {
	a := netip.MustParseAddr("10.244.1.0")
	for _, tc := range []struct {
		n    int
		want string
	}{{2, "10.244.1.2"}, {255, "10.244.1.255"}, {256, "10.244.2.0"}} {
		if got := addHost(a, tc.n); got.String() != tc.want {
			t.Errorf("addHost(%s, %d) = %s, want %s", a, tc.n, got, tc.want)
		}
	}
	if addHost(netip.MustParseAddr("255.255.255.255"), 1).IsValid() {
		t.Error("overflow not detected")
	}
	got := childEnv([]string{"PATH=/bin", "FLANNELD_IFACE=x", "WEFT_DEBUG=1", "HOME=/root"})
	if !slices.Equal(got, []string{"PATH=/bin", "HOME=/root"}) {
		t.Errorf("childEnv = %v", got)
	}
}

func netnsList(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range b {
		names = append(names, e.Name())
	}
	return names
}

func processAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// assertGone checks that no namespace in names remains and that no process started for the
// cluster (by PID, and by any command line naming the cluster directory) is left.
func assertGone(t *testing.T, c *Cluster, names []string, pids []int) {
	t.Helper()
	listed := netnsList(t)
	for _, ns := range names {
		if ns != "" && slices.Contains(listed, ns) {
			t.Errorf("namespace %s survived Close", ns)
		}
	}
	for _, pid := range pids {
		if processAlive(pid) {
			t.Errorf("process %d survived Close", pid)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), c.Dir()) {
			t.Errorf("process %s survived Close: %q", p, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

func TestBuildShared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
	defer cancel()
	p1, err := buildShared(ctx, "./test/cluster/testdata/fakeweftd", "fakeweftd-buildtest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p1) })
	p2, err := buildShared(ctx, "./test/cluster/testdata/fakeweftd", "fakeweftd-buildtest")
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Errorf("two builds at %s and %s, want one shared path", p1, p2)
	}
	if st, err := os.Stat(p1); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("built binary %s: %v %v", p1, st, err)
	}
	if tmps, _ := filepath.Glob(p1 + ".*.tmp"); len(tmps) != 0 {
		t.Errorf("temporary builds left: %v", tmps)
	}
}

func TestWaitSubnetEnvFailsFastOnExit(t *testing.T) {
	c := New(t, Options{Nodes: 1, WeftdPath: fakeWeftdPath})
	// No config in etcd and a bad interface: the stand-in exits at once.
	w := c.StartNode(0, "--iface", "nosuchdev")
	start := time.Now()
	_, err := c.WaitSubnetEnv(0, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "nosuchdev") {
		t.Fatalf("WaitSubnetEnv: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("WaitSubnetEnv took %v to notice the exit", time.Since(start))
	}
	var exitErr *exec.ExitError
	if err := w.Wait(time.Second); !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("Wait = %v, want exit status 1", err)
	}
}
