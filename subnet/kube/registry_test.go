package kube

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/subnet"
)

const pfx = "flannel.alpha.coreos.com/"

func node(name, cidr string, ann map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
}

// flannelNode is a node as flanneld's vxlan backend annotates it.
func flannelNode(name, cidr, ip, mac string) *corev1.Node {
	return node(name, cidr, map[string]string{
		pfx + "kube-subnet-manager": "true",
		pfx + "backend-type":        "vxlan",
		pfx + "backend-data":        `{"VNI":1,"VtepMAC":"` + mac + `"}`,
		pfx + "public-ip":           ip,
	})
}

func TestNodeLease(t *testing.T) {
	ann, err := newAnnotations(DefaultAnnotationPrefix)
	if err != nil {
		t.Fatal(err)
	}
	good := flannelNode("a", "10.244.3.0/24", "192.0.2.3", "aa:bb:cc:dd:ee:03")
	l, _, err := ann.nodeLease(good)
	if err != nil || l.Subnet != netip.MustParsePrefix("10.244.3.0/24") || l.Attrs.PublicIP != netip.MustParseAddr("192.0.2.3") ||
		l.Attrs.BackendType != "vxlan" || string(l.Attrs.BackendData) != `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:03"}` {
		t.Fatalf("flanneld's node: %+v, %v", l, err)
	}
	hostgw := node("h", "10.244.4.0/24", map[string]string{pfx + "kube-subnet-manager": "true", pfx + "backend-type": "host-gw",
		pfx + "backend-data": "null", pfx + "public-ip": "192.0.2.4"})
	if l, _, err := ann.nodeLease(hostgw); err != nil || l.Attrs.BackendData != nil {
		t.Fatalf("host-gw node: %+v, %v", l, err)
	}
	dual := node("d", "", good.Annotations)
	dual.Spec.PodCIDRs = []string{"fd00::/64", "10.244.5.0/24"}
	if l, _, err := ann.nodeLease(dual); err != nil || l.Subnet != netip.MustParsePrefix("10.244.5.0/24") {
		t.Fatalf("dual-stack node: %+v, %v", l, err)
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good.Annotations {
			m[a] = b
		}
		m[pfx+k] = v
		return m
	}
	for name, n := range map[string]*corev1.Node{
		"nil annotations":   node("x", "10.244.6.0/24", nil),
		"not managed":       node("x", "10.244.6.0/24", with("kube-subnet-manager", "false")),
		"bad public ip":     node("x", "10.244.6.0/24", with("public-ip", "300.1.1.1")),
		"ipv6 public ip":    node("x", "10.244.6.0/24", with("public-ip", "fd00::1")),
		"bad backend data":  node("x", "10.244.6.0/24", with("backend-data", "{not json")),
		"no pod cidr":       node("x", "", good.Annotations),
		"bad pod cidr":      node("x", "10.244.6.0", good.Annotations),
		"host bits set":     node("x", "10.244.6.1/24", good.Annotations),
		"ipv6-only podcidr": node("x", "fd00::/64", good.Annotations),
	} {
		if _, _, err := ann.nodeLease(n); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAnnotationPrefix(t *testing.T) {
	for prefix, want := range map[string]string{
		"flannel.alpha.coreos.com":      "flannel.alpha.coreos.com/public-ip",
		"example.com/weft":              "example.com/weft-public-ip",
		"example.com/weft-":             "example.com/weft-public-ip",
		"example.com/":                  "example.com/public-ip",
		"Example.com":                   "",
		"a/b/c":                         "",
		"nodots":                        "",
		"flannel.alpha.coreos.com/x y-": "",
	} {
		a, err := newAnnotations(prefix)
		if (err == nil) != (want != "") || a.publicIP != want {
			t.Errorf("prefix %q: %q, %v; want %q", prefix, a.publicIP, err, want)
		}
	}
}

func newTestRegistry(t *testing.T, own string, nodes ...*corev1.Node) (*Registry, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset()
	for _, n := range nodes {
		if err := cs.Tracker().Add(n); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Config{API: fakeAPI{cs}, NodeName: own, Log: klog.Background(), NetConfPath: t.TempDir() + "/net-conf.json"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, cs
}

func testConfig(t *testing.T) *subnet.Config {
	cfg, err := subnet.ParseConfig([]byte(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func recv(t *testing.T, ch <-chan []subnet.Event) []subnet.Event {
	t.Helper()
	select {
	case evs := <-ch:
		return evs
	case <-time.After(15 * time.Second):
		t.Fatal("no peer events within 15s")
		return nil
	}
}

// TestManagerOverKube runs the Manager's policy over the kube Registry: the node claims its
// pod CIDR with flanneld's annotation bytes, peers come and go with their nodes, and nodes
// with nothing (or nonsense) published are ignored with a reason.
func TestManagerOverKube(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, cs := newTestRegistry(t, "me",
		node("me", "10.244.1.0/24", nil), // no annotations at all: flanneld v0.28 panics here
		flannelNode("flannel", "10.244.2.0/24", "192.0.2.2", "aa:bb:cc:dd:ee:02"),
		node("bare", "10.244.3.0/24", nil),
		node("junk", "10.244.4.0/24", map[string]string{pfx + "kube-subnet-manager": "true", pfx + "public-ip": "nope"}),
	)
	m := subnet.NewManager(subnet.ManagerConfig{Registry: reg, Network: testConfig(t), Log: klog.Background(),
		Peers: subnet.PeerRule{BackendType: "vxlan"}})
	attrs := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.1"), BackendType: "vxlan",
		BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}`)}
	l, err := m.Acquire(ctx, attrs, subnet.Lease{Subnet: netip.MustParsePrefix("10.244.99.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != netip.MustParsePrefix("10.244.1.0/24") || !l.Reserved() {
		t.Fatalf("lease %+v: want the pod CIDR, as a reservation", l)
	}
	me, err := cs.CoreV1().Nodes().Get(ctx, "me", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"kube-subnet-manager": "true", "backend-type": "vxlan",
		"backend-data": `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}`, "public-ip": "192.0.2.1"} {
		if got := me.Annotations[pfx+k]; got != v {
			t.Errorf("annotation %s = %q, want %q", k, got, v)
		}
	}

	events := make(chan []subnet.Event, 16)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.WatchPeers(wctx, events) }()
	defer func() { wcancel(); <-done }()
	first := recv(t, events)
	if len(first) != 1 || first[0].Lease.Subnet != netip.MustParsePrefix("10.244.2.0/24") {
		t.Fatalf("initial peers %+v: want only the flanneld node", first)
	}
	ignored := map[string]string{}
	for _, ig := range m.Ignored() {
		ignored[ig.Key] = ig.Reason
	}
	if ignored["10.244.3.0-24"] != subnet.IgnoredMalformed || ignored["10.244.4.0-24"] != subnet.IgnoredMalformed {
		t.Errorf("ignored %v: want the bare and the junk node as malformed", ignored)
	}

	// A new peer, then a changed one (new VTEP MAC), then one deleted.
	if _, err := cs.CoreV1().Nodes().Create(ctx, flannelNode("new", "10.244.5.0/24", "192.0.2.5", "aa:bb:cc:dd:ee:05"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if evs := recv(t, events); len(evs) != 1 || evs[0].Type != subnet.Added || evs[0].Lease.Attrs.PublicIP != netip.MustParseAddr("192.0.2.5") {
		t.Fatalf("node added: %+v", evs)
	}
	changed := flannelNode("new", "10.244.5.0/24", "192.0.2.5", "aa:bb:cc:dd:ee:55")
	if _, err := cs.CoreV1().Nodes().Update(ctx, changed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if evs := recv(t, events); len(evs) != 1 || evs[0].Type != subnet.Added || string(evs[0].Lease.Attrs.BackendData) != `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:55"}` {
		t.Fatalf("annotation changed: %+v", evs)
	}
	// A status heartbeat publishes nothing new: no event.
	hb := changed.DeepCopy()
	hb.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, hb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Nodes().Delete(ctx, "flannel", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if evs := recv(t, events); len(evs) != 1 || evs[0].Type != subnet.Removed || evs[0].Lease.Subnet != netip.MustParsePrefix("10.244.2.0/24") {
		t.Fatalf("node deleted: %+v (a heartbeat must cause no event)", evs)
	}

	// Deleting this node's own Node loses the lease.
	hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
	defer hcancel()
	held := make(chan error, 1)
	go func() { held <- m.Hold(hctx, l, nil) }()
	if err := cs.CoreV1().Nodes().Delete(ctx, "me", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-held; !errors.Is(err, subnet.ErrLeaseLost) {
		t.Fatalf("Hold after the node was deleted: %v, want ErrLeaseLost", err)
	}
}

// TestWaitsForPodCIDR: a node without a pod CIDR is waited for, with the reason, and claims
// it as soon as it appears.
func TestWaitsForPodCIDR(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, cs := newTestRegistry(t, "me", node("me", "", nil))
	// The informer's first sync first, under the long context: the short one below is for
	// the wait under test only (a sync cut short says "context deadline exceeded").
	if _, err := reg.ListLeases(ctx); err != nil {
		t.Fatal(err)
	}
	short, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, _, err := reg.AssignedSubnets(short, nil)
	scancel()
	if !errors.Is(err, subnet.ErrNotAssigned) {
		t.Fatalf("no pod CIDR: %v, want ErrNotAssigned", err)
	}
	t.Logf("reason: %v", err)
	got := make(chan netip.Prefix, 1)
	go func() { sn, _, _ := reg.AssignedSubnets(ctx, nil); got <- sn }()
	time.Sleep(100 * time.Millisecond)
	if _, err := cs.CoreV1().Nodes().Update(ctx, node("me", "10.244.7.0/24", nil), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case sn := <-got:
		if sn != netip.MustParsePrefix("10.244.7.0/24") {
			t.Fatalf("assigned %s", sn)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the pod CIDR did not arrive")
	}
}

// TestPublicIPOverwrite: the node's public-ip-overwrite annotation is what is published.
func TestPublicIPOverwrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, cs := newTestRegistry(t, "me", node("me", "10.244.1.0/24", map[string]string{pfx + "public-ip-overwrite": "198.51.100.7"}))
	sn := netip.MustParsePrefix("10.244.1.0/24")
	l, err := reg.CreateLease(ctx, sn, netip.Prefix{}, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.1"), BackendType: "host-gw"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	me, _ := cs.CoreV1().Nodes().Get(ctx, "me", metav1.GetOptions{})
	if l.Attrs.PublicIP != netip.MustParseAddr("198.51.100.7") || me.Annotations[pfx+"public-ip"] != "198.51.100.7" || me.Annotations[pfx+"backend-data"] != "null" {
		t.Fatalf("lease %+v, annotations %v", l, me.Annotations)
	}
	if _, err := reg.CreateLease(ctx, netip.MustParsePrefix("10.244.2.0/24"), netip.Prefix{}, l.Attrs, 0); !errors.Is(err, ErrNotPodCIDR) {
		t.Fatalf("another subnet: %v", err)
	}
}

func FuzzNodeLease(f *testing.F) {
	f.Add("10.244.1.0/24", "true", "192.0.2.1", "vxlan", `{"VNI":1}`)
	f.Add("", "", "", "", "")
	f.Add("10.244.1.0/24", "true", "::1", "host-gw", "null")
	ann, _ := newAnnotations(DefaultAnnotationPrefix)
	f.Fuzz(func(t *testing.T, cidr, managed, ip, btype, data string) {
		n := node("x", cidr, map[string]string{ann.managed: managed, ann.publicIP: ip, ann.backendType: btype, ann.backendData: data})
		l, _, err := ann.nodeLease(n)
		if err != nil {
			return
		}
		if _, err := json.Marshal(l.Attrs); err != nil {
			t.Fatalf("accepted attributes that cannot be written: %+v: %v", l.Attrs, err)
		}
	})
}

// TestNodeName: NODE_NAME, else the node of the pod POD_NAMESPACE/POD_NAME, as flanneld.
func TestNodeName(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "weft-abc", Namespace: "kube-system"},
		Spec: corev1.PodSpec{NodeName: "n7"}})
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if n, err := NodeName(ctx, fakeAPI{cs}, env(map[string]string{"NODE_NAME": "n1", "POD_NAME": "weft-abc", "POD_NAMESPACE": "kube-system"})); n != "n1" || err != nil {
		t.Errorf("NODE_NAME: %q, %v", n, err)
	}
	if n, err := NodeName(ctx, fakeAPI{cs}, env(map[string]string{"POD_NAME": "weft-abc", "POD_NAMESPACE": "kube-system"})); n != "n7" || err != nil {
		t.Errorf("from the pod: %q, %v", n, err)
	}
	if _, err := NodeName(ctx, fakeAPI{cs}, env(nil)); err == nil {
		t.Error("no name, no pod: no error")
	}
}
