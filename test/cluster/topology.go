package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weftnet/weft/test/etcdtest"
	"github.com/weftnet/weft/test/nstest"
)

// build makes the hub, the nodes, the optional internet and starts etcd. On error the
// caller runs Close, which deletes whatever was made.
func (c *Cluster) build(ctx context.Context) error {
	mtu := strconv.Itoa(c.opts.MTU)
	hub, err := c.newNamespace("hub")
	if err != nil {
		return err
	}
	c.hub = hub
	if err := c.runAll(ctx, hub, [][]string{
		{"link", "add", "br0", "type", "bridge"},
		{"link", "set", "br0", "mtu", mtu},
		{"addr", "add", prefix(HubIP), "dev", "br0"},
		{"link", "set", "br0", "up"},
	}); err != nil {
		return err
	}
	if err := c.enableForwarding(ctx, hub); err != nil {
		return err
	}
	if c.opts.IPv6 {
		if err := c.runAll(ctx, hub, [][]string{
			{"addr", "add", prefix6(HubIPv6), "dev", "br0", "nodad"},
		}); err != nil {
			return err
		}
	}

	for i := 0; i < c.opts.Nodes; i++ {
		if err := c.buildNode(ctx, i, mtu); err != nil {
			return err
		}
	}
	if c.opts.Internet {
		if err := c.buildInternet(ctx); err != nil {
			return err
		}
	}
	c.logf("cluster: hub %s, %d nodes %s, internet %q", hub, len(c.nodes), strings.Join(c.nodes, " "), c.inet)

	etcdDir := filepath.Join(c.dir, "etcd")
	if err := os.MkdirAll(etcdDir, 0o755); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	eo := etcdtest.ClusterOptions{Members: c.opts.EtcdMembers, Netns: hub, Host: HubIP.String(), Dir: etcdDir}
	for k := 0; k < c.opts.EtcdMembers; k++ {
		eo.ClientPorts = append(eo.ClientPorts, EtcdClientPort+10000*k)
		eo.PeerPorts = append(eo.PeerPorts, EtcdPeerPort+10000*k)
	}
	if c.opts.EtcdTLS {
		if c.pki, err = etcdtest.NewPKI(filepath.Join(c.dir, "pki"), HubIP); err != nil {
			return fmt.Errorf("etcd PKI: %w", err)
		}
		if c.rootCert[0], c.rootCert[1], err = c.pki.ClientCert("root"); err != nil {
			return fmt.Errorf("etcd PKI: %w", err)
		}
		eo.Scheme, eo.ExtraArgs = "https", c.pki.ServerArgs(true)
	}
	srv, err := etcdtest.NewCluster(eo)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	c.etcd = srv // set before Start so that Close stops a half-started server
	if err := srv.Start(); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	// A second, independent check: a client dialled through the hub gets a status answer.
	cli, err := c.Etcd(ctx)
	if err != nil {
		return err
	}
	cli.Close()
	c.logf("cluster: etcd at %s (log %s)", strings.Join(srv.Endpoints(), ","), srv.Member(0).LogPath())
	return nil
}

func (c *Cluster) buildNode(ctx context.Context, i int, mtu string) error {
	ns, err := c.newNamespace(fmt.Sprintf("node%d", i))
	if err != nil {
		return err
	}
	c.nodes = append(c.nodes, ns)
	if err := os.MkdirAll(c.NodeDir(i), 0o755); err != nil {
		return fmt.Errorf("node %d: %w", i, err)
	}
	hubEnd := fmt.Sprintf("vn%d", i)
	// The veth is created inside the hub namespace, its peer moved straight into the node.
	if err := c.runAll(ctx, c.hub, [][]string{
		{"link", "add", hubEnd, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu, "netns", ns},
		{"link", "set", hubEnd, "master", "br0"},
		{"link", "set", hubEnd, "up"},
	}); err != nil {
		return fmt.Errorf("node %d: %w", i, err)
	}
	if err := c.runAll(ctx, ns, [][]string{
		{"addr", "add", prefix(c.NodeIP(i)), "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", HubIP.String(), "dev", "eth0"},
	}); err != nil {
		return fmt.Errorf("node %d: %w", i, err)
	}
	if err := c.enableForwarding(ctx, ns); err != nil {
		return fmt.Errorf("node %d: %w", i, err)
	}
	if c.opts.IPv6 {
		if err := c.runAll(ctx, ns, [][]string{
			{"addr", "add", prefix6(c.NodeIPv6(i)), "dev", "eth0", "nodad"},
			{"-6", "route", "add", "default", "via", HubIPv6.String(), "dev", "eth0"},
		}); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
	}
	return nil
}

func (c *Cluster) buildInternet(ctx context.Context) error {
	ns, err := c.newNamespace("inet")
	if err != nil {
		return err
	}
	c.inet = ns
	if err := c.runAll(ctx, c.hub, [][]string{
		{"link", "add", "inet0", "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"addr", "add", prefix(InternetGatewayIP), "dev", "inet0"},
		{"link", "set", "inet0", "up"},
	}); err != nil {
		return fmt.Errorf("internet: %w", err)
	}
	if err := c.runAll(ctx, ns, [][]string{
		{"addr", "add", prefix(InternetIP), "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", InternetGatewayIP.String(), "dev", "eth0"},
	}); err != nil {
		return fmt.Errorf("internet: %w", err)
	}
	return nil
}

// newNamespace creates a uniquely named namespace (loopback up) and records it for Close.
func (c *Cluster) newNamespace(label string) (string, error) {
	name := nstest.UniqueName(label)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", fmt.Errorf("namespace %s: %w", label, ErrClosed)
	}
	if err := nstest.Create(name); err != nil {
		return "", err
	}
	c.namespaces = append(c.namespaces, name)
	return name, nil
}

func (c *Cluster) enableForwarding(ctx context.Context, ns string) error {
	args := []string{"-q", "-w", "net.ipv4.ip_forward=1"}
	if c.opts.IPv6 {
		args = append(args, "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.all.forwarding=1")
	}
	_, err := c.ExecContext(ctx, ns, append([]string{"sysctl"}, args...)...)
	return err
}

// runAll runs `ip -n ns <args>` for each command, stopping at the first failure.
func (c *Cluster) runAll(ctx context.Context, ns string, cmds [][]string) error {
	for _, args := range cmds {
		if err := runIP(ctx, ns, args...); err != nil {
			return err
		}
	}
	return nil
}

// runIP runs `ip -n ns <args>`, bounded by ctx and ExecTimeout.
func runIP(ctx context.Context, ns string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, ExecTimeout)
	defer cancel()
	argv := append([]string{"-n", ns}, args...)
	out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// prefix6 renders an IPv6 underlay address with its prefix length, e.g. 2001:db8::1/64.
func prefix6(addr netip.Addr) string {
	return netip.PrefixFrom(addr, UnderlayIPv6PrefixLen).String()
}

// prefix renders addr with the underlay prefix length, e.g. 192.0.2.1/24.
func prefix(addr netip.Addr) string {
	return netip.PrefixFrom(addr, UnderlayPrefixLen).String()
}
