package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/test/nstest"
)

// Pod is a network endpoint: a pod namespace with one address, or (from NodeHost and
// Internet) a node's or the internet's own namespace.
type Pod struct {
	NS   string     // namespace name
	IP   netip.Addr // the address traffic should use
	Node int        // node number; -1 for the internet
}

// String names the endpoint for messages.
func (p *Pod) String() string { return fmt.Sprintf("%s(%s)", p.IP, p.NS) }

// WaitSubnetEnv waits up to timeout for node i's subnet file to exist and parse, and returns
// it. It fails early, with the output, when every weftd started on node i has exited. Note
// that the file survives weftd restarts: to wait for a rewrite, remove it first.
func (c *Cluster) WaitSubnetEnv(i int, timeout time.Duration) (subnetenv.Env, error) {
	path := c.SubnetFile(i)
	deadline := time.Now().Add(timeout)
	for {
		env, err := subnetenv.Read(path)
		if err == nil {
			return env, nil
		}
		if time.Now().After(deadline) {
			return subnetenv.Env{}, fmt.Errorf("node %d subnet file after %v: %w", i, timeout, err)
		}
		if w := c.exitedWeftd(i); w != nil {
			return subnetenv.Env{}, fmt.Errorf("node %d: no subnet file (%v) and %s exited (%v); its output:\n%s",
				i, err, w, w.Wait(0), tailLines(w.RunLog(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TryAddPod adds a pod to node i, CNI-bridge style, from the node's current subnet file:
// bridge cni0 holding FLANNEL_SUBNET's address with MTU FLANNEL_MTU (made on first use), and
// a new namespace whose eth0 (MTU FLANNEL_MTU) has the next free address (.2, .3, ...) and a
// default route via the bridge. It fails if the subnet file is missing (see WaitSubnetEnv)
// or if cni0 already holds a different subnet (weftd took a new lease).
func (c *Cluster) TryAddPod(i int) (*Pod, error) {
	c.checkNode(i)
	if c.isClosed() {
		return nil, fmt.Errorf("add pod on node %d: %w", i, ErrClosed)
	}
	env, err := subnetenv.Read(c.SubnetFile(i))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("node %d has no subnet file yet (WaitSubnetEnv first): %w", i, err)
	}
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", i, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ExecTimeout)
	defer cancel()

	c.podMu.Lock() // one pod at a time: the bridge check and address choice go together
	defer c.podMu.Unlock()
	node := c.NodeNS(i)
	if err := c.ensureBridge(ctx, node, env); err != nil {
		return nil, fmt.Errorf("node %d: %w", i, err)
	}
	ip, veth, err := c.nextPodAddr(i, env.Subnet)
	if err != nil {
		return nil, err
	}
	mtu := strconv.Itoa(env.MTU)
	ns, err := c.newNamespace(fmt.Sprintf("n%dp%d", i, ip.As4()[3]))
	if err != nil {
		return nil, err
	}
	pod := &Pod{NS: ns, IP: ip, Node: i}
	if err := c.runAll(ctx, node, [][]string{
		{"link", "add", veth, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu, "netns", ns},
		{"link", "set", veth, "master", "cni0"},
		{"link", "set", veth, "up"},
	}); err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod, err)
	}
	if err := c.runAll(ctx, ns, [][]string{
		{"addr", "add", netip.PrefixFrom(ip, env.Subnet.Bits()).String(), "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", env.Subnet.Addr().String(), "dev", "eth0"},
	}); err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod, err)
	}
	c.mu.Lock()
	c.pods = append(c.pods, pod)
	c.mu.Unlock()
	return pod, nil
}

// AddPod is TryAddPod, fatal on error.
func (c *Cluster) AddPod(i int) *Pod {
	if c.t != nil {
		c.t.Helper()
	}
	p, err := c.TryAddPod(i)
	if err != nil {
		c.fatal(fmt.Errorf("add pod on node %d: %w", i, err))
	}
	return p
}

// Pods lists the pods added and not deleted, in order of creation.
func (c *Cluster) Pods() []*Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pods)
}

// DeletePod deletes a pod's namespace (its veth goes with it). Its address is not reused.
func (c *Cluster) DeletePod(p *Pod) error {
	c.mu.Lock()
	idx := slices.Index(c.pods, p)
	if idx >= 0 {
		c.pods = slices.Delete(c.pods, idx, idx+1)
	}
	c.mu.Unlock()
	if idx < 0 {
		return fmt.Errorf("pod %s is not a pod of this cluster", p)
	}
	return nstest.Delete(p.NS)
}

// ensureBridge makes cni0 with the gateway address, or checks the one that exists.
func (c *Cluster) ensureBridge(ctx context.Context, node string, env subnetenv.Env) error {
	gw := env.Subnet.String() // e.g. 10.244.5.1/24
	mtu := strconv.Itoa(env.MTU)
	out, err := c.ExecContext(ctx, node, "ip", "-4", "-o", "addr", "show", "dev", "cni0")
	if err != nil {
		if !strings.Contains(out, "does not exist") {
			return err
		}
		return c.runAll(ctx, node, [][]string{
			{"link", "add", "cni0", "mtu", mtu, "type", "bridge"},
			{"addr", "add", gw, "dev", "cni0"},
			{"link", "set", "cni0", "up"},
		})
	}
	if !slices.Contains(strings.Fields(out), gw) {
		return fmt.Errorf("cni0 exists without %s (has: %s); the node's subnet changed", gw, strings.TrimSpace(out))
	}
	return runIP(ctx, node, "link", "set", "cni0", "mtu", mtu)
}

// nextPodAddr picks node i's next pod address in subnet (skipping the gateway) and the name
// of the node-side veth. c.podMu is held.
func (c *Cluster) nextPodAddr(i int, subnet netip.Prefix) (netip.Addr, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	base := subnet.Masked()
	for {
		h := c.nextHost[i]
		ip := addHost(base.Addr(), h)
		if !ip.IsValid() || !base.Contains(ip) || !base.Contains(addHost(ip, 1)) {
			return netip.Addr{}, "", fmt.Errorf("node %d: subnet %s has no free pod address", i, base)
		}
		c.nextHost[i]++
		if ip == subnet.Addr() {
			continue
		}
		veth := fmt.Sprintf("vp%d", c.nextVeth[i])
		c.nextVeth[i]++
		return ip, veth, nil
	}
}

// addHost returns a + n for IPv4 a, or an invalid Addr on overflow.
func addHost(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	v += uint64(n)
	if v > 0xffffffff {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// exitedWeftd returns a weftd of node i when weftds were started there and all have exited.
func (c *Cluster) exitedWeftd(i int) *Weftd {
	c.mu.Lock()
	weftds := slices.Clone(c.weftds)
	c.mu.Unlock()
	var last *Weftd
	for _, w := range weftds {
		if w.node != i {
			continue
		}
		if w.Running() {
			return nil
		}
		last = w
	}
	return last
}
