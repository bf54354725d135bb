package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet/etcdv3"
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
	if o.etcd.Prefix != "/flannel/net" || o.renewMargin != 30 || !o.ipMasq || len(o.ifaceRegexes) != 2 {
		t.Errorf("got prefix %q margin %d masq %v regexes %v", o.etcd.Prefix, o.renewMargin, o.ipMasq, o.ifaceRegexes)
	}
	c := o.daemonConfig("test")
	if c.RenewMargin != 30*time.Minute || c.Etcd.Endpoints[0] != "http://127.0.0.1:2379" || c.HealthzAddr != "" || !c.ForwardRules || !c.RestrictTunnelPort {
		t.Errorf("daemon config %+v", c)
	}
}

// TestEtcdFlagsFromEnvironment: every etcd flag comes from WEFTD_<FLAG>, else
// FLANNELD_<FLAG>, into the daemon's etcd config; the command line beats both.
func TestEtcdFlagsFromEnvironment(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, _, err := parseFlags([]string{"--etcd-username", "cli"}, env(map[string]string{
		"FLANNELD_ETCD_ENDPOINTS": "https://a:2379, https://b:2379",
		"WEFTD_ETCD_PREFIX":       "/weft/net",
		"FLANNELD_ETCD_PREFIX":    "/flannel/net",
		"FLANNELD_ETCD_CAFILE":    ca,
		"WEFTD_ETCD_USERNAME":     "env",
		"WEFTD_ETCD_PASSWORD":     "secret",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := etcdv3.Config{Endpoints: []string{"https://a:2379", "https://b:2379"}, Prefix: "/weft/net", CAFile: ca, Username: "cli", Password: "secret"}
	if got := o.daemonConfig("test").Etcd; !reflect.DeepEqual(got, want) {
		t.Errorf("etcd config %+v, want %+v", got, want)
	}
	if _, _, err := parseFlags(nil, env(map[string]string{"WEFTD_ETCD_KEYFILE": ca})); err == nil || !strings.Contains(err.Error(), "--etcd-keyfile and --etcd-certfile go together") {
		t.Errorf("keyfile without certfile from the environment: %v", err)
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
		{nil, map[string]string{"WEFTD_ETCD_ENDPOINTS": "http://a:2379,b:2379"}, `invalid value "http://a:2379,b:2379" for --etcd-endpoints: "b:2379" is not an http:// or https:// URL`},
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

// TestKubeFlags: flanneld's Kubernetes-mode flags, defaults and environment.
func TestKubeFlags(t *testing.T) {
	o, _, err := parseFlags(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.daemonConfig("test").Kube != nil {
		t.Error("Kubernetes mode without --kube-subnet-mgr")
	}
	o, _, err = parseFlags([]string{"--kube-subnet-mgr", "--kubeconfig-file", "/k", "--set-node-network-unavailable=false"},
		env(map[string]string{"FLANNELD_KUBE_ANNOTATION_PREFIX": "example.com/weft", "NODE_NAME": "n1"}))
	if err != nil {
		t.Fatal(err)
	}
	k := o.daemonConfig("test").Kube
	if k == nil || k.Kubeconfig != "/k" || k.APIURL != "" || k.AnnotationPrefix != "example.com/weft" ||
		k.NetConfPath != "/etc/kube-flannel/net-conf.json" || k.SetNodeNetworkUnavailable || k.Getenv("NODE_NAME") != "n1" {
		t.Errorf("kube config %+v", k)
	}
	o, _, _ = parseFlags([]string{"--kube-subnet-mgr"}, env(nil))
	if k := o.daemonConfig("test").Kube; k.AnnotationPrefix != "flannel.alpha.coreos.com" || !k.SetNodeNetworkUnavailable {
		t.Errorf("defaults %+v", k)
	}
}
