package flagenv

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestName(t *testing.T) {
	for _, tc := range []struct{ prefix, flag, want string }{
		{"FLANNELD", "etcd-endpoints", "FLANNELD_ETCD_ENDPOINTS"},
		{"WEFTD", "iface", "WEFTD_IFACE"},
		{"WEFTD", "subnet-lease-renew-margin", "WEFTD_SUBNET_LEASE_RENEW_MARGIN"},
	} {
		if got := Name(tc.prefix, tc.flag); got != tc.want {
			t.Errorf("Name(%q, %q) = %q, want %q", tc.prefix, tc.flag, got, tc.want)
		}
	}
}

func newFS(t *testing.T) (*pflag.FlagSet, *string, *int, *[]string) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	s := fs.String("etcd-prefix", "/coreos.com/network", "")
	n := fs.Int("iptables-resync", 5, "")
	l := fs.StringSlice("iface", nil, "")
	return fs, s, n, l
}

func TestApply(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		prefix  string
		resync  int
		ifaces  string
		wantErr string
	}{
		{name: "defaults", prefix: "/coreos.com/network", resync: 5},
		{name: "first prefix wins", env: map[string]string{"WEFTD_ETCD_PREFIX": "/w", "FLANNELD_ETCD_PREFIX": "/f"}, prefix: "/w", resync: 5},
		{name: "second prefix", env: map[string]string{"FLANNELD_ETCD_PREFIX": "/f", "FLANNELD_IPTABLES_RESYNC": "9"}, prefix: "/f", resync: 9},
		{name: "empty counts as unset", env: map[string]string{"WEFTD_ETCD_PREFIX": "", "FLANNELD_ETCD_PREFIX": "/f"}, prefix: "/f", resync: 5},
		{name: "command line wins", args: []string{"--etcd-prefix=/cli"}, env: map[string]string{"WEFTD_ETCD_PREFIX": "/w"}, prefix: "/cli", resync: 5},
		{name: "slice from env", env: map[string]string{"WEFTD_IFACE": "eth0,eth1"}, prefix: "/coreos.com/network", resync: 5, ifaces: "eth0,eth1"},
		{name: "bad value names flag and variable", env: map[string]string{"FLANNELD_IPTABLES_RESYNC": "often"},
			wantErr: `invalid value "often" for --iptables-resync (from $FLANNELD_IPTABLES_RESYNC)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, s, n, l := newFS(t)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := Apply(fs, func(k string) string { return tc.env[k] }, "WEFTD", "FLANNELD")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *s != tc.prefix || *n != tc.resync || strings.Join(*l, ",") != tc.ifaces {
				t.Errorf("got prefix %q resync %d iface %q, want %q %d %q", *s, *n, strings.Join(*l, ","), tc.prefix, tc.resync, tc.ifaces)
			}
		})
	}
}

func TestApplyMarksChanged(t *testing.T) {
	fs, _, _, _ := newFS(t)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := Apply(fs, func(k string) string {
		if k == "WEFTD_ETCD_PREFIX" {
			return "/x"
		}
		return ""
	}, "WEFTD"); err != nil {
		t.Fatal(err)
	}
	if !fs.Changed("etcd-prefix") || fs.Changed("iptables-resync") {
		t.Errorf("Changed: etcd-prefix %v (want true), iptables-resync %v (want false)", fs.Changed("etcd-prefix"), fs.Changed("iptables-resync"))
	}
}

// TestWeftdPrefixes: WEFTD_ is tried before flanneld's FLANNELD_.
func TestWeftdPrefixes(t *testing.T) {
	fs, prefix, _, _ := newFS(t)
	env := map[string]string{"FLANNELD_ETCD_PREFIX": "/flannel", "WEFTD_ETCD_PREFIX": "/weft"}
	if err := Apply(fs, func(k string) string { return env[k] }, WeftdPrefixes()...); err != nil || *prefix != "/weft" {
		t.Fatalf("prefix %q (%v), want WEFTD_'s /weft", *prefix, err)
	}
}
