package flagenv

import (
	"reflect"
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
	l := fs.StringArray("iface", nil, "")
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
		{name: "a repeatable flag takes one value, commas and all", env: map[string]string{"WEFTD_IFACE": "^e[a-z]{1,3}[0-9]$"}, prefix: "/coreos.com/network", resync: 5, ifaces: "^e[a-z]{1,3}[0-9]$"},
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
			if tc.ifaces != "" && len(*l) != 1 {
				t.Errorf("iface %q: want the variable as one value", *l)
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

func TestLookup(t *testing.T) {
	env := map[string]string{"WEFTD_A": "", "FLANNELD_A": "f", "WEFTD_B": "w", "FLANNELD_B": "f"}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct{ flag, name, value string }{
		{"a", "FLANNELD_A", "f"}, // empty counts as unset
		{"b", "WEFTD_B", "w"},
		{"c", "", ""},
	} {
		name, value, ok := Lookup(getenv, tc.flag, WeftdPrefixes()...)
		if name != tc.name || value != tc.value || ok != (tc.name != "") {
			t.Errorf("Lookup(%q) = %q, %q, %v; want %q, %q", tc.flag, name, value, ok, tc.name, tc.value)
		}
	}
}

// TestCommandLineOnly: a marked flag keeps its default whatever the environment says, and
// its variables count as unmatched.
func TestCommandLineOnly(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	version := fs.Bool("version", false, "")
	CommandLineOnly(fs, "version", "no-such-flag")
	env := map[string]string{"FLANNELD_VERSION": "true"}
	if err := Apply(fs, func(k string) string { return env[k] }, WeftdPrefixes()...); err != nil || *version || fs.Changed("version") {
		t.Fatalf("version %v changed %v (%v), want untouched", *version, fs.Changed("version"), err)
	}
	if got := Unmatched(fs, []string{"FLANNELD_VERSION=true"}, WeftdPrefixes()...); !reflect.DeepEqual(got, []string{"FLANNELD_VERSION"}) {
		t.Errorf("Unmatched = %q", got)
	}
}

func TestUnmatched(t *testing.T) {
	fs, _, _, _ := newFS(t)
	environ := []string{
		"PATH=/bin", "FLANNELD_ETCD_PREFIX=/x", "WEFTD_IFACE=eth0", // read
		"FLANNELD_IFACE_REGX=^e", "WEFTD_NOPE=1", "WEFTD_NOPE=2", // no such flag (listed once)
		"FLANNELD_EMPTY=",                 // empty counts as unset
		"FLANNELDX_IFACE=eth0", "WEFTD=1", // not the prefix and an underscore
		"NODE_NAME=n1",
	}
	want := []string{"FLANNELD_IFACE_REGX", "WEFTD_NOPE"}
	if got := Unmatched(fs, environ, WeftdPrefixes()...); !reflect.DeepEqual(got, want) {
		t.Errorf("Unmatched = %q, want %q", got, want)
	}
}
