// Package cluster builds throwaway weft clusters out of network namespaces, for end-to-end
// tests, the benchmark and the demo. Nothing it makes lives in the root network namespace:
// every veth is created inside a namespace with its peer sent to another namespace, and every
// address, route and sysctl is set inside a namespace the cluster owns.
//
// Topology (all addresses exist only inside the cluster's namespaces):
//
//	hub namespace      bridge br0 = the underlay, 192.0.2.254/24, ip_forward=1;
//	                   etcd listens on 192.0.2.254:2379 (peer port 2380); with
//	                   Options.EtcdMembers > 1, member k on 2379+10000k (peer 2380+10000k)
//	node i namespace   eth0 = veth into br0 (hub side "vn<i>"), 192.0.2.(i+1)/24,
//	                   MTU Options.MTU, default route via 192.0.2.254, ip_forward=1
//	pod namespaces     eth0 = veth into the node's bridge cni0 (node side "vp<k>"),
//	                   address .2, .3, ... of the node's FLANNEL_SUBNET, default route via .1
//	IPv6 (opt.)        with Options.IPv6 the underlay also carries IPv6: br0 2001:db8::fe/64,
//	                   node i's eth0 2001:db8::(i+1)/64 with a default IPv6 route via the hub
//	                   (IPv6 forwarding on); pods get an IPv6 address of FLANNEL_IPV6_SUBNET too
//	internet (opt.)    eth0 = veth to the hub's "inet0"; 198.51.100.1/24 on the internet
//	                   side, 198.51.100.254/24 on the hub side, default route via the hub.
//
// The "internet" is a separate routed segment, not a second subnet on br0: the hub routes
// between 192.0.2.0/24 and 198.51.100.0/24, and the internet namespace has no route to pod
// networks, so a pod can only talk to it when its node masquerades (as it would on a real
// network).
//
// weftd runs as the real binary, started with `ip netns exec` in a node's namespace; the
// cluster stops only the processes it started, by PID, and kills them all on Close. Every wait
// in this package is bounded in time.
//
// Methods named without "Try" (StartNode, AddPod, PutConfig) end the test with t.Fatal on
// error when the Cluster came from New, and panic when it came from Start; call them only from
// the test's own goroutine. Their Try forms return the error instead.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/test/etcdtest"
	"github.com/weftnet/weft/test/nstest"
)

// Fixed addresses of the topology; they exist only inside the cluster's namespaces.
var (
	// HubIP is the hub's address on the underlay bridge; etcd listens here.
	HubIP = netip.MustParseAddr("192.0.2.254")
	// InternetIP is the internet namespace's address.
	InternetIP = netip.MustParseAddr("198.51.100.1")
	// InternetGatewayIP is the hub's address on the internet segment.
	InternetGatewayIP = netip.MustParseAddr("198.51.100.254")
	// HubIPv6 is the hub's IPv6 address on the underlay bridge (Options.IPv6).
	HubIPv6 = netip.MustParseAddr("2001:db8::fe")
)

// UnderlayIPv6PrefixLen is the prefix length of the IPv6 underlay (Options.IPv6).
const UnderlayIPv6PrefixLen = 64

const (
	// UnderlayPrefixLen is the prefix length of the node and internet segments.
	UnderlayPrefixLen = 24
	// EtcdClientPort and EtcdPeerPort are etcd's ports on HubIP (private to the hub namespace).
	EtcdClientPort = 2379
	EtcdPeerPort   = 2380
	// DefaultPrefix is flannel's default etcd prefix.
	DefaultPrefix = "/coreos.com/network"
	// MaxNodes is the largest node count: node addresses are 192.0.2.1 to 192.0.2.253.
	MaxNodes = 253
	// ExecTimeout bounds Exec and every ip command the cluster runs.
	ExecTimeout = 60 * time.Second
)

