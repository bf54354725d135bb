package main

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFlagsFromEnvironment(t *testing.T) {
	o, _, err := parseFlags([]string{"--iface", "eth1", "--ip-masq"}, env(map[string]string{
		"WEFTD_IFACE":                        "eth9", // the command line wins
		"FLANNELD_ETCD_PREFIX":               "/flannel/net",
		"WEFTD_SUBNET_LEASE_RENEW_MARGIN":    "30",
		"FLANNELD_SUBNET_LEASE_RENEW_MARGIN": "45", // WEFTD_ wins over FLANNELD_
		"FLANNELD_IFACE_REGEX":               "^en,^eth",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.ifaces) != 1 || o.ifaces[0] != "eth1" {
		t.Errorf("iface = %v, want the command line's [eth1]", o.ifaces)
	}
	if o.etcdPrefix != "/flannel/net" || o.renewMargin != 30 || !o.ipMasq || len(o.ifaceRegexes) != 2 {
		t.Errorf("got prefix %q margin %d masq %v regexes %v", o.etcdPrefix, o.renewMargin, o.ipMasq, o.ifaceRegexes)
	}
	c := o.daemonConfig("test")
	if c.RenewMargin != 30*time.Minute || c.Etcd.Endpoints[0] != "http://127.0.0.1:2379" || c.HealthzAddr != "" || !c.ForwardRules || !c.RestrictTunnelPort {
		t.Errorf("daemon config %+v", c)
	}
}

func TestFlagErrorsNameFlagAndValue(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--kube-subnet-mgr"}, nil, "unknown flag: --kube-subnet-mgr"},
		{[]string{"--subnet-lease-renew-margin", "1440"}, nil, "invalid value 1440 for --subnet-lease-renew-margin"},
		{[]string{"--healthz-port", "70000"}, nil, "invalid value 70000 for --healthz-port"},
		{[]string{"--healthz-port", "1", "--healthz-ip", "nope"}, nil, `invalid value "nope" for --healthz-ip`},
		{[]string{"--etcd-endpoints", "127.0.0.1:2379"}, nil, `invalid value "127.0.0.1:2379" for --etcd-endpoints`},
		{[]string{"--etcd-cafile", "/nonexistent/ca.pem"}, nil, "--etcd-cafile /nonexistent/ca.pem"},
		{nil, map[string]string{"FLANNELD_IP_MASQ": "yes"}, `invalid value "yes" for --ip-masq (from $FLANNELD_IP_MASQ)`},
		{[]string{"stray"}, nil, `unexpected argument "stray"`},
	} {
		_, _, err := parseFlags(tc.args, env(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}
