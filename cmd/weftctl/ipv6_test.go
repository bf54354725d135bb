package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/health"
	"github.com/weftnet/weft/pkg/status"
	"github.com/weftnet/weft/subnet"
)

const (
	dualConfig   = `{"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"fd00:10::/56","Backend":{"Type":"host-gw"}}`
	ipv6Config   = `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10::/56","Backend":{"Type":"host-gw"}}`
	dualVXLANKey = "10.244.2.0-24&fd00:10:0:2::-64"
	// flanneld's vxlan value of a dual-stack lease, byte for byte.
	dualVXLANValue = `{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8::2","BackendType":"vxlan",` +
		`"BackendData":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"},"BackendV6Data":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:91"}}`
	ipv6OnlyKey   = "0.0.0.0-0&fd00:10:0:9::-64"
	ipv6OnlyValue = `{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::9","BackendType":"host-gw"}`
)

// putLease writes a lease value under an etcd lease of ttl (0: a reservation), as flanneld
// would, bypassing weft's registry.
func (e *env) putLease(key, value string, ttl time.Duration) {
	e.t.Helper()
	var opts []clientv3.OpOption
	if ttl > 0 {
		g, err := e.reg.Client().Grant(ctxT(e.t), int64(ttl/time.Second))
		if err != nil {
			e.t.Fatal(err)
		}
		opts = append(opts, clientv3.WithLease(g.ID))
	}
	if _, err := e.reg.Client().Put(ctxT(e.t), testPrefix+"/subnets/"+key, value, opts...); err != nil {
		e.t.Fatal(err)
	}
}

// TestLeasesDualStackAndIPv6Only: flanneld's dual-stack and IPv6-only leases are listed
// with both subnets and both public IPs ("-" for a family a lease lacks), IPv6-only ones
// after the others; the JSON carries the key, the IPv6 fields and BackendV6Data.
func TestLeasesDualStackAndIPv6Only(t *testing.T) {
	e := newEnv(t)
	e.putConfig(dualConfig)
	e.putLease(dualVXLANKey, dualVXLANValue, time.Hour)
	e.putLease(ipv6OnlyKey, ipv6OnlyValue, 0)
	e.lease("10.244.10.0/24", "192.0.2.10", "host-gw", 2*time.Hour)

	r := e.run("leases").must(t, 0)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^SUBNET\s+IPV6-SUBNET\s+PUBLIC-IP\s+PUBLIC-IPV6\s+BACKEND\s+EXPIRES-IN\s+RESERVED$`),
		regexp.MustCompile(`^10\.244\.2\.0/24\s+fd00:10:0:2::/64\s+192\.0\.2\.2\s+2001:db8::2\s+vxlan\s+(59m\d+s|1h0m0s)\s+no$`),
		regexp.MustCompile(`^10\.244\.10\.0/24\s+-\s+192\.0\.2\.10\s+-\s+host-gw\s+(1h59m\d+s|2h0m0s)\s+no$`),
		regexp.MustCompile(`^-\s+fd00:10:0:9::/64\s+-\s+2001:db8::9\s+host-gw\s+-\s+yes$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("want %d lines, got %s", len(want), r)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d %q does not match %s", i, lines[i], re)
		}
	}

	r = e.run("leases", "-o", "json").must(t, 0)
	var res leasesResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res.Leases) != 3 || len(res.Malformed) != 0 {
		t.Fatalf("JSON: %v: %s", err, r)
	}
	dual, v6 := res.Leases[0], res.Leases[2]
	if dual.Key != dualVXLANKey || dual.IPv6Subnet != pfx("fd00:10:0:2::/64") || dual.PublicIPv6 != addr("2001:db8::2") ||
		!strings.Contains(string(dual.BackendV6Data), `"fa:a7:71:71:58:91"`) {
		t.Errorf("dual-stack row %+v", dual)
	}
	if v6.Key != ipv6OnlyKey || v6.Subnet.IsValid() || v6.PublicIP.IsValid() || v6.IPv6Subnet != pfx("fd00:10:0:9::/64") || !v6.Reserved {
		t.Errorf("IPv6-only row %+v", v6)
	}
	if !strings.Contains(r.stdout, `"subnet": "",`) || !strings.Contains(r.stdout, `"key": "`+ipv6OnlyKey+`"`) {
		t.Errorf("IPv6-only lease in JSON:\n%s", r.stdout)
	}
	// An IPv4-only store keeps the old table (no IPv6 columns).
	e2 := newEnv(t)
	e2.putConfig(hostGWConfig)
	e2.lease("10.244.3.0/24", "192.0.2.3", "host-gw", time.Hour)
	if r := e2.run("leases").must(t, 0); strings.Contains(r.stdout, "IPV6") {
		t.Errorf("IPv4-only table has IPv6 columns:\n%s", r.stdout)
	}
}

