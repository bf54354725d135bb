package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/pkg/status"
	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/nstest"
)

// wgConfig is the network config of the wireguard tests for an Implementation ("" for
// none: auto).
func wgConfig(impl string) string {
	if impl == "" {
		return `{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard"}}`
	}
	return fmt.Sprintf(`{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard","Implementation":%q}}`, impl)
}

// kernelWireGuard tries to make a wireguard link in a throwaway namespace: nil when the
// kernel has WireGuard, else the error ("Unknown device type"). Detected, never assumed.
func kernelWireGuard(t *testing.T) error {
	t.Helper()
	ns := nstest.Temp(t, "wgprobe")
	_, err := nstest.Run(ns, "ip", "link", "add", "probe0", "type", "wireguard")
	return err
}

// wgKeyFile is node i's private key file. The nodes share one mount namespace, so the
// cluster gives each its own through WIREGUARD_KEY_FILE (flanneld's variable); /run/flannel
// is never touched.
func wgKeyFile(c *cluster.Cluster, i int) string { return c.WireGuardKeyFile(i) }

// wgHandshakeWait bounds the wait for pods to talk once WireGuard peers are (re)configured.
// Two nodes that learn of each other together no longer both initiate (their initiations
// crossed, and WireGuard waited REKEY_TIMEOUT, 5 s, before the next: the flake that had
// raised this to 25 s); the handshake of a new pair is settled within 250 ms
// (backend/wireguard handshakeDelay) plus a round trip, so the first ping attempt
// (2 s) carries it and a second fits. 5 s stays below a WireGuard retransmission (5 s plus
// up to 333 ms of jitter): a lost first handshake fails the test instead of hiding in it.
const wgHandshakeWait = 5 * time.Second

// startWG starts weftd with its own key file on the given nodes, waits for their subnet
// files and gives each node one pod.
func startWG(t *testing.T, c *cluster.Cluster, nodes []int, args ...string) (map[int]*cluster.Weftd, map[int]*cluster.Pod, map[int]subnetenv.Env) {
	t.Helper()
	ds, pods, envs := map[int]*cluster.Weftd{}, map[int]*cluster.Pod{}, map[int]subnetenv.Env{}
	for _, i := range nodes {
		ds[i] = c.StartNodeWith(i, cluster.WeftdOptions{Args: args})
	}
	for _, i := range nodes {
		env, err := c.WaitSubnetEnv(i, 20*time.Second)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		envs[i] = env
		pods[i] = c.AddPod(i)
	}
	return ds, pods, envs
}

// wgKeys returns node i's private key and its public key, from the key file.
func wgKeys(t *testing.T, c *cluster.Cluster, i int) (priv, pub wgtypes.Key) {
	t.Helper()
	b, err := os.ReadFile(wgKeyFile(c, i))
	if err != nil {
		t.Fatal(err)
	}
	priv, err = wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return priv, priv.PublicKey()
}

