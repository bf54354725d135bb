package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/nstest"
)

const (
	maxNodes         = 32               // the matrix is nodes²; a demo, not a scale test
	leaseTimeout     = 30 * time.Second // per node: weftd start to subnet file
	reachTimeout     = 30 * time.Second // from the last pod added: every pod reaches every pod
	pingTimeout      = time.Second      // one probe while converging
	progressEvery    = 5 * time.Second  // a "still waiting" line while converging
	pollInterval     = 10 * time.Millisecond
	transferBytes    = 8 << 20
	transferTimeout  = 30 * time.Second
	logTailLines     = 20
	maxParallelPings = 16
)

// options are the demo's settings, from the command line.
type options struct {
	backend string
	nodes   int
	weftd   string
	timeout time.Duration
	keep    bool
	mode    string // "etcd", or "kube": weftd --kube-subnet-mgr against a real kube-apiserver
	family  family // the network's address families
}

// node is what the demo knows about one node.
type node struct {
	weftd       *cluster.Weftd
	started     time.Time     // when weftd was started
	env         subnetenv.Env // the subnet file, once it appeared
	leased      time.Duration // weftd start to subnet file; 0: never
	reached     time.Duration // weftd start to its pod reachable from every other pod; 0: not (yet)
	reachedFrom int           // how many other pods have reached its pod while converging
	pod         *cluster.Pod  // nil: no pod
	failure     string        // why the node failed before the matrix, "" if it did not
}

// demo is one run. Only the goroutine calling run touches its fields.
type demo struct {
	opts  options
	t0    time.Time
	outMu sync.Mutex // serialises writes to out
	out   io.Writer
	c     *cluster.Cluster
	etcd  *clientv3.Client
	kube  *kubeDemo // nil in etcd mode
	nodes []*node
}

// run builds the cluster, runs the demo and tears everything down. ok reports whether every
// pod reached every other pod (and the transfer worked); err is for failures that stopped
// the demo before it could tell. With opts.keep the cluster stays up until sigCtx ends.
func run(sigCtx context.Context, opts options, out io.Writer) (ok bool, err error) {
	d := &demo{opts: opts, t0: time.Now(), out: out}
	defer func() {
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("internal error: %v\n%s", r, debug.Stack())
		}
	}()
	defer d.cleanup() // runs before the recover above, so a panic still tears down
	ctx, cancel := context.WithTimeout(sigCtx, opts.timeout)
	defer cancel()

	ok, err = d.demo(ctx)
	if ctx.Err() != nil {
		switch {
		case sigCtx.Err() != nil:
			err = errors.New("interrupted by a signal")
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			err = fmt.Errorf("timed out after %v (-timeout)", opts.timeout)
			d.step("%v", err)
			for i, n := range d.nodes {
				if n.reached == 0 {
					d.printLog(i)
				}
			}
			return false, err
		}
		d.step("%v", err)
		return false, err
	}
	if err != nil {
		return false, err
	}
	if opts.keep {
		d.keep(sigCtx)
	}
	return ok, nil
}

func (d *demo) demo(ctx context.Context) (bool, error) {
	bin, err := d.ensureWeftd(ctx)
	if err != nil {
		return false, err
	}
	v6 := d.opts.family.v6()
	underlay := fmt.Sprintf("bridge br0 (%s/24), %d node namespaces (192.0.2.1-%d)", cluster.HubIP, d.opts.nodes, d.opts.nodes)
	if v6 {
		underlay = fmt.Sprintf("bridge br0 (%s/24, %s/%d), %d node namespaces (192.0.2.1-%d, 2001:db8::1-%x)",
			cluster.HubIP, cluster.HubIPv6, cluster.UnderlayIPv6PrefixLen, d.opts.nodes, d.opts.nodes, d.opts.nodes)
	}
	d.step("building the underlay (network family %s): hub namespace with %s, then etcd in the hub", d.opts.family, underlay)
	d.c, err = cluster.Start(ctx, cluster.Options{Nodes: d.opts.nodes, WeftdPath: bin, IPv6: v6}, func(f string, a ...any) {
		d.step("  "+f, a...)
	})
	if err != nil {
		return false, err
	}
	if d.etcd, err = d.c.Etcd(ctx); err != nil {
		return false, err
	}
	if d.opts.mode == "kube" {
		if err := d.startKube(ctx); err != nil {
			return false, err
		}
	} else {
		cfg := configJSON(d.opts.family, d.opts.backend)
		d.step("writing the network config: %s/config = %s", d.c.Prefix(), cfg)
		if err := d.c.TryPutConfig(cfg); err != nil {
			return false, err
		}
	}
	if err := d.startWeftds(); err != nil {
		return false, err
	}
	d.waitLeases(ctx)
	d.addPods()
	d.converge(ctx)
	if ctx.Err() != nil {
		return false, nil
	}
	return d.report(ctx), nil
}