// TestReserveDualStack: reserve writes flanneld's dual-stack key and value without TTL,
// which a dual-stack Manager then takes for that node; unreserve finds it by its IPv4
// subnet. Reservations of the wrong families, and subnets held in another key, are refused.
func TestReserveDualStack(t *testing.T) {
	e := newEnv(t)
	e.putConfig(dualConfig)
	r := e.run("reserve", "10.244.77.0/24", "192.0.2.7", "--ipv6-subnet", "fd00:10:0:77::/64", "--public-ipv6", "2001:db8::7").must(t, 0)
	if r.stdout != "reserved 10.244.77.0/24 and fd00:10:0:77::/64 for 192.0.2.7 and 2001:db8::7\n" {
		t.Errorf("reserve: %s", r)
	}
	value, leaseID, ok := e.raw("10.244.77.0-24&fd00:10:0:77::-64")
	if !ok || value != `{"PublicIP":"192.0.2.7","PublicIPv6":"2001:db8::7"}` || leaseID != 0 {
		t.Fatalf("stored %q with etcd lease %x (present %v), want flanneld's dual-stack reservation", value, leaseID, ok)
	}
	cfg, err := subnet.ParseConfig([]byte(dualConfig))
	if err != nil {
		t.Fatal(err)
	}
	mgr := subnet.NewManager(subnet.ManagerConfig{Registry: e.reg, Network: cfg, Log: logr.Discard()})
	l, err := mgr.Acquire(ctxT(t), subnet.LeaseAttrs{PublicIP: addr("192.0.2.7"), PublicIPv6: addr("2001:db8::7"), BackendType: "host-gw"}, subnet.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != pfx("10.244.77.0/24") || l.IPv6Subnet != pfx("fd00:10:0:77::/64") || !l.Reserved() {
		t.Fatalf("Acquire took %s %s (reserved %v), want the reservation", l.Subnet, l.IPv6Subnet, l.Reserved())
	}
	// The same reservation given as a lease key: unchanged.
	r = e.run("reserve", "10.244.77.0-24&fd00:10:0:77::-64", "192.0.2.7", "--public-ipv6", "2001:db8::7", "-o", "json").must(t, 0)
	var res reserveResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Action != reserveUnchanged || res.IPv6Subnet != pfx("fd00:10:0:77::/64") ||
		res.Key != testPrefix+"/subnets/10.244.77.0-24&fd00:10:0:77::-64" {
		t.Errorf("second reserve: %+v (%v): %s", res, err, r)
	}

	e.putLease(dualVXLANKey, dualVXLANValue, time.Hour)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"10.244.5.0/24", "192.0.2.5"}, "the network is dual-stack: the reservation needs an IPv6 subnet of IPv6Network fd00:10::/56 (--ipv6-subnet)"},
		{[]string{"fd00:10:0:5::/64", "2001:db8::5"}, "the network is dual-stack: the reservation needs an IPv4 subnet of Network 10.244.0.0/16"},
		{[]string{"10.244.5.0/24", "192.0.2.5", "--ipv6-subnet", "fd00:11:0:5::/64", "--public-ipv6", "2001:db8::5"},
			"subnet fd00:11:0:5::/64 does not fit the network config (IPv6Network fd00:10::/56, IPv6SubnetLen /64)"},
		{[]string{"10.244.5.0/24", "192.0.2.5", "--ipv6-subnet", "fd00:10:0:5::/80", "--public-ipv6", "2001:db8::5"}, "does not fit the network config"},
		// One of the subnets is in another key.
		{[]string{"10.244.2.0/24", "192.0.2.2", "--ipv6-subnet", "fd00:10:0:3::/64", "--public-ipv6", "2001:db8::2"},
			"10.244.2.0/24 is in the lease " + testPrefix + "/subnets/" + dualVXLANKey + " of 192.0.2.2 and 2001:db8::2 (a lease)"},
		// The key is another node's.
		{[]string{dualVXLANKey, "192.0.2.99", "--public-ipv6", "2001:db8::99"},
			"subnets 10.244.2.0/24 and fd00:10:0:2::/64 are held by 192.0.2.2 and 2001:db8::2 (a lease), not 192.0.2.99 and 2001:db8::99"},
		// The same IPv4 node with another public IPv6 is another node.
		{[]string{dualVXLANKey, "192.0.2.2", "--public-ipv6", "2001:db8::99"}, "are held by 192.0.2.2 and 2001:db8::2 (a lease)"},
	} {
		r := e.run(append([]string{"reserve"}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("reserve %v: want exit 1 and %q, got %s", tc.args, tc.want, r)
		}
	}
	if value, leaseID, _ := e.raw(dualVXLANKey); value != dualVXLANValue || leaseID == 0 {
		t.Errorf("refusals changed flanneld's lease: %q, lease %x", value, leaseID)
	}

	// The node's own dual-stack lease becomes a reservation, keeping flanneld's value.
	r = e.run("reserve", "10.244.2.0/24", "192.0.2.2", "--ipv6-subnet", "fd00:10:0:2::/64", "--public-ipv6", "2001:db8::2").must(t, 0)
	if !strings.Contains(r.stdout, "its lease is now a reservation") {
		t.Errorf("convert: %s", r)
	}
	if value, leaseID, _ := e.raw(dualVXLANKey); value != dualVXLANValue || leaseID != 0 {
		t.Errorf("converted lease: %q, lease %x; want flanneld's value without TTL", value, leaseID)
	}

	// unreserve by the IPv4 subnet alone finds the dual-stack key.
	r = e.run("unreserve", "10.244.77.0/24").must(t, 0)
	if r.stdout != "deleted the reservation of 192.0.2.7 and 2001:db8::7 for 10.244.77.0/24 and fd00:10:0:77::/64\n" {
		t.Errorf("unreserve: %s", r)
	}
	if _, _, ok := e.raw("10.244.77.0-24&fd00:10:0:77::-64"); ok {
		t.Error("unreserve left the dual-stack key")
	}
	// An IPv4 subnet held by two keys is ambiguous.
	e.putLease("10.244.2.0-24", `{"PublicIP":"192.0.2.2","PublicIPv6":null}`, 0)
	e.putLease("10.244.2.0-24&fd00:10:0:4::-64", `{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8::2"}`, 0)
	if r := e.run("unreserve", "fd00:10:0:2::/64").must(t, 0); !strings.Contains(r.stdout, "for 10.244.2.0/24 and fd00:10:0:2::/64") {
		t.Errorf("unreserve by the IPv6 subnet: %s", r)
	}
	e.putLease("10.244.2.0-24&fd00:10:0:5::-64", `{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8::2"}`, 0)
	// The exact IPv4 key wins over the dual-stack keys holding the same subnet.
	if r := e.run("unreserve", "10.244.2.0/24").must(t, 0); r.stdout != "deleted the reservation of 192.0.2.2 for 10.244.2.0/24\n" {
		t.Errorf("unreserve of the exact IPv4 key: %s", r)
	}
	for key, want := range map[string]bool{"10.244.2.0-24": false, "10.244.2.0-24&fd00:10:0:4::-64": true, "10.244.2.0-24&fd00:10:0:5::-64": true} {
		if _, _, ok := e.raw(key); ok != want {
			t.Errorf("after unreserve, key %s present %v, want %v", key, ok, want)
		}
	}
	r = e.run("unreserve", "10.244.2.0/24")
	if r.code != 1 || !strings.Contains(r.stderr, "10.244.2.0/24 is in 2 keys: 10.244.2.0-24&fd00:10:0:4::-64 10.244.2.0-24&fd00:10:0:5::-64; name one by its lease key") {
		t.Errorf("ambiguous unreserve: %s", r)
	}
}