// wgLeaseCheck: the lease is flanneld's, with the key file's public key.
func wgLeaseCheck(t *testing.T, c *cluster.Cluster, i int, env subnetenv.Env) {
	t.Helper()
	_, pub := wgKeys(t, c, i)
	want := fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"%s"}}`, c.NodeIP(i), pub)
	if v := etcdGet(t, c, leaseKey(env)); v != want {
		t.Errorf("node %d lease %s, want %s", i, v, want)
	}
}

// wgStatus reads node i's /status.
func wgStatus(t *testing.T, c *cluster.Cluster, i int) status.Status {
	t.Helper()
	var st status.Status
	if err := json.Unmarshal([]byte(get(t, c, i, status.Path)), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// pingsWithin retries a one-packet ping from p to dst every 10 ms and returns how long it
// took to get an answer, failing the test after limit.
func pingsWithin(t *testing.T, c *cluster.Cluster, p *cluster.Pod, dst netip.Addr, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := c.Exec(p.NS, "ping", "-n", "-c", "1", "-W", "0.2", dst.String())
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s -> %s: no answer within %v", p, dst, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWireGuardUserspace is the walk of the wireguard backend with wireguard-go: lease
// value, MTU, reachability, a checked TCP transfer, DF pings, leave, join, a node's key
// change, SIGTERM and SIGKILL restarts, drift repair, and no private key anywhere.
func TestWireGuardUserspace(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 4})
	c.PutConfig(wgConfig("userspace"))
	ds, pods, envs := startWG(t, c, []int{0, 1, 2}, "--healthz-port", healthPort)
	for i, env := range envs {
		if env.MTU != 1420 {
			t.Errorf("node %d FLANNEL_MTU %d, want 1420 (1500 - 80)", i, env.MTU)
		}
		wgLeaseCheck(t, c, i, env)
	}
	pingAll(t, pods, wgHandshakeWait)

	t.Run("status", func(t *testing.T) {
		st := wgStatus(t, c, 0)
		_, pub := wgKeys(t, c, 0)
		if st.Backend.Type != "wireguard" || st.Backend.Device != "flannel-wg" || !st.Backend.Active || st.Backend.MTU != 1420 ||
			st.Backend.Info["mode"] != "userspace" || st.Backend.Info["publicKey"] != pub.String() || st.Backend.Info["listenPort"] != "51820" {
			t.Errorf("status backend %+v", st.Backend)
		}
		if len(st.Peers) != 2 {
			t.Errorf("status peers %+v", st.Peers)
		}
	})

	t.Run("configuration socket for wg", func(t *testing.T) {
		for i := range envs {
			path := filepath.Join(c.WireGuardSocketDir(i), "flannel-wg.sock")
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatalf("node %d: %v", i, err)
			}
			if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
				t.Fatalf("node %d: %s is %v, want a socket for its owner only", i, path, fi.Mode())
			}
		}
	})

	t.Run("50 MB TCP transfer, SHA-256 checked", func(t *testing.T) {
		if err := cluster.TCPTransfer(pods[0], pods[2], 50<<20, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("MTU-sized DF ping passes, one byte more is refused", func(t *testing.T) {
		mtu := envs[0].MTU
		res, err := pods[0].PingWith(pods[1].IP, 2, 5*time.Second, cluster.PingOptions{Size: mtu - 28, DF: true, Interval: 200 * time.Millisecond})
		if err != nil || res.Received != 2 {
			t.Fatalf("DF ping of %d bytes: %+v %v", mtu-28, res, err)
		}
		res, _ = pods[0].PingWith(pods[1].IP, 1, time.Second, cluster.PingOptions{Size: mtu - 27, DF: true})
		if !res.TooLong {
			t.Fatalf("DF ping one byte over FLANNEL_MTU: want \"message too long\", got %+v", res)
		}
	})

	t.Run("leave", func(t *testing.T) {
		if err := ds[2].Stop(); err != nil {
			t.Fatal(err)
		}
		etcdDelete(t, c, leaseKey(envs[2]))
		for _, n := range []int{0, 1} {
			eventually(t, 5*time.Second, fmt.Sprintf("node %d forgets node 2", n), func() error {
				for _, p := range wgStatus(t, c, n).Peers {
					if p.Subnet == envs[2].Subnet.Masked() {
						return fmt.Errorf("still a peer: %+v", p)
					}
				}
				return nil
			})
		}
		if _, err := c.Exec(pods[0].NS, "ping", "-n", "-c", "1", "-W", "1", pods[2].IP.String()); err == nil {
			t.Fatal("pod 2 still answers")
		}
		delete(pods, 2)
	})

	t.Run("join", func(t *testing.T) {
		d3, p3, e3 := startWG(t, c, []int{3}, "--healthz-port", healthPort)
		ds[3], pods[3], envs[3] = d3[3], p3[3], e3[3]
		wgLeaseCheck(t, c, 3, envs[3])
		pingAll(t, pods, wgHandshakeWait)
	})

	t.Run("a node's new key is picked up by the others", func(t *testing.T) {
		_, old := wgKeys(t, c, 1)
		if err := ds[1].Stop(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(wgKeyFile(c, 1)); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(c.SubnetFile(1)); err != nil {
			t.Fatal(err)
		}
		if err := ds[1].Start(); err != nil {
			t.Fatal(err)
		}
		env, err := c.WaitSubnetEnv(1, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, pub := wgKeys(t, c, 1)
		if pub == old || env.Subnet != envs[1].Subnet {
			t.Fatalf("after the restart: key changed %v, subnet %s (was %s)", pub != old, env.Subnet, envs[1].Subnet)
		}
		wgLeaseCheck(t, c, 1, env)
		took := pingsWithin(t, c, pods[0], pods[1].IP, 5*time.Second)
		t.Logf("pod 0 reaches pod 1 %v after node 1's new lease", took.Round(time.Millisecond))
		if err := ds[0].WaitLog(`Peer changed`, 5*time.Second); err != nil || !strings.Contains(ds[0].Log(), pub.String()) {
			t.Errorf("node 0 did not log the new key %s: %v", pub, err)
		}
		pingAll(t, pods, wgHandshakeWait)
	})

	for _, how := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(how+" restart keeps the subnet and the device, traffic resumes", func(t *testing.T) {
			ifindex := ipOut(t, c, 1, "-o", "link", "show", "flannel-wg")
			ifindex, _, _ = strings.Cut(ifindex, ":")
			if how == "SIGKILL" {
				ds[1].Kill()
			} else if err := ds[1].Stop(); err != nil {
				t.Fatal(err)
			}
			if out := ipOut(t, c, 1, "-4", "route", "show", "dev", "flannel-wg"); !strings.Contains(out, "10.244.0.0/16") {
				t.Fatalf("the route went with weftd: %q", out)
			}
			if err := os.Remove(c.SubnetFile(1)); err != nil {
				t.Fatal(err)
			}
			if err := ds[1].Start(); err != nil {
				t.Fatal(err)
			}
			// Pod 0 only sends first: node 1's fresh device must start the handshake.
			took := pingsWithin(t, c, pods[0], pods[1].IP, 10*time.Second)
			env, err := c.WaitSubnetEnv(1, 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if env.Subnet != envs[1].Subnet {
				t.Fatalf("subnet after restart %s, want %s", env.Subnet, envs[1].Subnet)
			}
			after, _, _ := strings.Cut(ipOut(t, c, 1, "-o", "link", "show", "flannel-wg"), ":")
			if after != ifindex {
				t.Fatalf("flannel-wg was re-created: ifindex %s -> %s", ifindex, after)
			}
			t.Logf("%s: pod 0 reaches pod 1 %v after weftd was started again", how, took.Round(time.Millisecond))
		})
	}

	t.Run("drift is repaired, the times logged", func(t *testing.T) {
		network := envs[0].Network.String()
		own := envs[0].Subnet.Masked().Addr().String() + "/32"
		pid := ds[0].PID()
		addr := outputHas(c, "ip -4 -o addr show dev flannel-wg", "inet "+own)
		route := outputHas(c, "ip -4 route show exact "+network, "dev flannel-wg")
		heal(t, c, map[int]*cluster.Pod{0: pods[0], 1: pods[1]}, []damage{
			{"flannel-wg address deleted", "ip addr flush dev flannel-wg", "address", addr},
			{"flannel-wg route deleted", "ip route del " + network + " dev flannel-wg", "route", route},
			{"flannel-wg set down", "ip link set flannel-wg down", "device", outputHas(c, "ip -o link show flannel-wg", ",UP")},
			{"flannel-wg deleted", "ip link del flannel-wg", "device", allOf(outputHas(c, "ip -o link show flannel-wg", ",UP"), addr, route)},
		})
		if !ds[0].Running() || ds[0].PID() != pid {
			t.Fatalf("weftd on node 0 exited or was restarted")
		}
	})

	t.Run("no private key in logs, status, metrics or etcd", func(t *testing.T) {
		var everything strings.Builder
		for i, d := range ds {
			everything.WriteString(d.Log())
			if d.Running() {
				everything.WriteString(get(t, c, i, status.Path))
				everything.WriteString(get(t, c, i, "/metrics"))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cli, err := c.Etcd(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		resp, err := cli.Get(ctx, c.Prefix(), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			everything.Write(kv.Value)
		}
		text := everything.String()
		for i := range ds {
			priv, pub := wgKeys(t, c, i)
			for _, form := range []string{priv.String(), hex.EncodeToString(priv[:]), priv.String()[:16]} {
				if strings.Contains(text, form) {
					t.Errorf("node %d's private key shows (%s...)", i, form[:4])
				}
			}
			if !strings.Contains(text, pub.String()) {
				t.Errorf("node %d's public key is nowhere: the search is broken", i)
			}
		}
	})
}

// TestWireGuardAutoPicksUserspace: on a kernel without WireGuard, the default
// Implementation logs once that WireGuard runs in userspace and why, and works.
func TestWireGuardAutoPicksUserspace(t *testing.T) {
	if err := kernelWireGuard(t); err == nil {
		t.Skip("this kernel has WireGuard: auto picks the kernel (TestWireGuardKernel)")
	}
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(wgConfig(""))
	ds, pods, _ := startWG(t, c, []int{0, 1}, "--healthz-port", healthPort)
	for i, d := range ds {
		if err := d.WaitLog("WireGuard runs in userspace", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		_, line, _ := strings.Cut(d.RunLog(), "WireGuard runs in userspace")
		line, _, _ = strings.Cut(line, "\n")
		for _, want := range []string{"kernel has no WireGuard support", "reason=", "flannel-wg"} {
			if !strings.Contains(line, want) {
				t.Errorf("node %d: the userspace line lacks %q: %s", i, want, line)
			}
		}
		if n := countLines(d.RunLog(), "WireGuard runs in userspace"); n != 1 {
			t.Errorf("node %d logged the userspace choice %d times", i, n)
		}
	}
	pingAll(t, pods, wgHandshakeWait)
	st := wgStatus(t, c, 0)
	if st.Backend.Info["mode"] != "userspace" || !strings.Contains(st.Backend.Info["userspaceReason"], "kernel has no WireGuard support") {
		t.Errorf("status backend %+v", st.Backend)
	}
}

// TestWireGuardKernelModeFails: Implementation kernel without the module cannot work, so
// weftd says why and exits non-zero before taking a lease, leaving no device.
func TestWireGuardKernelModeFails(t *testing.T) {
	if err := kernelWireGuard(t); err == nil {
		t.Skip("this kernel has WireGuard: kernel mode works (TestWireGuardKernel)")
	}
	c := cluster.New(t, cluster.Options{Nodes: 1})
	c.PutConfig(wgConfig("kernel"))
	d := c.StartNode(0)
	var exit *exec.ExitError
	if err := d.Wait(20 * time.Second); !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("weftd with Implementation kernel on a kernel without WireGuard: exit %v, want non-zero\n%s", err, d.Log())
	}
	for _, want := range []string{"kernel has no WireGuard support (module wireguard)", "flannel-wg", `Implementation \"kernel\"`} {
		if !strings.Contains(d.RunLog(), want) {
			t.Errorf("log lacks %q:\n%s", want, d.RunLog())
		}
	}
	if _, err := c.WaitSubnetEnv(0, 0); err == nil {
		t.Error("a subnet file was written")
	}
	if out := ipOut(t, c, 0, "-o", "link", "show"); strings.Contains(out, "flannel-wg") || strings.Contains(out, "wgprobe") {
		t.Errorf("devices left behind:\n%s", out)
	}
}