// Options describe the cluster to build. The zero value is a usable two-node cluster.
type Options struct {
	// Nodes is the number of node namespaces (default 2, at most MaxNodes).
	Nodes int
	// MTU of the underlay: br0, the node eth0 veths and their hub ends (default 1500).
	MTU int
	// Internet adds the internet namespace (see the package comment).
	Internet bool
	// WeftdPath is the weftd binary. Empty: `go build ./cmd/weftd` from the module root, once
	// per process, on the first StartNode.
	WeftdPath string
	// EtcdPrefix is the etcd key prefix used by PutConfig; when set it is also passed to
	// weftd as --etcd-prefix. Empty means DefaultPrefix (and no flag).
	EtcdPrefix string
	// Dir holds logs, subnet files and etcd's data. New defaults it to t.TempDir(); Start to
	// a fresh temporary directory that Close removes.
	Dir string
	// WeftdEnv is added to every weftd's environment (KEY=value). FLANNELD_* and WEFT*
	// variables of the calling process are never passed on.
	WeftdEnv []string
	// EtcdMembers is the number of etcd members (default 1). All listen on HubIP, member k
	// on client port EtcdClientPort+10000*k and peer port EtcdPeerPort+10000*k; weftd is
	// given every endpoint.
	EtcdMembers int
	// EtcdTLS makes etcd serve clients over https only, requiring client certificates
	// signed by the cluster's CA (EtcdPKI). The harness's own client presents a certificate
	// for the common name "root" (etcd's root user once auth is enabled). weftd gets no TLS
	// flags by default: pass them in Args (see EtcdPKI).
	EtcdTLS bool
	// IPv6 gives the underlay IPv6 addresses and routes besides IPv4 (see the package
	// comment), for dual-stack and IPv6-only networks.
	IPv6 bool
}

// Cluster is a running namespace cluster. Its methods are safe for concurrent use, except
// that the fatal forms (StartNode, AddPod, PutConfig) belong on the test goroutine.
type Cluster struct {
	opts     Options // defaults filled in; read-only after Start
	t        nstest.TB
	logf     func(string, ...any)
	dir      string
	ownDir   bool // dir was made by Start and is removed by Close
	hub      string
	nodes    []string // node namespace names, index = node number
	inet     string   // "" without Options.Internet
	etcd     *etcdtest.Cluster
	pki      *etcdtest.PKI // nil without Options.EtcdTLS
	rootCert [2]string     // the harness client's certificate and key files (EtcdTLS)
	weftBin  *weftdBinary
	podMu    sync.Mutex // serialises TryAddPod (bridge check and address choice)

	mu         sync.Mutex // guards the fields below
	closed     bool
	namespaces []string // every namespace made, in creation order
	weftds     []*Weftd
	weftdSeq   int // number of the next weftd log file
	etcdUser   string
	etcdPass   string
	pods       []*Pod
	nextHost   []int // per node: host number of the next pod address
	nextVeth   []int // per node: number of the next node-side pod veth
}

// New builds a cluster for t and tears it down when t ends. The test is skipped, with the
// reason, where namespaces or etcd are unavailable; on failure to build it is ended with
// t.Fatal. When t has failed, the tail of every weftd log is logged before teardown.
func New(t nstest.TB, opts Options) *Cluster {
	t.Helper()
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	if err := etcdtest.Available(); err != nil {
		t.Skip(err)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := start(ctx, opts, t.Logf, t)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.logWeftdTails()
		}
		if err := c.Close(); err != nil {
			t.Errorf("cluster teardown: %v", err)
		}
	})
	return c
}

// Start builds a cluster outside of a test (the demo, the benchmark's main). ctx bounds the
// build only. logf, if not nil, receives one line per step. The caller must Close the
// cluster; Close also runs here if building fails half-way.
func Start(ctx context.Context, opts Options, logf func(string, ...any)) (*Cluster, error) {
	if err := nstest.Available(); err != nil {
		return nil, err
	}
	if err := etcdtest.Available(); err != nil {
		return nil, err
	}
	return start(ctx, opts, logf, nil)
}

func start(ctx context.Context, opts Options, logf func(string, ...any), t nstest.TB) (*Cluster, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 2
	}
	if opts.Nodes < 1 || opts.Nodes > MaxNodes {
		return nil, fmt.Errorf("cluster: %d nodes requested, want 1 to %d", opts.Nodes, MaxNodes)
	}
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	if opts.EtcdMembers == 0 {
		opts.EtcdMembers = 1
	}
	if opts.EtcdMembers < 1 || opts.EtcdMembers > 5 {
		return nil, fmt.Errorf("cluster: %d etcd members requested, want 1 to 5", opts.EtcdMembers)
	}
	if opts.MTU < 576 || opts.MTU > 65535 {
		return nil, fmt.Errorf("cluster: underlay MTU %d out of range 576-65535", opts.MTU)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c := &Cluster{opts: opts, t: t, logf: logf, dir: opts.Dir}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "weft-cluster-")
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		c.dir, c.ownDir = d, true
	}
	c.weftBin = &weftdBinary{path: opts.WeftdPath}
	c.nextHost = make([]int, opts.Nodes)
	c.nextVeth = make([]int, opts.Nodes)
	for i := range c.nextHost {
		c.nextHost[i] = 2
	}
	nstest.Sweep()
	if err := c.build(ctx); err != nil {
		if cerr := c.Close(); cerr != nil {
			err = fmt.Errorf("%w (teardown: %v)", err, cerr)
		}
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return c, nil
}

