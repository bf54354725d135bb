package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/test/cluster"
)

// TestKubeNodePublicIP: in Kubernetes mode, an operator's node-public-ip annotation stands
// in for --public-ip, as with flanneld: node 0's annotation names a second address of its
// eth0, and weftd publishes that address (the public-ip annotation), sends its tunnel
// traffic from it, and pods on both nodes reach each other. A node without the
// annotation publishes its interface address.
func TestKubeNodePublicIP(t *testing.T) {
	const public = "192.0.2.200"
	k := newKubeCluster(t, 2, "vxlan")
	if out, err := k.Exec(k.NodeNS(0), "ip", "addr", "add", public+"/24", "dev", "eth0"); err != nil {
		t.Fatalf("node 0: ip addr add: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range 2 {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(i)},
			Spec: corev1.NodeSpec{PodCIDR: podCIDRFor(i), PodCIDRs: []string{podCIDRFor(i)}}}
		if i == 0 {
			n.Annotations = map[string]string{"flannel.alpha.coreos.com/node-public-ip": public}
		}
		if _, err := k.admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ds := map[int]*cluster.Weftd{0: k.startWeftd(t, 0), 1: k.startWeftd(t, 1)}
	if err := ds[0].WaitLog("Using the node's node-public-ip annotation as the public IP", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	pods := map[int]*cluster.Pod{}
	for i := range 2 {
		if _, err := k.WaitSubnetEnv(i, 30*time.Second); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		pods[i] = k.AddPod(i)
	}
	for i, want := range map[int]string{0: public, 1: k.NodeIP(1).String()} {
		eventually(t, 10*time.Second, fmt.Sprintf("node %d's public-ip annotation %s", i, want), func() error {
			n, err := k.admin.CoreV1().Nodes().Get(ctx, nodeName(i), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got := n.Annotations["flannel.alpha.coreos.com/public-ip"]; got != want {
				return fmt.Errorf("public-ip annotation is %q", got)
			}
			return nil
		})
	}
	if err := ds[0].WaitLog("tunnel traffic is sent from "+public, 5*time.Second); err != nil {
		t.Error(err)
	}
	pingAll(t, pods, 15*time.Second)
	if err := cluster.TCPTransfer(pods[0], pods[1], 1<<20, 30*time.Second); err != nil {
		t.Error(err)
	}
}