// ensureWeftd returns the weftd binary's absolute path, building it if it is missing.
func (d *demo) ensureWeftd(ctx context.Context) (string, error) {
	path, err := filepath.Abs(d.opts.weftd)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(path)
	switch {
	case err == nil && (st.IsDir() || st.Mode()&0o111 == 0):
		return "", fmt.Errorf("-weftd %s is not an executable file", path)
	case err == nil:
		d.step("weftd binary: %s (modified %s)", path, st.ModTime().Format("2006-01-02 15:04:05"))
		return path, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("-weftd: %w", err)
	}
	d.step("weftd binary %s is missing: go build -o %s ./cmd/weftd", path, path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	if err := cluster.Build(ctx, "./cmd/weftd", path); err != nil {
		return "", err
	}
	d.step("built %s", path)
	return path, nil
}

func (d *demo) startWeftds() error {
	for i := range d.opts.nodes {
		n := &node{started: time.Now()}
		w, err := d.c.TryStartNode(i, d.weftdOptions(i))
		if err != nil {
			return err
		}
		n.weftd = w
		d.nodes = append(d.nodes, n)
		d.step("node%d: weftd started, pid %d, namespace %s, log %s", i, w.PID(), d.c.NodeNS(i), w.LogPath())
	}
	return nil
}

// waitLeases polls every node's subnet file until it appears, weftd refuses the config or
// exits, leaseTimeout passes or ctx ends.
func (d *demo) waitLeases(ctx context.Context) {
	pending := make(map[int]bool)
	for i := range d.nodes {
		pending[i] = true
	}
	for len(pending) > 0 {
		for i := range d.nodes {
			if !pending[i] {
				continue
			}
			n := d.nodes[i]
			env, err := subnetenv.Read(d.c.SubnetFile(i))
			switch {
			case err == nil:
				n.leased, n.env = time.Since(n.started), env
				d.reportLease(ctx, i)
			case refusal(n.weftd.RunLog()) != "":
				n.failure = "weftd refused the network config: " + refusal(n.weftd.RunLog())
			case !n.weftd.Running():
				n.failure = fmt.Sprintf("weftd exited (%v) without writing a subnet file", n.weftd.Wait(time.Second))
				if why := fatal(n.weftd.RunLog()); why != "" {
					n.failure += ": " + why
				}
			case time.Since(n.started) > leaseTimeout:
				n.failure = fmt.Sprintf("no subnet file %v after weftd started", leaseTimeout)
			default:
				continue
			}
			if n.failure != "" {
				d.step("node%d: FAILED: %s", i, n.failure)
			}
			delete(pending, i)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pollInterval):
		}
	}
}

// reportLease prints node i's lease: the subnet file and the value weftd stored in etcd.
func (d *demo) reportLease(ctx context.Context, i int) {
	if d.kube != nil {
		d.reportNode(ctx, i)
		return
	}
	n := d.nodes[i]
	key := d.c.Prefix() + "/subnets/" + subnet.LeaseKey(n.env.Subnet.Masked(), n.env.IPv6Subnet.Masked())
	value, pub, pub6 := "(not found)", "?", "?"
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := d.etcd.Get(gctx, key)
	switch {
	case err != nil:
		value = fmt.Sprintf("(etcd: %v)", err)
	case len(resp.Kvs) == 1:
		value = string(resp.Kvs[0].Value)
		var attrs subnet.LeaseAttrs
		if json.Unmarshal(resp.Kvs[0].Value, &attrs) == nil {
			pub, pub6 = attrs.PublicIP.String(), attrs.PublicIPv6.String()
		}
	}
	d.step("node%d: lease after %s: subnet %s (%s), %s, MTU %d, ipmasq %t",
		i, secs(n.leased), subnets(n.env.Subnet, n.env.IPv6Subnet), envSubnets(n.env),
		publicIPs(d.opts.family, pub, pub6), n.env.MTU, n.env.IPMasq)
	d.step("node%d:   etcd %s = %s", i, key, value)
}

