package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/cluster"
)

// exitCode waits for weftd to exit on its own and returns its exit status.
func exitCode(t *testing.T, w *cluster.Weftd, timeout time.Duration) int {
	t.Helper()
	err := w.Wait(timeout)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("%s: %v\n%s", w, err, w.RunLog())
	return -1
}

// noLeaseFor fails the test if any lease in etcd names ip.
func noLeaseFor(t *testing.T, c *cluster.Cluster, ip string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := c.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, c.Prefix()+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), `"PublicIP":"`+ip+`"`) {
			t.Errorf("a lease names %s: %s = %s", ip, kv.Key, kv.Value)
		}
	}
}

// TestEtcdTLS: etcd serves clients over TLS only and requires client certificates. weftd
// with the CA, a certificate and its key works; a missing file stops it at once with exit
// status 2 and a message naming the flag and the path; a file that is not a certificate
// stops it at start too (exit 1); a CA that did not sign etcd's certificate, or no client
// certificate, leaves it retrying with the TLS error in its log and in /readyz, holding no
// lease and writing no subnet file.
func TestEtcdTLS(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 3, EtcdTLS: true})
	if ep := c.EtcdEndpoint(); !strings.HasPrefix(ep, "https://") {
		t.Fatalf("etcd endpoint %s is not https", ep)
	}
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	pki := c.EtcdPKI()
	cert, key, err := pki.ClientCert("weft-node")
	if err != nil {
		t.Fatal(err)
	}
	tlsArgs := func(ca string) []string {
		return []string{"--etcd-cafile", ca, "--etcd-certfile", cert, "--etcd-keyfile", key}
	}
	_, pods, _ := startNodes(t, c, []int{0, 1}, tlsArgs(pki.CAFile)...)
	pingAll(t, pods, 10*time.Second)

	t.Run("missing file: exit 2 naming the flag", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.pem")
		for _, args := range [][]string{
			{"--etcd-cafile", missing, "--etcd-certfile", cert, "--etcd-keyfile", key},
			{"--etcd-cafile", pki.CAFile, "--etcd-certfile", missing, "--etcd-keyfile", key},
			{"--etcd-cafile", pki.CAFile, "--etcd-certfile", cert, "--etcd-keyfile", missing},
		} {
			w := c.StartNode(2, args...)
			if code := exitCode(t, w, 10*time.Second); code != 2 {
				t.Errorf("%v: exit status %d, want 2:\n%s", args, code, w.RunLog())
			}
			if log := w.RunLog(); !strings.Contains(log, missing) || !strings.Contains(log, "no such file") {
				t.Errorf("%v: message does not name the file and the problem:\n%s", args, log)
			}
		}
	})

	t.Run("CA file without a certificate: stops at start", func(t *testing.T) {
		junk := filepath.Join(t.TempDir(), "junk.pem")
		if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		w := c.StartNode(2, tlsArgs(junk)...)
		if code := exitCode(t, w, 10*time.Second); code == 0 {
			t.Errorf("exit status 0 with a junk CA file:\n%s", w.RunLog())
		}
		if log := w.RunLog(); !strings.Contains(log, "--etcd-cafile") || !strings.Contains(log, "no PEM certificate") {
			t.Errorf("message does not say what is wrong with the CA file:\n%s", log)
		}
	})

	for _, tc := range []struct {
		name string
		// wants: any one of these. With TLS 1.3 the client finishes its side of the
		// handshake before the server checks the client certificate, so a refusal shows
		// up either as the server's alert or as the connection the server then drops.
		wants []string
		args  []string
	}{
		{"wrong CA", []string{"certificate signed by unknown authority"}, tlsArgs(pki.OtherCAFile)},
		{"no client certificate", []string{"tls: bad certificate", "certificate required", "broken pipe", "connection reset by peer"}, []string{"--etcd-cafile", pki.CAFile}},
	} {
		t.Run(tc.name+": retries with the TLS error, writes nothing", func(t *testing.T) {
			start := time.Now()
			w := c.StartNode(2, append(tc.args, "--healthz-port", healthPort)...)
			defer w.Kill()
			var want string
			eventually(t, 15*time.Second, "weftd logs the TLS refusal", func() error {
				for _, s := range tc.wants {
					if strings.Contains(w.RunLog(), s) {
						want = s
						return nil
					}
				}
				return fmt.Errorf("none of %q in the log", tc.wants)
			})
			t.Logf("%s: weftd logged %q after %s", tc.name, want, time.Since(start).Round(time.Millisecond))
			ready := get(t, c, 2, "/readyz")
			if !strings.Contains(ready, "not ready") || !strings.Contains(ready, "etcd") {
				t.Errorf("/readyz does not show the TLS error:\n%s", ready)
			}
			if !w.Running() {
				t.Fatalf("weftd exited:\n%s", w.RunLog())
			}
			if _, err := os.Stat(c.SubnetFile(2)); err == nil {
				t.Error("a subnet file was written")
			}
			noLeaseFor(t, c, c.NodeIP(2).String())
		})
	}
}

