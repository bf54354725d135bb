package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/pkg/health"
	"github.com/weftnet/weft/pkg/status"
)

// healthServer serves /healthz, /readyz and /status the way weftd's health port is meant
// to (pkg/health with pkg/status mounted as "GET /status"), on loopback.
func healthServer(t *testing.T, st *health.State, get func() status.Status) string {
	t.Helper()
	extra := map[string]http.Handler{}
	if get != nil {
		extra["GET "+status.Path] = status.Handler(get)
	}
	srv := httptest.NewServer(health.NewServer("127.0.0.1:0", st, extra).Handler())
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func sampleStatus() status.Status {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return status.Status{
		Version: "v0.3.0",
		Time:    now,
		Started: now.Add(-90 * time.Minute),
		Node:    status.Node{Hostname: "node-a", Interface: "eth0", InterfaceIP: addr("192.0.2.1"), PublicIP: addr("192.0.2.1")},
		Lease: status.Lease{Network: pfx("10.244.0.0/16"), Subnet: pfx("10.244.5.0/24"),
			Expires: now.Add(23 * time.Hour), Renewed: now.Add(-time.Hour)},
		Backend: status.Backend{Type: "vxlan", Active: true, Device: "flannel.1", MTU: 1450, Info: map[string]string{"vni": "1"}},
		Peers: []status.Peer{
			{Subnet: pfx("10.244.10.0/24"), PublicIP: addr("192.0.2.10"), BackendType: "vxlan", State: status.PeerProgrammed},
			{Subnet: pfx("10.244.7.0/24"), PublicIP: addr("192.0.2.7"), BackendType: "vxlan", State: status.PeerError, Reason: "add route: network is unreachable"},
			{Subnet: pfx("10.244.8.0/24"), PublicIP: addr("192.0.2.8"), State: status.PeerIgnored, Reason: `BackendType "" is not vxlan`},
		},
		Counters: map[string]uint64{"leaseRenewals": 2, "watchResyncs": 1},
	}
}

func TestStatus(t *testing.T) {
	st := health.NewState(nil)
	st.SetLease(pfx("10.244.5.0/24"))
	st.SetSubnetFile("/run/flannel/subnet.env")
	st.SetBackend("vxlan", true)
	node := healthServer(t, st, sampleStatus)

	r := runWith(t, nil, "", "status", "--node", node).must(t, 0)
	for _, re := range []string{
		`(?m)^Node:\s+node-a eth0 192\.0\.2\.1, public IP 192\.0\.2\.1$`,
		`(?m)^weftd:\s+v0\.3\.0, up 1h30m0s$`,
		`(?m)^Ready:\s+yes$`,
		`(?m)^Network:\s+10\.244\.0\.0/16$`,
		`(?m)^Lease:\s+10\.244\.5\.0/24, expires in 23h0m0s, renewed 1h0m0s ago$`,
		`(?m)^Backend:\s+vxlan, device flannel\.1, MTU 1450, active, vni 1$`,
		`(?m)^Peers \(3\):\nSUBNET\s+PUBLIC-IP\s+BACKEND\s+STATE\n` +
			`10\.244\.7\.0/24\s+192\.0\.2\.7\s+vxlan\s+error: add route: network is unreachable\n` +
			`10\.244\.8\.0/24\s+192\.0\.2\.8\s+-\s+ignored: BackendType "" is not vxlan\n` +
			`10\.244\.10\.0/24\s+192\.0\.2\.10\s+vxlan\s+programmed\n`,
		`(?m)^Counters:\n\s+leaseRenewals\s+2\n\s+watchResyncs\s+1\n`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("output does not match %s:\n%s", re, r.stdout)
		}
	}

	r = runWith(t, nil, "", "status", "--node", node, "-o", "json").must(t, 0)
	var res statusResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, r)
	}
	if res.Node != node || !reflect.DeepEqual(res.Status, sampleStatus()) || res.Ready.Code != http.StatusOK || !res.Ready.Ready {
		t.Errorf("JSON: %+v", res)
	}
}

func TestStatusNotReady(t *testing.T) {
	st := health.NewState(nil)
	st.SetLease(pfx("10.244.5.0/24"))
	st.SetError(errors.New("backend vxlan: device busy"))
	node := healthServer(t, st, func() status.Status {
		s := sampleStatus()
		s.Lease = status.Lease{Network: pfx("10.244.0.0/16"), Subnet: pfx("10.244.5.0/24"), Reserved: true}
		s.Backend = status.Backend{Type: "vxlan"}
		s.Peers, s.Counters = nil, nil
		return s
	})
	r := runWith(t, nil, "", "status", "--node", node).must(t, 0)
	for _, want := range []string{
		"no (missing subnet file, backend; last error: backend vxlan: device busy)",
		"10.244.5.0/24, reserved (no expiry)",
		"vxlan, not active",
		"Peers (0):\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "Counters") {
		t.Errorf("empty counters printed:\n%s", r.stdout)
	}
	r = runWith(t, nil, "", "status", "--node", node, "-o", "json").must(t, 0)
	if !strings.Contains(r.stdout, `"code": 503`) || !strings.Contains(r.stdout, `"missing": [`) || !strings.Contains(r.stdout, `"peers": []`) {
		t.Errorf("JSON of a node that is not ready:\n%s", r.stdout)
	}
}

// TestStatusNotServed: a weftd without /status (older, or not wired) is an operational
// error that says so; an address nobody listens on names the URL.
func TestStatusNotServed(t *testing.T) {
	node := healthServer(t, health.NewState(nil), nil)
	r := runWith(t, nil, "", "status", "--node", node).must(t, 1)
	if !strings.Contains(r.stderr, "404 Not Found") || !strings.Contains(r.stderr, "does not serve /status") {
		t.Errorf("404: %s", r)
	}

	srv := httptest.NewServer(http.NotFoundHandler())
	gone := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	r = runWith(t, nil, "", "status", "--node", gone).must(t, 1)
	if !strings.Contains(r.stderr, "http://"+gone+"/status") || !strings.Contains(r.stderr, "connection refused") {
		t.Errorf("closed port: %s", r)
	}
}