func (d *demo) addPods() {
	for i, n := range d.nodes {
		if n.failure != "" || n.leased == 0 {
			continue
		}
		pod, err := d.c.TryAddPod(i)
		if err != nil {
			n.failure = fmt.Sprintf("add pod: %v", err)
			d.step("node%d: FAILED: %s", i, n.failure)
			continue
		}
		n.pod = pod
		d.step("node%d: pod %s in namespace %s (bridge cni0 %s)", i, podIPs(pod), pod.NS, envSubnets(n.env))
	}
}

// podIPs names a pod's addresses: "10.244.1.2", "10.244.1.2 fd00:10:244:1::2" or
// "fd00:10:244:1::2".
func podIPs(p *cluster.Pod) string {
	if p.IPv6.IsValid() && p.IPv6 != p.IP {
		return p.IP.String() + " " + p.IPv6.String()
	}
	return p.IP.String()
}

// keep prints how to look at the cluster and waits for a signal.
func (d *demo) keep(sigCtx context.Context) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nthe cluster stays up until Ctrl-C (-keep). Namespaces:\n")
	fmt.Fprintf(&b, "  hub (br0, etcd)   %s\n", d.c.HubNS())
	for i, n := range d.nodes {
		fmt.Fprintf(&b, "  node%d             %s   log %s\n", i, d.c.NodeNS(i), n.weftd.LogPath())
		if n.pod != nil {
			fmt.Fprintf(&b, "  node%d pod %-8s %s\n", i, podIPs(n.pod), n.pod.NS)
		}
	}
	fmt.Fprintf(&b, "try:\n")
	fmt.Fprintf(&b, "  ip netns exec %s ip route\n", d.c.NodeNS(0))
	fmt.Fprintf(&b, "  ip netns exec %s ip -d link\n", d.c.NodeNS(0))
	fmt.Fprintf(&b, "  cat %s\n", d.c.SubnetFile(0))
	if pods := d.podNodes(); len(pods) >= 2 {
		src, dst := d.nodes[pods[0]].pod, d.nodes[pods[1]].pod
		fmt.Fprintf(&b, "  ip netns exec %s ping -c 3 %s\n", src.NS, dst.IP)
		if dst.IPv6.IsValid() && dst.IPv6 != dst.IP {
			fmt.Fprintf(&b, "  ip netns exec %s ping -c 3 %s\n", src.NS, dst.IPv6)
		}
		fmt.Fprintf(&b, "  ip netns exec %s tcpdump -ni eth0\n", d.c.NodeNS(dst.Node))
	}
	fmt.Fprintf(&b, "  ip netns exec %s etcdctl --endpoints %s get --prefix %s\n", d.c.HubNS(), d.c.EtcdEndpoint(), d.c.Prefix())
	d.print("%s", b.String())
	<-sigCtx.Done()
	d.print("\n")
}

// cleanup closes the etcd client and the cluster and checks that no namespace of this
// process is left.
func (d *demo) cleanup() {
	if d.etcd != nil {
		_ = d.etcd.Close()
	}
	if d.c == nil {
		return
	}
	if d.kube != nil {
		d.kube.api.Stop()
	}
	d.step("cleaning up: stopping weftd and etcd, deleting the namespaces")
	if err := d.c.Close(); err != nil {
		d.step("cleanup: %v", err)
	}
	if left := ownNamespaces(); len(left) > 0 {
		d.step("cleanup: namespaces left behind: %s", strings.Join(left, " "))
		return
	}
	d.step("cleaned up")
}

// ownNamespaces lists the namespaces this process made (nsutil names carry the PID) that
// still exist.
func ownNamespaces() []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	mine := fmt.Sprintf("%s%d-", nstest.Prefix, os.Getpid())
	var left []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], mine) {
			left = append(left, f[0])
		}
	}
	return left
}

// step prints one progress line with the time since the start.
func (d *demo) step(format string, a ...any) {
	d.print("[%7.2fs] %s\n", time.Since(d.t0).Seconds(), fmt.Sprintf(format, a...))
}

func (d *demo) print(format string, a ...any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintf(d.out, format, a...)
}