// Close kills every weftd the cluster started, stops etcd and deletes every namespace the
// cluster made (pods, nodes, internet, hub), continuing past failures. It is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	weftds := append([]*Weftd(nil), c.weftds...)
	namespaces := append([]string(nil), c.namespaces...)
	c.mu.Unlock()

	var errs []error
	for _, w := range weftds {
		if err := w.kill(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.etcd != nil {
		c.etcd.Stop()
	}
	// Delete in reverse creation order: pods, then internet and nodes, then the hub.
	for i := len(namespaces) - 1; i >= 0; i-- {
		if err := nstest.Delete(namespaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ownDir {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Cluster) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// NodeCount is the number of nodes.
func (c *Cluster) NodeCount() int { return len(c.nodes) }

// NodeNS is node i's namespace name.
func (c *Cluster) NodeNS(i int) string { return c.nodes[c.checkNode(i)] }

// NodeIP is node i's underlay address, 192.0.2.(i+1).
func (c *Cluster) NodeIP(i int) netip.Addr {
	c.checkNode(i)
	return netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
}

// NodeIPv6 is node i's IPv6 underlay address, 2001:db8::(i+1) (Options.IPv6).
func (c *Cluster) NodeIPv6(i int) netip.Addr {
	c.checkNode(i)
	b := HubIPv6.As16()
	b[14], b[15] = byte((i+1)>>8), byte(i+1)
	return netip.AddrFrom16(b)
}

// NodeHost is node i's own network stack as a Pod-shaped endpoint (its namespace and
// underlay addresses), for Ping and TCPTransfer over the underlay.
func (c *Cluster) NodeHost(i int) *Pod {
	p := &Pod{NS: c.NodeNS(i), IP: c.NodeIP(i), Node: i}
	if c.opts.IPv6 {
		p.IPv6 = c.NodeIPv6(i)
	}
	return p
}

// HubNS is the hub namespace's name.
func (c *Cluster) HubNS() string { return c.hub }

// InternetNS is the internet namespace's name, or "" without Options.Internet.
func (c *Cluster) InternetNS() string { return c.inet }

// Internet is the internet namespace as a Pod-shaped endpoint (Node -1), or nil without
// Options.Internet.
func (c *Cluster) Internet() *Pod {
	if c.inet == "" {
		return nil
	}
	return &Pod{NS: c.inet, IP: InternetIP, Node: -1}
}

// Dir is the cluster's working directory (logs, subnet files, etcd data).
func (c *Cluster) Dir() string { return c.dir }

// NodeDir is node i's directory (its subnet file and weftd logs).
func (c *Cluster) NodeDir(i int) string {
	return filepath.Join(c.dir, fmt.Sprintf("node%d", c.checkNode(i)))
}

// SubnetFile is the path weftd on node i is told to write (--subnet-file). The file is kept
// across weftd restarts, as flannel's is.
func (c *Cluster) SubnetFile(i int) string { return filepath.Join(c.NodeDir(i), "subnet.env") }

// Options returns the options the cluster was built with, defaults filled in.
func (c *Cluster) Options() Options { return c.opts }

func (c *Cluster) checkNode(i int) int {
	if i < 0 || i >= len(c.nodes) {
		panic(fmt.Sprintf("cluster: node %d out of range (cluster has %d nodes)", i, len(c.nodes)))
	}
	return i
}

// fatal ends the test (New) or panics (Start) with err.
func (c *Cluster) fatal(err error) {
	if c.t != nil {
		c.t.Helper()
		c.t.Fatal(err)
	}
	panic(err)
}

func (c *Cluster) logWeftdTails() {
	c.mu.Lock()
	weftds := append([]*Weftd(nil), c.weftds...)
	c.mu.Unlock()
	for _, w := range weftds {
		c.logf("weftd on node %d (%s), last lines:\n%s", w.node, w.logPath, tailLines(w.Log(), 40))
	}
	if c.etcd != nil {
		for _, m := range c.etcd.Members() {
			c.logf("etcd log (member %s): %s", m.Name(), m.LogPath())
		}
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
