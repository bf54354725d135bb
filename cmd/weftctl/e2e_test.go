package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/status"
	"github.com/weftnet/weft/test/cluster"
)

// TestAgainstRunningWeftd runs the weftctl binary inside a node namespace of a namespace
// cluster (real etcd, real weftd): a reservation made with weftctl is the subnet weftd
// takes, and weftctl status shows that weftd's lease, backend and peers. The binary is
// exec'd (not run in-process) because it must run inside the node's namespace, where the
// health port listens on loopback.
func TestAgainstRunningWeftd(t *testing.T) {
	if testing.Short() {
		t.Skip("namespace cluster test")
	}
	c := cluster.New(t, cluster.Options{Nodes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "weftctl")
	if err := cluster.Build(ctx, "./cmd/weftctl", bin); err != nil {
		t.Fatal(err)
	}
	weftctl := func(node int, args ...string) (string, error) {
		return c.ExecContext(ctx, c.NodeNS(node), append([]string{"env", "WEFTD_ETCD_ENDPOINTS=" + c.EtcdEndpoint(), bin}, args...)...)
	}

	config := `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`
	if out, err := c.ExecContext(ctx, c.NodeNS(0), "sh", "-c",
		fmt.Sprintf("echo '%s' | env WEFTD_ETCD_ENDPOINTS=%s %s config set -", config, c.EtcdEndpoint(), bin)); err != nil {
		t.Fatalf("config set: %v\n%s", err, out)
	}
	node0 := c.NodeIP(0).String()
	if out, err := weftctl(0, "reserve", "10.244.77.0/24", node0); err != nil {
		t.Fatalf("reserve: %v\n%s", err, out)
	}

	c.StartNode(0, "--healthz-port", "8471")
	c.StartNode(1, "--healthz-port", "8471")
	env0, err := c.WaitSubnetEnv(0, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := env0.Subnet.Masked().String(); got != "10.244.77.0/24" {
		t.Fatalf("node 0 took %s, want its reservation 10.244.77.0/24", got)
	}
	env1, err := c.WaitSubnetEnv(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sn1 := env1.Subnet.Masked().String()

	// status, once node 0 has programmed node 1 and is ready.
	var out string
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err = weftctl(0, "status", "--node", "127.0.0.1:8471")
		if err == nil && strings.Contains(out, "Ready:    yes") && regexp.MustCompile(regexp.QuoteMeta(sn1)+`\s+\S+\s+host-gw\s+programmed`).MatchString(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("weftctl status never showed node 1 (%s) programmed and ready: %v\n%s", sn1, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("weftctl status:\n%s", out)
	for _, want := range []string{
		"public IP " + node0,
		"Lease:    10.244.77.0/24, reserved (no expiry)",
		"Backend:  host-gw",
		"Peers (1):",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	out, err = weftctl(0, "status", "--node", "127.0.0.1:8471", "-o", "json")
	if err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	var res struct {
		Status status.Status `json:"status"`
		Ready  struct {
			Code  int  `json:"code"`
			Ready bool `json:"ready"`
		} `json:"ready"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if res.Status.Lease.Subnet.String() != "10.244.77.0/24" || !res.Status.Lease.Reserved || res.Status.Node.PublicIP != c.NodeIP(0) ||
		len(res.Status.Peers) != 1 || res.Status.Peers[0].PublicIP != c.NodeIP(1) || !res.Ready.Ready || res.Ready.Code != 200 {
		t.Errorf("status JSON: %+v", res)
	}

	// leases from the other node: the reservation and node 1's ordinary lease.
	out, err = weftctl(1, "leases")
	if err != nil {
		t.Fatalf("leases: %v\n%s", err, out)
	}
	for _, re := range []string{
		`(?m)^10\.244\.77\.0/24\s+` + regexp.QuoteMeta(node0) + `\s+host-gw\s+-\s+yes$`,
		`(?m)^` + regexp.QuoteMeta(sn1) + `\s+` + regexp.QuoteMeta(c.NodeIP(1).String()) + `\s+host-gw\s+23h59m\d+s\s+no$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("leases does not match %s:\n%s", re, out)
		}
	}
}