// TestWireGuardKernel: the kernel implementation, with a userspace node in the same mesh.
func TestWireGuardKernel(t *testing.T) {
	if err := kernelWireGuard(t); err != nil {
		t.Skipf("kernel has no WireGuard support (module wireguard): %v", err)
	}
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(wgConfig("kernel"))
	_, pods, _ := startWG(t, c, []int{0, 1}, "--healthz-port", healthPort)
	pingAll(t, pods, wgHandshakeWait)
	if err := cluster.TCPTransfer(pods[0], pods[1], 20<<20, 60*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestWireGuardKeyFilePermissions: a key file that others may read is refused, with the
// fix in the message, before any lease is taken.
func TestWireGuardKeyFilePermissions(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 1})
	c.PutConfig(wgConfig("userspace"))
	k, _ := wgtypes.GeneratePrivateKey()
	if err := os.WriteFile(wgKeyFile(c, 0), []byte(k.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(wgKeyFile(c, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	d := c.StartNode(0)
	var exit *exec.ExitError
	if err := d.Wait(20 * time.Second); !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("weftd with a 0644 key file: exit %v, want non-zero\n%s", err, d.Log())
	}
	log := d.RunLog()
	for _, want := range []string{wgKeyFile(c, 0), "mode 0644", "chmod 600"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, k.String()) {
		t.Error("the log shows the private key")
	}
	if _, err := c.WaitSubnetEnv(0, 0); err == nil {
		t.Error("a subnet file was written")
	}
}

// TestRestartWireGuard: after a SIGKILL restart of the userspace node, a 5 ms ping stream
// gets replies again through the new process. It logs the forwarding gap (the longest
// between replies across the kill) and the new process's start-up steps. The TUN persists and is adopted; the new device has no sessions, so it starts a
// handshake with every peer as soon as it has them.
func TestRestartWireGuard(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(wgConfig("userspace"))
	ds, pods, _ := startWG(t, c, []int{0, 1})
	pingAll(t, pods, wgHandshakeWait)
	const interval = 5 * time.Millisecond
	ping := startStreamPing(t, pods[0], pods[1].IP, interval, int(time.Minute/interval))
	time.Sleep(time.Second)
	killed, ready := killAndRestart(t, c, ds, []int{1})
	// A reply after the new weftd wrote its subnet file went through the new process
	// (the old one was reaped before): forwarding resumed. 30 s bounds a hang only; the
	// gap is logged.
	ping.WaitReplyAfter(t, killed.Add(ready), 30*time.Second)
	res := ping.Stop(t)
	gap, end := res.LongestGapAfter(killed)
	if end.IsZero() {
		t.Fatalf("no reply after the kill: %s\n%s", res.Summary(), res.Output)
	}
	t.Logf("wireguard (userspace): node 1's weftd SIGKILLed and restarted; longest gap between replies %s, ending %s after the kill (%d requests lost at %s intervals); subnet file after %s",
		gap.Round(time.Millisecond), end.Sub(killed).Round(time.Millisecond), res.LostCount(), interval, ready.Round(time.Millisecond))
	t.Logf("node 1 start-up steps (since the kill):\n%s", startupSteps(ds[1].RunLog(), killed))
}
