package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
)

func TestLeases(t *testing.T) {
	e := newEnv(t)
	e.putConfig(`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`)
	cli := e.reg.Client()
	ctx := ctxT(t)

	// An empty store: the header only, and empty lists in JSON.
	r := e.run("leases").must(t, 0)
	if !regexp.MustCompile(`^SUBNET\s+PUBLIC-IP\s+BACKEND\s+EXPIRES-IN\s+RESERVED\n$`).MatchString(r.stdout) {
		t.Errorf("empty: %s", r)
	}
	r = e.run("leases", "-o", "json").must(t, 0)
	if !strings.Contains(r.stdout, `"leases": []`) || !strings.Contains(r.stdout, `"malformed": []`) {
		t.Errorf("empty JSON: %s", r)
	}

	e.lease("10.244.10.0/24", "192.0.2.10", "host-gw", 2*time.Hour)
	if _, err := e.reg.CreateLease(ctx, pfx("10.244.2.0/24"), netip.Prefix{}, subnet.LeaseAttrs{
		PublicIP: addr("192.0.2.2"), BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}`),
	}, time.Hour); err != nil {
		t.Fatal(err)
	}
	e.lease("10.244.3.0/24", "192.0.2.3", "", time.Hour) // flannel's udp: no BackendType
	e.lease("10.244.7.0/24", "192.0.2.7", "", 0)         // a reservation
	for key, value := range map[string]string{
		"garbage":        `{"PublicIP":"192.0.2.99"}`,
		"10.244.50.0-24": `not json`,
		"10.244.51.1-24": `{"PublicIP":"192.0.2.51","PublicIPv6":null}`,
	} {
		if _, err := cli.Put(ctx, testPrefix+"/subnets/"+key, value); err != nil {
			t.Fatal(err)
		}
	}

	r = e.run("leases").must(t, 0)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^SUBNET\s+PUBLIC-IP\s+BACKEND\s+EXPIRES-IN\s+RESERVED$`),
		// sorted by address, not by key text (10.244.10.0 after 10.244.7.0)
		regexp.MustCompile(`^10\.244\.2\.0/24\s+192\.0\.2\.2\s+vxlan\s+(59m\d+s|1h0m0s)\s+no$`),
		regexp.MustCompile(`^10\.244\.3\.0/24\s+192\.0\.2\.3\s+-\s+(59m\d+s|1h0m0s)\s+no$`),
		regexp.MustCompile(`^10\.244\.7\.0/24\s+192\.0\.2\.7\s+-\s+-\s+yes$`),
		regexp.MustCompile(`^10\.244\.10\.0/24\s+192\.0\.2\.10\s+host-gw\s+(1h59m\d+s|2h0m0s)\s+no$`),
		regexp.MustCompile(`^$`),
		regexp.MustCompile(`^3 malformed key\(s\) \(weftd skips them\):$`),
		regexp.MustCompile(`^KEY\s+ERROR$`),
	}
	if len(lines) != len(want)+3 {
		t.Fatalf("want %d lines, got %s", len(want)+3, r)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d %q does not match %s", i, lines[i], re)
		}
	}
	malformed := strings.Join(lines[len(want):], "\n")
	for _, m := range []string{
		testPrefix + "/subnets/10.244.50.0-24 ", `lease "10.244.50.0-24": invalid character`,
		testPrefix + "/subnets/10.244.51.1-24 ", `lease key "10.244.51.1-24": not an IPv4 subnet key`,
		testPrefix + "/subnets/garbage ", `lease key "garbage"`,
	} {
		if !strings.Contains(malformed, m) {
			t.Errorf("malformed section lacks %q:\n%s", m, malformed)
		}
	}

	r = e.run("leases", "-o", "json").must(t, 0)
	var res leasesResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, r)
	}
	if len(res.Leases) != 4 || len(res.Malformed) != 3 || res.Revision == 0 {
		t.Fatalf("JSON: %d leases, %d malformed, revision %d: %s", len(res.Leases), len(res.Malformed), res.Revision, r)
	}
	vx := res.Leases[0]
	var data bytes.Buffer
	_ = json.Compact(&data, vx.BackendData)
	if vx.Subnet != pfx("10.244.2.0/24") || vx.PublicIP != addr("192.0.2.2") || vx.BackendType != "vxlan" ||
		data.String() != `{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}` || vx.Reserved || vx.EtcdLeaseID == "" ||
		vx.ExpiresInSeconds == nil || *vx.ExpiresInSeconds < 3500 || *vx.ExpiresInSeconds > 3600 || time.Until(vx.Expires) > time.Hour {
		t.Errorf("vxlan lease in JSON: %+v", vx)
	}
	rsv := res.Leases[2]
	if rsv.Subnet != pfx("10.244.7.0/24") || !rsv.Reserved || rsv.EtcdLeaseID != "" || rsv.ExpiresInSeconds != nil || !rsv.Expires.IsZero() {
		t.Errorf("reservation in JSON: %+v", rsv)
	}
	if !strings.Contains(r.stdout, `"key": "`+testPrefix+`/subnets/garbage"`) {
		t.Errorf("malformed key missing from JSON: %s", r.stdout)
	}
}

// TestFlagsFromEnvironment: the etcd flags come from WEFTD_<FLAG>, else FLANNELD_<FLAG>,
// unless given on the command line.
func TestFlagsFromEnvironment(t *testing.T) {
	e := newEnv(t)
	cli := e.reg.Client()
	for _, p := range []string{"/weftd-env", "/flanneld-env", "/cli"} {
		if _, err := cli.Put(ctxT(t), p+"/config", `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"},"SubnetMin":"10.244.`+map[string]string{"/weftd-env": "1", "/flanneld-env": "2", "/cli": "3"}[p]+`.0"}`); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"FLANNELD_ETCD_ENDPOINTS": e.srv.Endpoint(), "FLANNELD_ETCD_PREFIX": "/flanneld-env"}, nil, "10.244.2.0"},
		{map[string]string{"WEFTD_ETCD_ENDPOINTS": e.srv.Endpoint(), "WEFTD_ETCD_PREFIX": "/weftd-env", "FLANNELD_ETCD_PREFIX": "/flanneld-env"}, nil, "10.244.1.0"},
		{map[string]string{"WEFTD_ETCD_ENDPOINTS": e.srv.Endpoint(), "WEFTD_ETCD_PREFIX": "/weftd-env"}, []string{"--etcd-prefix", "/cli"}, "10.244.3.0"},
		{map[string]string{"WEFTD_ETCD_PREFIX": "/weftd-env"}, []string{"--etcd-endpoints=" + e.srv.Endpoint()}, "10.244.1.0"},
	} {
		r := runWith(t, tc.env, "", append(tc.args, "config", "get")...).must(t, 0)
		if !strings.Contains(r.stdout, tc.want) {
			t.Errorf("env %v args %v: want the config with %s, got %s", tc.env, tc.args, tc.want, r)
		}
	}
}