// TestEtcdAuth: etcd with authentication enabled (user root, auth enable, and a user for
// weft with read-write access to the prefix). weftd with the right username and password
// works; with a wrong password it stops at start with etcd's message; without credentials
// it retries with "user name is empty" in its log, holding no lease.
func TestEtcdAuth(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 3})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := c.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prefix := c.Prefix() + "/"
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "r00t"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "weft"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "weft", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "weft", "s3cret"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "weft", "weft"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	cli.Close()
	c.SetEtcdCredentials("root", "r00t")

	_, pods, _ := startNodes(t, c, []int{0, 1}, "--etcd-username", "weft", "--etcd-password", "s3cret")
	pingAll(t, pods, 10*time.Second)

	t.Run("wrong password: stops at start", func(t *testing.T) {
		w := c.StartNode(2, "--etcd-username", "weft", "--etcd-password", "wrong")
		if code := exitCode(t, w, 15*time.Second); code == 0 {
			t.Errorf("exit status 0 with a wrong password:\n%s", w.RunLog())
		}
		if log := w.RunLog(); !strings.Contains(log, "authentication failed") {
			t.Errorf("message does not say the authentication failed:\n%s", log)
		}
	})

	t.Run("no credentials: retries, writes nothing", func(t *testing.T) {
		w := c.StartNode(2)
		defer w.Kill()
		if err := w.WaitLog("user name is empty", 15*time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(c.SubnetFile(2)); err == nil {
			t.Error("a subnet file was written")
		}
		noLeaseFor(t, c, c.NodeIP(2).String())
	})
}

// vxlanFrame returns a VXLAN packet (the UDP payload) for VNI 1 carrying an Ethernet frame
// from srcMAC to dstMAC with the given IPv4 packet.
func vxlanFrame(dstMAC, srcMAC string, ipPacket []byte) ([]byte, error) {
	mac := func(s string) ([]byte, error) {
		var b [6]byte
		if _, err := fmt.Sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]); err != nil {
			return nil, fmt.Errorf("MAC %q: %w", s, err)
		}
		return b[:], nil
	}
	dst, err := mac(dstMAC)
	if err != nil {
		return nil, err
	}
	src, err := mac(srcMAC)
	if err != nil {
		return nil, err
	}
	pkt := []byte{0x08, 0, 0, 0, 0, 0, 1, 0} // flags: VNI valid; VNI 1
	pkt = append(pkt, dst...)
	pkt = append(pkt, src...)
	pkt = append(pkt, 0x08, 0x00) // IPv4
	return append(pkt, ipPacket...), nil
}

// dropCount returns the packet counter of the DROP rule in node n's WEFT-INPUT chain.
func dropCount(t *testing.T, c *cluster.Cluster, n int) int {
	t.Helper()
	out, err := c.Exec(c.NodeNS(n), "iptables", "-L", "WEFT-INPUT", "-v", "-n", "-x")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "DROP" {
			var pkts int
			if _, err := fmt.Sscan(f[0], &pkts); err != nil {
				t.Fatalf("counter in %q: %v", line, err)
			}
			return pkts
		}
	}
	t.Fatalf("no DROP rule in WEFT-INPUT:\n%s", out)
	return 0
}

// TestRestrictTunnelPort: with --restrict-tunnel-port (the default), a VXLAN packet sent to
// node 1's port 8472 by a non-peer (the hub) is dropped by the INPUT rule, whose counter
// moves, and never reaches the pod it carries a datagram for; the same packet from the peer
// (the control) does.
func TestRestrictTunnelPort(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	_, pods, _ := startNodes(t, c, []int{0, 1})
	pingAll(t, pods, 10*time.Second)
	got := listenUDP(t, pods[1], 9999)
	frame := func(payload string) []byte {
		f, err := vxlanFrame(vtepMAC(t, c, 1), vtepMAC(t, c, 0), innerUDP(pods[0].IP, pods[1].IP, 9999, payload))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	to := fmt.Sprintf("%s:8472", c.NodeIP(1))
	eventually(t, 5*time.Second, "the DROP rule is in place", func() error {
		out, _ := c.Exec(c.NodeNS(1), "iptables", "-S", "WEFT-INPUT")
		if !strings.Contains(out, "-j DROP") {
			return fmt.Errorf("WEFT-INPUT:\n%s", out)
		}
		return nil
	})
	before := dropCount(t, c, 1)

	// The control: from the peer, the packet is decapsulated and reaches the pod.
	sendUDP(t, c.NodeNS(0), to, frame("from the peer"))
	select {
	case msg := <-got:
		if msg != "from the peer" {
			t.Fatalf("the pod received %q", msg)
		}
	case <-time.After(15 * time.Second): // a hang bound: one packet, but a loaded machine may stall
		t.Fatal("the control packet from the peer did not arrive: the test's VXLAN forging is broken")
	}
	// From the hub, a non-peer on the underlay: dropped.
	for i := 0; i < 3; i++ {
		sendUDP(t, c.HubNS(), to, frame("from a stranger"))
	}
	select {
	case msg := <-got:
		t.Fatalf("the pod received %q", msg)
	case <-time.After(500 * time.Millisecond):
	}
	after := dropCount(t, c, 1)
	t.Logf("WEFT-INPUT DROP counter %d -> %d after 3 VXLAN packets from the hub", before, after)
	if after-before != 3 {
		t.Errorf("DROP counter moved by %d, want 3", after-before)
	}
}

// sendUDP sends one datagram to addr from a socket inside namespace ns.
func sendUDP(t *testing.T, ns, addr string, payload []byte) {
	t.Helper()
	err := nsutil.Do(ns, func() error {
		conn, err := net.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write(payload)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
