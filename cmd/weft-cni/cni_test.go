package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/kubetest"
	"github.com/weftnet/weft/test/nstest"
)

func TestDelegateConf(t *testing.T) {
	env := subnetenv.Env{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.5.1/24"), MTU: 1450, IPMasq: true}
	n, err := loadConf([]byte(`{"cniVersion":"0.3.1","name":"cbr0","type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	if n.SubnetFile != defaultSubnetFile || n.DataDir != defaultDataDir {
		t.Errorf("defaults: %+v", n)
	}
	d, err := delegateConf(n, env)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(d)
	want := `{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.5.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}`
	if string(got) != want {
		t.Errorf("delegate\n got %s\nwant %s", got, want)
	}
	// The delegate's own keys win; IPAM keys are merged; weftd not masquerading: the bridge does.
	n.Delegate = map[string]any{"type": "ptp", "mtu": 1400.0, "ipMasq": false}
	n.IPAM = map[string]any{"dataDir": "/x"}
	env.IPMasq = false
	d, _ = delegateConf(n, env)
	if d["type"] != "ptp" || d["mtu"] != 1400.0 || d["ipMasq"] != false || d["isGateway"] != nil ||
		!reflect.DeepEqual(d["ipam"].(map[string]any)["dataDir"], "/x") {
		t.Errorf("overrides: %v", d)
	}
}

// The test binary doubles as a libcni driver run inside a node's namespace (see runCNI), so
// that the plugins it executes act on that namespace and never on the test's own.
const driverEnv = "WEFT_CNI_TEST_DRIVER"

func TestMain(m *testing.M) {
	if op := os.Getenv(driverEnv); op != "" {
		if err := driver(op); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// driver runs one libcni operation on the conflist WEFT_CNI_CONF for the container
// WEFT_CNI_ID in the namespace WEFT_CNI_NETNS, with plugins from WEFT_CNI_BIN; ADD prints
// the result as JSON.
func driver(op string) error {
	raw, err := os.ReadFile(os.Getenv("WEFT_CNI_CONF"))
	if err != nil {
		return err
	}
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		return err
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{os.Getenv("WEFT_CNI_BIN")}, os.Getenv("WEFT_CNI_CACHE"), nil)
	rt := &libcni.RuntimeConf{ContainerID: os.Getenv("WEFT_CNI_ID"), NetNS: os.Getenv("WEFT_CNI_NETNS"), IfName: "eth0"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch op {
	case "ADD":
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		r, err := types100.NewResultFromResult(res)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(r)
	case "CHECK":
		return cni.CheckNetworkList(ctx, list, rt)
	case "DEL":
		return cni.DelNetworkList(ctx, list, rt)
	}
	return fmt.Errorf("unknown op %q", op)
}

func nodeDataDir(n cniNode) string { return filepath.Join(filepath.Dir(n.conf), "flannel") }

// cniNode is what the driver needs for one node.
type cniNode struct {
	ns, conf, bin, cache string
}

// runCNI runs op for the container id with the pod namespace podNS, inside the node's
// namespace.
func runCNI(t *testing.T, n cniNode, op, id, podNS string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.ns, self)
	cmd.Env = append(os.Environ(), driverEnv+"="+op, "WEFT_CNI_CONF="+n.conf, "WEFT_CNI_BIN="+n.bin,
		"WEFT_CNI_CACHE="+n.cache, "WEFT_CNI_ID="+id, "WEFT_CNI_NETNS=/run/netns/"+podNS)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("CNI %s of %s on %s: %v\n%s%s", op, id, n.ns, err, out, stderr)
	}
	return string(out)
}

// shippedConflist is cni-conf.json from dist/kube-weft.yml's ConfigMap.
func shippedConflist(t *testing.T, root string) map[string]any {
	t.Helper()
	manifest, err := os.ReadFile(filepath.Join(root, "dist", "kube-weft.yml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kubetest.Decode(string(manifest))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok {
			var conf map[string]any
			if err := json.Unmarshal([]byte(cm.Data["cni-conf.json"]), &conf); err != nil {
				t.Fatalf("cni-conf.json: %v", err)
			}
			return conf
		}
	}
	t.Fatal("no ConfigMap in dist/kube-weft.yml")
	return nil
}

// TestShippedConflistThroughLibcni: the shipped conflist (flannel type served by weft-cni,
// then portmap), run through libcni with bridge, host-local and portmap built from
// github.com/containernetworking/plugins, on two nodes of a namespace cluster running weftd:
// ADD gives each pod an address in its node's subnet, CHECK passes, the pods reach each
// other across the nodes, and DEL releases the addresses.
func TestShippedConflistThroughLibcni(t *testing.T) {
	c := cluster.New(t, cluster.Options{Nodes: 2})
	c.PutConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	root, err := cluster.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for name, pkg := range map[string]string{
		"flannel":    "./cmd/weft-cni",
		"bridge":     "github.com/containernetworking/plugins/plugins/main/bridge",
		"host-local": "github.com/containernetworking/plugins/plugins/ipam/host-local",
		"portmap":    "github.com/containernetworking/plugins/plugins/meta/portmap",
	} {
		if err := cluster.Build(ctx, pkg, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	conf := shippedConflist(t, root)
	nodes := make([]cniNode, 2)
	pods := make([]string, 2)
	ips := make([]netip.Addr, 2)
	ipamDirs := make([]string, 2)
	for i := range 2 {
		c.StartNode(i, "--ip-masq")
		env, err := c.WaitSubnetEnv(i, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(c.NodeDir(i), "cni")
		ipamDirs[i] = filepath.Join(dir, "ipam")
		// The node's own paths (on a real node: the defaults under /run and /var/lib).
		plugin := conf["plugins"].([]any)[0].(map[string]any)
		plugin["subnetFile"] = c.SubnetFile(i)
		plugin["dataDir"] = filepath.Join(dir, "flannel")
		plugin["ipam"] = map[string]any{"dataDir": ipamDirs[i]}
		raw, _ := json.Marshal(conf)
		nodes[i] = cniNode{ns: c.NodeNS(i), conf: filepath.Join(dir, "10-flannel.conflist"), bin: bin, cache: filepath.Join(dir, "cache")}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(nodes[i].conf, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		pods[i] = nstest.Temp(t, fmt.Sprintf("cnipod%d", i))
		out := runCNI(t, nodes[i], "ADD", pods[i], pods[i])
		var res types100.Result
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 {
			t.Fatalf("ADD result %s: %v", out, err)
		}
		ips[i], _ = netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
		if !env.Subnet.Masked().Contains(ips[i]) || ips[i] == env.Subnet.Addr() {
			t.Fatalf("pod on node %d got %s, want a pod address in %s", i, ips[i], env.Subnet)
		}
		runCNI(t, nodes[i], "CHECK", pods[i], pods[i])
	}
	for i := range 2 {
		dst := ips[1-i].String()
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, err := nstest.Run(pods[i], "ping", "-n", "-c", "1", "-W", "1", dst)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod %s does not reach %s: %v", ips[i], dst, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for i := range 2 {
		if _, err := os.Stat(filepath.Join(ipamDirs[i], "cbr0", ips[i].String())); err != nil {
			t.Fatalf("node %d: host-local holds no reservation for %s: %v", i, ips[i], err)
		}
		runCNI(t, nodes[i], "DEL", pods[i], pods[i])
		if _, err := os.Stat(filepath.Join(nodeDataDir(nodes[i]), pods[i])); !os.IsNotExist(err) {
			t.Errorf("node %d: the plugin's saved config for %s is still there (%v)", i, pods[i], err)
		}
		entries, _ := os.ReadDir(filepath.Join(ipamDirs[i], "cbr0"))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ips[i].String()) {
				t.Errorf("node %d: %s still reserved after DEL", i, ips[i])
			}
		}
		if out, _ := nstest.Run(pods[i], "ip", "-4", "addr", "show"); strings.Contains(out, ips[i].String()) {
			t.Errorf("pod %d still has %s after DEL:\n%s", i, ips[i], out)
		}
	}
}
