package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/kubetest"
)

const kubeScaleMethod = "Kubernetes mode (--kube-subnet-mgr), vxlan, against a real kube-apiserver " + kubetest.Version +
	" in the hub namespace on the cluster's etcd, with the token of dist/kube-weft.yml's ServiceAccount. The fake peers " +
	"are Nodes created through the API (16 writers) before weftd starts, annotated as flanneld's vxlan nodes, with pod " +
	"CIDRs of " + ScaleNetwork + " and PublicIPs from " + fakePublicIPs + ". Times are from weftd's log (its start, its " +
	"claim of the node's pod CIDR, which follows the informer's one list of every Node, its subnet file) to the first " +
	"50 ms poll that finds a route on flannel.1 for every peer."

// KubeScale is one weftd in Kubernetes mode with many Nodes in the API.
type KubeScale struct {
	Peers     int     `json:"peers"`
	Backend   string  `json:"backend"`
	Method    string  `json:"method"`
	Skipped   string  `json:"skipped,omitempty"`
	APIReadyS float64 `json:"apiserver_ready_s"` // kube-apiserver start to /readyz ok
	CreateS   float64 `json:"nodes_created_s"`   // the Nodes created through the API
	// From weftd's start: its subnet file (ready), its claim (after the node list), every
	// peer's route; and from the claim to every route. -1: not measured.
	ReadyS           float64  `json:"start_to_ready_s"`
	ListedS          float64  `json:"start_to_listed_s"`
	ProgrammedS      float64  `json:"start_to_programmed_s"`
	ListToProgrammed float64  `json:"list_to_programmed_s"`
	RSSKiB           int64    `json:"rss_kib"`
	Routes           int      `json:"routes"`
	Errors           []string `json:"errors,omitempty"`
}

