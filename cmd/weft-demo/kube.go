package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/kubetest"
)

// kubeDemo is the Kubernetes side of a -mode kube run: a real kube-apiserver in the hub
// namespace (on the cluster's etcd), dist/kube-weft.yml applied, and weftd started with the
// token of its ServiceAccount, as the DaemonSet's pods would be.
type kubeDemo struct {
	api        *kubetest.Server
	admin      kubernetes.Interface
	kubeconfig string
	netConf    string
}

func kubeNodeName(i int) string { return fmt.Sprintf("node%d", i) }

// startKube starts the API server, applies the manifest and creates one Node per node with
// its pod CIDR, as kube-controller-manager would assign it.
func (d *demo) startKube(ctx context.Context) error {
	if err := kubetest.Available(); err != nil {
		return fmt.Errorf("-mode kube: %w (`make kube-apiserver` builds it once, in about 10 minutes)", err)
	}
	dir := filepath.Join(d.c.Dir(), "kube")
	s, err := kubetest.New(kubetest.Options{Netns: d.c.HubNS(), Host: cluster.HubIP, Port: 6443,
		EtcdEndpoint: d.c.EtcdEndpoint(), Dir: dir})
	if err != nil {
		return err
	}
	k := &kubeDemo{api: s, kubeconfig: filepath.Join(dir, "kubeconfig"), netConf: filepath.Join(dir, "net-conf.json")}
	d.kube = k
	t := time.Now()
	if err := s.Start(); err != nil {
		return err
	}
	d.step("kube-apiserver %s (%s) ready in %s: hub namespace, on etcd, RBAC authorization; log %s",
		kubetest.Version, s.URL(), secs(time.Since(t)), s.LogPath())
	if k.admin, err = s.AdminClient(); err != nil {
		return err
	}
	root, err := cluster.ModuleRoot()
	if err != nil {
		return err
	}
	manifest, err := os.ReadFile(filepath.Join(root, "dist", "kube-weft.yml"))
	if err != nil {
		return err
	}
	objs, err := kubetest.Apply(ctx, k.admin, string(manifest))
	if err != nil {
		return fmt.Errorf("apply dist/kube-weft.yml: %w", err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, strings.TrimPrefix(fmt.Sprintf("%T", o), "*"))
	}
	d.step("applied dist/kube-weft.yml: %s", strings.Join(kinds, ", "))
	token, err := s.ServiceAccountToken(ctx, "kube-system", "kube-weft")
	if err != nil {
		return err
	}
	if err := s.WriteKubeconfig(k.kubeconfig, token); err != nil {
		return err
	}
	d.step("weftd's kubeconfig: %s (a token of ServiceAccount kube-system/kube-weft, bound to ClusterRole kube-weft)", k.kubeconfig)
	cfg := configJSON(d.opts.family, d.opts.backend)
	if err := os.WriteFile(k.netConf, []byte(cfg), 0o644); err != nil {
		return err
	}
	d.step("network config (net-conf.json): %s = %s", k.netConf, cfg)
	for i := range d.opts.nodes {
		cidrs := podCIDRs(d.opts.family, i)
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: kubeNodeName(i)},
			Spec: corev1.NodeSpec{PodCIDR: cidrs[0], PodCIDRs: cidrs}}
		if _, err := k.admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	d.step("created %d Nodes node0..node%d with pod CIDRs %s.. (as kube-controller-manager assigns them)",
		d.opts.nodes, d.opts.nodes-1, strings.Join(podCIDRs(d.opts.family, 0), " "))
	return nil
}

// weftdOptions are node i's weftd options: none in etcd mode, Kubernetes mode's otherwise.
func (d *demo) weftdOptions(i int) cluster.WeftdOptions {
	if d.kube == nil {
		return cluster.WeftdOptions{}
	}
	return cluster.WeftdOptions{
		Omit: []string{"etcd-endpoints"},
		Args: []string{"--kube-subnet-mgr", "--kubeconfig-file", d.kube.kubeconfig, "--net-config-path", d.kube.netConf},
		Env:  []string{"NODE_NAME=" + kubeNodeName(i)},
	}
}

// reportNode prints node i's lease as Kubernetes holds it: its pod CIDR and annotations.
func (d *demo) reportNode(ctx context.Context, i int) {
	n := d.nodes[i]
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	node, err := d.kube.admin.CoreV1().Nodes().Get(gctx, kubeNodeName(i), metav1.GetOptions{})
	if err != nil {
		d.step("node%d: Node %s: %v", i, kubeNodeName(i), err)
		return
	}
	const p = "flannel.alpha.coreos.com/"
	d.step("node%d: lease after %s: pod CIDRs %s (%s), %s, MTU %d, ipmasq %t",
		i, secs(n.leased), strings.Join(node.Spec.PodCIDRs, " "), envSubnets(n.env),
		publicIPs(d.opts.family, node.Annotations[p+"public-ip"], node.Annotations[p+"public-ipv6"]), n.env.MTU, n.env.IPMasq)
	data := "backend-data=" + node.Annotations[p+"backend-data"]
	if d.opts.family.v6() {
		data += " backend-v6-data=" + node.Annotations[p+"backend-v6-data"]
	}
	d.step("node%d:   annotations %skube-subnet-manager=%s backend-type=%s %s", i, p,
		node.Annotations[p+"kube-subnet-manager"], node.Annotations[p+"backend-type"], data)
}