// TestReserveIPv6Only: in an IPv6-only network, reserve takes an IPv6 SUBNET and the
// node's IPv6 address and writes flanneld's IPv6-only key and value, which an IPv6-only
// Manager takes for that node; unreserve deletes it by its IPv6 subnet.
func TestReserveIPv6Only(t *testing.T) {
	e := newEnv(t)
	e.putConfig(ipv6Config)
	r := e.run("reserve", "fd00:10:0:9::/64", "2001:db8::9").must(t, 0)
	if r.stdout != "reserved fd00:10:0:9::/64 for 2001:db8::9\n" {
		t.Errorf("reserve: %s", r)
	}
	value, leaseID, ok := e.raw(ipv6OnlyKey)
	if !ok || value != `{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::9"}` || leaseID != 0 {
		t.Fatalf("stored %q with etcd lease %x (present %v), want flanneld's IPv6-only reservation", value, leaseID, ok)
	}
	cfg, err := subnet.ParseConfig([]byte(ipv6Config))
	if err != nil {
		t.Fatal(err)
	}
	mgr := subnet.NewManager(subnet.ManagerConfig{Registry: e.reg, Network: cfg, Log: logr.Discard()})
	l, err := mgr.Acquire(ctxT(t), subnet.LeaseAttrs{PublicIPv6: addr("2001:db8::9"), BackendType: "host-gw"}, subnet.Lease{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet.IsValid() || l.IPv6Subnet != pfx("fd00:10:0:9::/64") || !l.Reserved() {
		t.Fatalf("Acquire took %s %s (reserved %v), want the IPv6-only reservation", l.Subnet, l.IPv6Subnet, l.Reserved())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"10.244.5.0/24", "192.0.2.5"}, "the network is IPv6-only (EnableIPv4 false): give SUBNET as an IPv6 subnet of IPv6Network fd00:10::/56, not 10.244.5.0/24"},
		{[]string{"fd00:10:0:9::/64", "2001:db8::99"}, "subnet fd00:10:0:9::/64 is held by 2001:db8::9 (a reservation), not 2001:db8::99"},
	} {
		r := e.run(append([]string{"reserve"}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("reserve %v: want exit 1 and %q, got %s", tc.args, tc.want, r)
		}
	}
	r = e.run("unreserve", "fd00:10:0:9::/64", "-o", "json").must(t, 0)
	var res unreserveResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || !res.Reservation || res.Subnet.IsValid() ||
		res.IPv6Subnet != pfx("fd00:10:0:9::/64") || res.PublicIPv6 != addr("2001:db8::9") || res.Key != testPrefix+"/subnets/"+ipv6OnlyKey {
		t.Errorf("unreserve: %+v (%v): %s", res, err, r)
	}
	if _, _, ok := e.raw(ipv6OnlyKey); ok {
		t.Error("unreserve left the IPv6-only key")
	}
}

// TestConfigSetOrphansFamilies: leases of other families than a new config runs are the
// orphans config set lists (a node takes a new lease with the new families).
func TestConfigSetOrphansFamilies(t *testing.T) {
	e := newEnv(t)
	e.putConfig(hostGWConfig)
	e.lease("10.244.3.0/24", "192.0.2.3", "host-gw", time.Hour)
	r := e.runStdin(dualConfig, "config", "set", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "1 existing lease(s) would no longer fit Network 10.244.0.0/16 with SubnetLen /24 and IPv6Network fd00:10::/56 with IPv6SubnetLen /64") ||
		!strings.Contains(r.stderr, "10.244.3.0/24  192.0.2.3  (lease)") {
		t.Errorf("dual-stack config over an IPv4 lease: %s", r)
	}
}

// TestStatusDualStack: weftctl status shows the node's and the peers' IPv6 side.
func TestStatusDualStack(t *testing.T) {
	st := health.NewState(nil)
	st.SetLease(pfx("10.244.5.0/24"))
	st.SetSubnetFile("/run/flannel/subnet.env")
	st.SetBackend("vxlan", true)
	node := healthServer(t, st, func() status.Status {
		s := sampleStatus()
		s.Node.InterfaceIPv6, s.Node.PublicIPv6 = addr("2001:db8::1"), addr("2001:db8::1")
		s.Lease.IPv6Network, s.Lease.IPv6Subnet = pfx("fd00:10::/56"), pfx("fd00:10:0:5::/64")
		s.Peers = []status.Peer{
			{IPv6Subnet: pfx("fd00:10:0:9::/64"), PublicIPv6: addr("2001:db8::9"), BackendType: "vxlan", State: status.PeerProgrammed},
			{Subnet: pfx("10.244.7.0/24"), PublicIP: addr("192.0.2.7"), IPv6Subnet: pfx("fd00:10:0:7::/64"), PublicIPv6: addr("2001:db8::7"),
				BackendType: "vxlan", State: status.PeerProgrammed},
		}
		return s
	})
	r := runWith(t, nil, "", "status", "--node", node).must(t, 0)
	for _, re := range []string{
		`(?m)^Node:\s+node-a eth0 192\.0\.2\.1 2001:db8::1, public IP 192\.0\.2\.1, public IPv6 2001:db8::1$`,
		`(?m)^Network:\s+10\.244\.0\.0/16$`,
		`(?m)^IPv6 network:\s+fd00:10::/56$`,
		`(?m)^Lease:\s+10\.244\.5\.0/24 and fd00:10:0:5::/64, expires in 23h0m0s, renewed 1h0m0s ago$`,
		`(?m)^Peers \(2\):\nSUBNET\s+IPV6-SUBNET\s+PUBLIC-IP\s+PUBLIC-IPV6\s+BACKEND\s+STATE\n` +
			`10\.244\.7\.0/24\s+fd00:10:0:7::/64\s+192\.0\.2\.7\s+2001:db8::7\s+vxlan\s+programmed\n` +
			`-\s+fd00:10:0:9::/64\s+-\s+2001:db8::9\s+vxlan\s+programmed\n`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("output does not match %s:\n%s", re, r.stdout)
		}
	}
	// An IPv6-only node: no IPv4 lines, public IPv6 alone.
	node6 := healthServer(t, st, func() status.Status {
		return status.Status{Version: "v0.3.0", Node: status.Node{Hostname: "node-b", InterfaceIPv6: addr("2001:db8::2"), PublicIPv6: addr("2001:db8::2")},
			Lease: status.Lease{IPv6Network: pfx("fd00:10::/56"), IPv6Subnet: pfx("fd00:10:0:2::/64"), Reserved: true}}
	})
	r = runWith(t, nil, "", "status", "--node", node6).must(t, 0)
	for _, re := range []string{
		`(?m)^Node:\s+node-b 2001:db8::2, public IPv6 2001:db8::2$`,
		`(?m)^Lease:\s+fd00:10:0:2::/64, reserved \(no expiry\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("output does not match %s:\n%s", re, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "Network:") {
		t.Errorf("IPv6-only status shows an IPv4 network:\n%s", r.stdout)
	}
}