// kubeScalePhase measures one weftd in Kubernetes mode with r.o.Scale Nodes.
func (r *runner) kubeScalePhase(ctx context.Context) *KubeScale {
	k := &KubeScale{Peers: r.o.Scale, Backend: "vxlan", Method: kubeScaleMethod,
		APIReadyS: -1, CreateS: -1, ReadyS: -1, ListedS: -1, ProgrammedS: -1, ListToProgrammed: -1}
	if err := kubetest.Available(); err != nil {
		k.Skipped = err.Error()
		r.step("kube scale: skipped: %v", err)
		return k
	}
	fail := func(format string, a ...any) *KubeScale {
		msg := fmt.Sprintf(format, a...)
		k.Errors = append(k.Errors, msg)
		r.fail("kube scale: %s", msg)
		return k
	}
	r.step("kube scale: building a 1-node cluster with kube-apiserver, vxlan over %s", ScaleNetwork)
	c, err := r.startCluster(ctx, "kube-scale", 1)
	if err != nil {
		return fail("cluster: %v", err)
	}
	var w *cluster.Weftd
	defer func() { r.closeCluster("kube-scale", c, len(k.Errors) > 0, []*cluster.Weftd{w}) }()
	dir := filepath.Join(c.Dir(), "kube")
	api, err := kubetest.New(kubetest.Options{Netns: c.HubNS(), Host: cluster.HubIP, Port: 6443, EtcdEndpoint: c.EtcdEndpoint(), Dir: dir})
	if err != nil {
		return fail("%v", err)
	}
	t0 := time.Now()
	if err := api.Start(); err != nil {
		return fail("%v", err)
	}
	defer api.Stop()
	k.APIReadyS = time.Since(t0).Seconds()
	admin, err := api.AdminClient()
	if err != nil {
		return fail("%v", err)
	}
	root, err := cluster.ModuleRoot()
	if err != nil {
		return fail("%v", err)
	}
	manifest, err := os.ReadFile(filepath.Join(root, "dist", "kube-weft.yml"))
	if err != nil {
		return fail("%v", err)
	}
	if _, err := kubetest.Apply(ctx, admin, string(manifest)); err != nil {
		return fail("apply dist/kube-weft.yml: %v", err)
	}
	token, err := api.ServiceAccountToken(ctx, "kube-system", "kube-weft")
	if err != nil {
		return fail("%v", err)
	}
	kubeconfig, netConf := filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "net-conf.json")
	if err := api.WriteKubeconfig(kubeconfig, token); err != nil {
		return fail("%v", err)
	}
	spec, _ := SpecFor("vxlan")
	if err := os.WriteFile(netConf, []byte(spec.NetworkConfig(ScaleNetwork)), 0o644); err != nil {
		return fail("%v", err)
	}
	network := netip.MustParsePrefix(ScaleNetwork)
	own := netip.PrefixFrom(network.Addr(), 24)
	leases, err := fakeLeases(network, own, r.o.Scale)
	if err != nil {
		return fail("%v", err)
	}
	nodes := []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node0"},
		Spec: corev1.NodeSpec{PodCIDR: own.String(), PodCIDRs: []string{own.String()}}}}
	for i, l := range leases {
		const p = "flannel.alpha.coreos.com/"
		nodes = append(nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("peer%d", i), Annotations: map[string]string{
			p + "kube-subnet-manager": "true", p + "backend-type": "vxlan",
			p + "backend-data": string(l.Attrs.BackendData), p + "public-ip": l.Attrs.PublicIP.String()}},
			Spec: corev1.NodeSpec{PodCIDR: l.Subnet.String(), PodCIDRs: []string{l.Subnet.String()}}})
	}
	t0 = time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(scaleWriters)
	for _, n := range nodes {
		g.Go(func() error {
			_, err := admin.CoreV1().Nodes().Create(gctx, n, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fail("create Nodes: %v", err)
	}
	k.CreateS = time.Since(t0).Seconds()
	r.step("kube scale: kube-apiserver ready in %.2f s; %d Nodes created in %.2f s; starting weftd", k.APIReadyS, len(nodes), k.CreateS)

	o := weftdOptions(c, 0)
	o.Omit = append(o.Omit, "etcd-endpoints")
	o.Args = append(o.Args, "--kube-subnet-mgr", "--kubeconfig-file", kubeconfig, "--net-config-path", netConf)
	o.Env = append(o.Env, "NODE_NAME=node0")
	if w, err = c.TryStartNode(0, o); err != nil {
		return fail("%v", err)
	}
	_, routesAt, _ := r.pollProgrammed(ctx, c.NodeNS(0), network, time.Now(), r.o.Scale)
	if routesAt.IsZero() {
		return fail("not every route programmed within %v", r.o.ScaleTimeout)
	}
	if k.RSSKiB, err = procRSSKiB(w.PID()); err != nil {
		fail("rss: %v", err)
	}
	if k.Routes, _, _, err = vxlanCounts(c.NodeNS(0), network, false); err != nil {
		fail("%v", err)
	}
	log := w.RunLog()
	started, ok1 := klogTime(log, "Starting weftd", routesAt)
	listed, ok2 := klogTime(log, "Claimed the subnets assigned to this node", routesAt)
	ready, ok3 := klogTime(log, "Wrote subnet file", routesAt)
	if !ok1 || !ok2 || !ok3 {
		return fail("weftd's log lacks its start, claim or subnet file")
	}
	k.ReadyS = ready.Sub(started).Seconds()
	k.ListedS = listed.Sub(started).Seconds()
	k.ProgrammedS = routesAt.Sub(started).Seconds()
	k.ListToProgrammed = routesAt.Sub(listed).Seconds()
	r.step("kube scale: weftd start -> ready %.2f s, -> node list %.2f s, -> %d routes %.2f s (%.2f s after the list); RSS %s",
		k.ReadyS, k.ListedS, k.Routes, k.ProgrammedS, k.ListToProgrammed, mib(k.RSSKiB))
	return k
}

// klogTime is the time of the first klog line of log containing substr, on day's date.
func klogTime(log, substr string, day time.Time) (time.Time, bool) {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, substr) {
			continue
		}
		f := strings.Fields(line) // I1206 02:24:30.961016 pid file:line] ...
		if len(f) < 2 {
			return time.Time{}, false
		}
		tod, err := time.ParseInLocation("15:04:05.000000", f[1], time.Local)
		if err != nil {
			return time.Time{}, false
		}
		y, m, d := day.Date()
		return time.Date(y, m, d, tod.Hour(), tod.Minute(), tod.Second(), tod.Nanosecond(), time.Local), true
	}
	return time.Time{}, false
}

// kubeScaleText is the table's Kubernetes-mode section.
func kubeScaleText(k *KubeScale) string {
	if k == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nKubernetes mode: one weftd (%s) and %d Nodes in a real kube-apiserver\n", k.Backend, k.Peers)
	if k.Skipped != "" {
		fmt.Fprintf(&b, "  skipped: %s\n", k.Skipped)
		return b.String()
	}
	fmt.Fprintf(&b, "  kube-apiserver ready in %s; %d Nodes created through the API in %s\n", secs(k.APIReadyS), k.Peers+1, secs(k.CreateS))
	fmt.Fprintf(&b, "  weftd start -> ready (subnet file) %s; -> node list %s; -> every peer's route %s (%s after the list)\n",
		secs(k.ReadyS), secs(k.ListedS), secs(k.ProgrammedS), secs(k.ListToProgrammed))
	fmt.Fprintf(&b, "  RSS with %d peers %s; %d routes on flannel.1\n", k.Peers, mib(k.RSSKiB), k.Routes)
	return b.String()
}
