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

	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/test/nstest"
)

// Pod is a network endpoint: a pod namespace with one address, or (from NodeHost and
// Internet) a node's or the internet's own namespace.
type Pod struct {
	NS   string     // namespace name
	IP   netip.Addr // the address traffic should use: IPv4, or IPv6 in an IPv6-only network
	IPv6 netip.Addr // the pod's IPv6 address in a network that runs IPv6; else zero
	Node int        // node number; -1 for the internet
}

// V6 returns the pod with IP set to its IPv6 address, for Ping and TCPTransfer over IPv6.
// It panics when the pod has none: the test asked for IPv6 where there is none.
func (p *Pod) V6() *Pod {
	if !p.IPv6.IsValid() {
		panic(fmt.Sprintf("pod %s has no IPv6 address", p))
	}
	q := *p
	q.IP = p.IPv6
	return &q
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
// default route via the bridge. With FLANNEL_IPV6_SUBNET the same is done for IPv6 (host
// number for host number); an IPv6-only subnet file gives IPv6 only. It fails if the subnet file is missing (see WaitSubnetEnv)
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
	if env.IPv6Subnet.IsValid() && !c.opts.IPv6 {
		return nil, fmt.Errorf("node %d's subnet file has an IPv6 subnet but the cluster has no IPv6 underlay (Options.IPv6)", i)
	}
	host, veth, err := c.nextPodHost(i, env)
	if err != nil {
		return nil, err
	}
	mtu := strconv.Itoa(env.MTU)
	ns, err := c.newNamespace(fmt.Sprintf("n%dp%d", i, host))
	if err != nil {
		return nil, err
	}
	pod := &Pod{NS: ns, Node: i}
	var addrs [][]string
	if env.Subnet.IsValid() {
		pod.IP = addHost(env.Subnet.Masked().Addr(), host)
		addrs = append(addrs,
			[]string{"addr", "add", netip.PrefixFrom(pod.IP, env.Subnet.Bits()).String(), "dev", "eth0"},
			[]string{"route", "add", "default", "via", env.Subnet.Addr().String(), "dev", "eth0"})
	}
	if env.IPv6Subnet.IsValid() {
		pod.IPv6 = addHost(env.IPv6Subnet.Masked().Addr(), host)
		if !pod.IP.IsValid() {
			pod.IP = pod.IPv6
		}
		addrs = append(addrs,
			[]string{"addr", "add", netip.PrefixFrom(pod.IPv6, env.IPv6Subnet.Bits()).String(), "dev", "eth0", "nodad"},
			[]string{"-6", "route", "add", "default", "via", env.IPv6Subnet.Addr().String(), "dev", "eth0"})
	}
	if err := c.runAll(ctx, node, [][]string{
		{"link", "add", veth, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu, "netns", ns},
		{"link", "set", veth, "master", "cni0"},
		{"link", "set", veth, "up"},
	}); err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod, err)
	}
	if env.IPv6Subnet.IsValid() {
		if _, err := c.ExecContext(ctx, ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=0"); err != nil {
			return nil, fmt.Errorf("pod %s: %w", pod, err)
		}
	}
	if err := c.runAll(ctx, ns, append([][]string{{"link", "set", "eth0", "up"}}, addrs...)); err != nil {
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

// ensureBridge makes cni0 with the gateway addresses, or checks the one that exists.
func (c *Cluster) ensureBridge(ctx context.Context, node string, env subnetenv.Env) error {
	var gws []string // e.g. 10.244.5.1/24, fd00:10:244:5::1/64
	for _, p := range []netip.Prefix{env.Subnet, env.IPv6Subnet} {
		if p.IsValid() {
			gws = append(gws, p.String())
		}
	}
	mtu := strconv.Itoa(env.MTU)
	out, err := c.ExecContext(ctx, node, "ip", "-o", "addr", "show", "dev", "cni0")
	if err != nil {
		if !strings.Contains(out, "does not exist") {
			return err
		}
		cmds := [][]string{{"link", "add", "cni0", "mtu", mtu, "type", "bridge"}}
		for _, gw := range gws {
			cmd := []string{"addr", "add", gw, "dev", "cni0"}
			if strings.Contains(gw, ":") {
				cmd = append(cmd, "nodad")
			}
			cmds = append(cmds, cmd)
		}
		return c.runAll(ctx, node, append(cmds, []string{"link", "set", "cni0", "up"}))
	}
	for _, gw := range gws {
		if !slices.Contains(strings.Fields(out), gw) {
			return fmt.Errorf("cni0 exists without %s (has: %s); the node's subnet changed", gw, strings.TrimSpace(out))
		}
	}
	return runIP(ctx, node, "link", "set", "cni0", "mtu", mtu)
}

// nextPodHost picks node i's next pod host number (the same in each family's subnet,
// skipping the gateways) and the name of the node-side veth. c.podMu is held.
func (c *Cluster) nextPodHost(i int, env subnetenv.Env) (int, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var subnets []netip.Prefix
	for _, p := range []netip.Prefix{env.Subnet, env.IPv6Subnet} {
		if p.IsValid() {
			subnets = append(subnets, p)
		}
	}
	if len(subnets) == 0 {
		return 0, "", fmt.Errorf("node %d: the subnet file has no subnet", i)
	}
	for {
		h := c.nextHost[i]
		usable, gateway := true, false
		for _, sn := range subnets {
			base := sn.Masked()
			a := addHost(base.Addr(), h)
			if !a.IsValid() || !base.Contains(a) || !base.Contains(addHost(a, 1)) {
				usable = false
			}
			gateway = gateway || a == sn.Addr()
		}
		if !usable {
			return 0, "", fmt.Errorf("node %d: subnets %v have no free pod address", i, subnets)
		}
		c.nextHost[i]++
		if gateway {
			continue
		}
		veth := fmt.Sprintf("vp%d", c.nextVeth[i])
		c.nextVeth[i]++
		return h, veth, nil
	}
}

// addHost returns a + n, or an invalid Addr on overflow.
func addHost(a netip.Addr, n int) netip.Addr {
	v, over := ip.ToU128(a).Add(ip.U128{Lo: uint64(n)})
	if over || (a.Is4() && v.Hi|v.Lo>>32 != 0) {
		return netip.Addr{}
	}
	return ip.FromU128(v, a.BitLen())
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
