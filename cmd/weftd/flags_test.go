package main

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet/etcdv3"
)

// environ turns a map into os.Environ's form.
func environ(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// compatRow is one input to weftd's command line or environment: what flanneld's code does
// with it (a fact, read from its main.go, Go's flag package and coreos/pkg/flagutil), what
// weftd does, and whether the two agree. A disagreement names the row of
// migrating-from-flannel.md's "What differs" table that documents it.
type compatRow struct {
	name     string
	args     []string
	env      map[string]string
	flanneld string              // what flanneld does
	weft     string              // what weftd does
	ok       func(*options) bool // weftd runs, and this holds of its options
	wantErr  string              // or weftd refuses (exit 2) with an error containing this
	agree    bool
	differs  string // for !agree: the first cell of the "What differs" row
}

// checkCompat runs the rows and checks that each disagreement is documented.
func checkCompat(t *testing.T, rows []compatRow) {
	t.Helper()
	documented := whatDiffers(t)
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			verdict := "agree"
			if !r.agree {
				verdict = "DIFFER (documented: " + r.differs + ")"
			}
			t.Logf("args %q env %q\n  flanneld: %s\n  weftd:    %s\n  %s", r.args, environ(r.env), r.flanneld, r.weft, verdict)
			o, _, err := parseFlags(r.args, environ(r.env))
			switch {
			case r.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), r.wantErr) {
					t.Errorf("error %v, want one containing %q", err, r.wantErr)
				}
			case err != nil:
				t.Errorf("refused: %v", err)
			case !r.ok(o):
				t.Errorf("options %+v are not what the row says", *o)
			}
			if r.agree != (r.differs == "") {
				t.Errorf("agree %v but differs %q: a disagreement names its documentation row, an agreement none", r.agree, r.differs)
			}
			if r.differs != "" && !documented[r.differs] {
				t.Errorf("no row %q in migrating-from-flannel.md's \"What differs\" (rows: %q)", r.differs, slices.Sorted(maps.Keys(documented)))
			}
		})
	}
}

// whatDiffers returns the first cells of the "What differs" table of
// Documentation/migrating-from-flannel.md.
func whatDiffers(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../Documentation/migrating-from-flannel.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## What differs\n")
	if !ok {
		t.Fatal(`migrating-from-flannel.md has no "## What differs" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if first := strings.TrimSpace(cells[min(1, len(cells)-1)]); len(cells) > 2 && strings.HasPrefix(line, "|") && first != "" && first != "---" {
			rows[first] = true
		}
	}
	return rows
}

// TestFlagCompat: the command line, compared with flanneld's.
func TestFlagCompat(t *testing.T) {
	checkCompat(t, []compatRow{
		{
			name: "single dash", args: []string{"-etcd-endpoints=http://e:2379", "-ip-masq", "-etcd-prefix", "/x"},
			flanneld: "Go's flag takes -name as --name: endpoints, prefix and masquerade set",
			weft:     "the same", agree: true,
			ok: func(o *options) bool {
				return o.etcd.Endpoints == "http://e:2379" && o.ipMasq && o.etcd.Prefix == "/x"
			},
		},
		{
			name: "double dash, value apart", args: []string{"--etcd-endpoints", "http://e:2379", "--subnet-file=/run/x.env"},
			flanneld: "both set", weft: "both set", agree: true,
			ok: func(o *options) bool { return o.etcd.Endpoints == "http://e:2379" && o.subnetFile == "/run/x.env" },
		},
		{
			name: "booleans with values", args: []string{"--ip-masq=false", "-iptables-forward-rules=0", "--ip-blackhole-route=T"},
			flanneld: "strconv.ParseBool: false, false, true", weft: "the same", agree: true,
			ok: func(o *options) bool { return !o.ipMasq && !o.forwardRules && o.blackholeRoute },
		},
		{
			name: "iface-regex with a comma", args: []string{"--iface-regex=^e[a-z]{1,3}[0-9]$"},
			flanneld: "one regex (its flagSlice appends each value whole)", weft: "one regex", agree: true,
			ok: func(o *options) bool { return slices.Equal(o.ifaceRegexes, []string{"^e[a-z]{1,3}[0-9]$"}) },
		},
		{
			name: "iface repeated", args: []string{"--iface", "eth1", "-iface", "192.0.2.1", "--iface-regex", "^en", "-iface-regex=^eth"},
			flanneld: "two interfaces and two regexes, in order", weft: "the same", agree: true,
			ok: func(o *options) bool {
				return slices.Equal(o.ifaces, []string{"eth1", "192.0.2.1"}) && slices.Equal(o.ifaceRegexes, []string{"^en", "^eth"})
			},
		},
		{
			name: "iface with a comma", args: []string{"--iface", "eth0,eth1"},
			flanneld: `one interface named "eth0,eth1" (not found at start)`, weft: "one value, not split", agree: true,
			ok: func(o *options) bool { return slices.Equal(o.ifaces, []string{"eth0,eth1"}) },
		},
		{
			name: "a value that starts with a dash", args: []string{"-iface-regex", "-x", "--etcd-password", "--secret"},
			flanneld: "Go's flag takes the next argument as the value, whatever it is", weft: "the same", agree: true,
			ok: func(o *options) bool {
				return slices.Equal(o.ifaceRegexes, []string{"-x"}) && o.etcd.Password == "--secret"
			},
		},
		{
			name: "endpoint without a scheme", args: []string{"--etcd-endpoints=127.0.0.1:2379"},
			flanneld: "handed to the etcd client, which dials host:port in plain text (TLS with TLS files)",
			weft:     "handed to the etcd client unchanged", agree: true,
			ok: func(o *options) bool { return slices.Equal(o.etcdConfig.Endpoints, []string{"127.0.0.1:2379"}) },
		},
		{
			name: "default endpoints", flanneld: "http://127.0.0.1:4001,http://127.0.0.1:2379", weft: "the same", agree: true,
			ok: func(o *options) bool {
				return slices.Equal(o.etcdConfig.Endpoints, []string{"http://127.0.0.1:4001", "http://127.0.0.1:2379"})
			},
		},
		{
			name: "endpoint the client cannot dial", args: []string{"--etcd-endpoints=ftp://etcd:2379"},
			flanneld: "handed to the etcd client unchecked; it never connects",
			weft:     "refused at start, naming the flag and the value", wantErr: `invalid value "ftp://etcd:2379" for --etcd-endpoints`,
			differs: "an etcd endpoint the etcd client cannot dial",
		},
		{
			name: "new flags", args: []string{"--ip-blackhole-route", "--ip-masq-fully-random-disable", "--log_backtrace_at=main.go:1", "-v=2", "-vmodule=etcd=4"},
			flanneld: "accepted (v, vmodule and log_backtrace_at are klog's, copied into its flag set)", weft: "accepted", agree: true,
			ok: func(o *options) bool { return o.blackholeRoute && o.ipMasqNoRandomFully },
		},
		{
			name: "help", args: []string{"-h"}, flanneld: "prints the usage, exits 0", weft: "prints the usage, exits 0 (pflag.ErrHelp)", agree: true,
			wantErr: "help requested",
		},
		{
			name: "version", args: []string{"-version"}, flanneld: "prints the version, exits 0", weft: "the same", agree: true,
			ok: func(o *options) bool { return o.version },
		},
		{
			name: "Kubernetes subnet manager", args: []string{"--kube-subnet-mgr"},
			flanneld: "leases from the Kubernetes API instead of etcd", weft: "the same", agree: true,
			ok: func(o *options) bool { return o.kube.enabled },
		},
		{
			name: "kube flag with a value", args: []string{"-kube-api-url", "https://k:6443"},
			flanneld: "used by the Kubernetes subnet manager (ignored without it)", weft: "the same", agree: true,
			ok: func(o *options) bool { return o.kube.apiURL == "https://k:6443" && o.daemonConfig("t").Kube == nil },
		},
		{
			name: "kube flag at flanneld's default", args: []string{"--kube-subnet-mgr=false", "--net-config-path=/etc/kube-flannel/net-conf.json"},
			flanneld: "etcd subnet manager, as without the flags", weft: "the same", agree: true,
			ok: func(o *options) bool { return true },
		},
		{
			name: "public IPv6", args: []string{"--public-ipv6=2001:db8::1"},
			flanneld: "the node's IPv6 address for peers", weft: "the same", agree: true,
			ok: func(o *options) bool { return o.daemonConfig("t").Iface.PublicIPv6 == "2001:db8::1" },
		},
		{
			name: "unknown flag", args: []string{"-no-such-flag"},
			flanneld: "flag: error, its usage function exits 0", weft: "exits 2 naming the flag", wantErr: "unknown flag: --no-such-flag",
			differs: "unknown flag, a flag without its value, an unparsable value",
		},
		{
			name: "flag without its value", args: []string{"--iface"},
			flanneld: "flag needs an argument: usage, exit 0", weft: "exits 2 naming the flag", wantErr: "flag needs an argument: --iface",
			differs: "unknown flag, a flag without its value, an unparsable value",
		},
		{
			name: "unparsable value", args: []string{"--iptables-resync=often"},
			flanneld: "invalid value: usage, exit 0", weft: "exits 2 naming the flag and the value", wantErr: `invalid argument "often" for "--iptables-resync"`,
			differs: "unknown flag, a flag without its value, an unparsable value",
		},
		{
			name: "value out of range", args: []string{"--subnet-lease-renew-margin=1440"},
			flanneld: "logs that the margin is out of range, exits 1", weft: "exits 2 naming the flag and the value",
			wantErr: "invalid value 1440 for --subnet-lease-renew-margin", differs: "a flag value out of range",
		},
		{
			name: "a boolean given a separate value", args: []string{"-ip-masq", "false", "--iface", "eth1"},
			flanneld: "Go's flag: booleans take no separate value; parsing stops at \"false\": masquerade on, --iface ignored",
			weft:     "exits 2 naming the argument", wantErr: `unexpected argument "false"`,
			differs: "an argument that is not a flag (`-ip-masq false`, anything after `--`)",
		},
		{
			name: "after --", args: []string{"--", "--ip-masq"},
			flanneld: "the rest are arguments, ignored", weft: "exits 2 naming the argument", wantErr: `unexpected argument "--ip-masq"`,
			differs: "an argument that is not a flag (`-ip-masq false`, anything after `--`)",
		},
	})
}

// TestEnvCompat: the environment, compared with flanneld's.
func TestEnvCompat(t *testing.T) {
	checkCompat(t, []compatRow{
		{
			name: "FLANNELD_<FLAG>", env: map[string]string{"FLANNELD_ETCD_PREFIX": "/f", "FLANNELD_IP_MASQ": "true", "FLANNELD_IFACE": "eth1"},
			flanneld: "flagutil.SetFlagsFromEnv sets each flag not on the command line", weft: "the same", agree: true,
			ok: func(o *options) bool {
				return o.etcd.Prefix == "/f" && o.ipMasq && slices.Equal(o.ifaces, []string{"eth1"})
			},
		},
		{
			name: "the command line wins", args: []string{"--etcd-prefix=/cli"}, env: map[string]string{"FLANNELD_ETCD_PREFIX": "/f"},
			flanneld: "/cli", weft: "/cli", agree: true,
			ok: func(o *options) bool { return o.etcd.Prefix == "/cli" },
		},
		{
			name: "empty is unset", env: map[string]string{"FLANNELD_ETCD_PREFIX": ""},
			flanneld: "the default", weft: "the default", agree: true,
			ok: func(o *options) bool { return o.etcd.Prefix == "/coreos.com/network" },
		},
		{
			name: "WEFTD_ before FLANNELD_", env: map[string]string{"WEFTD_ETCD_PREFIX": "/w", "FLANNELD_ETCD_PREFIX": "/f"},
			flanneld: "reads FLANNELD_ only: /f", weft: "WEFTD_ first: /w",
			ok: func(o *options) bool { return o.etcd.Prefix == "/w" }, differs: "`WEFTD_<FLAG>` variables",
		},
		{
			name: "a regex with a comma", env: map[string]string{"FLANNELD_IFACE_REGEX": "^e[a-z]{1,3}[0-9]$"},
			flanneld: "one regex", weft: "one regex", agree: true,
			ok: func(o *options) bool { return slices.Equal(o.ifaceRegexes, []string{"^e[a-z]{1,3}[0-9]$"}) },
		},
		{
			name: "a comma in FLANNELD_IFACE", env: map[string]string{"FLANNELD_IFACE": "eth0,eth1"},
			flanneld: `one interface named "eth0,eth1"`, weft: "one value, not split", agree: true,
			ok: func(o *options) bool { return slices.Equal(o.ifaces, []string{"eth0,eth1"}) },
		},
		{
			name: "endpoints without a scheme", env: map[string]string{"FLANNELD_ETCD_ENDPOINTS": "10.0.0.1:2379,10.0.0.2:2379"},
			flanneld: "handed to the etcd client", weft: "the same", agree: true,
			ok: func(o *options) bool {
				return slices.Equal(o.etcdConfig.Endpoints, []string{"10.0.0.1:2379", "10.0.0.2:2379"})
			},
		},
		{
			name: "new and klog flags", env: map[string]string{
				"FLANNELD_IP_BLACKHOLE_ROUTE": "true", "FLANNELD_IP_MASQ_FULLY_RANDOM_DISABLE": "true",
				"FLANNELD_V": "2", "FLANNELD_LOG_BACKTRACE_AT": "main.go:1",
			},
			flanneld: "set (klog's flags are in its flag set)", weft: "set", agree: true,
			ok: func(o *options) bool { return o.blackholeRoute && o.ipMasqNoRandomFully },
		},
		{
			name: "FLANNELD_VERSION", env: map[string]string{"FLANNELD_VERSION": "true"},
			flanneld: "no effect: --version is read before the environment", weft: "no effect (and a warning naming it)", agree: true,
			ok: func(o *options) bool { return !o.version },
		},
		{
			name: "a variable that names no flag", env: map[string]string{"FLANNELD_IFACE_REGX": "^e", "WEFTD_NOPE": "1"},
			flanneld: "ignored silently", weft: "ignored, with a warning naming it at start", agree: true,
			ok: func(o *options) bool { return len(o.ifaceRegexes) == 0 },
		},
		{
			name: "Kubernetes subnet manager", env: map[string]string{"FLANNELD_KUBE_SUBNET_MGR": "true"},
			flanneld: "leases from the Kubernetes API instead of etcd", weft: "the same", agree: true,
			ok: func(o *options) bool { return o.kube.enabled },
		},
		{
			name: "Kubernetes subnet manager off", env: map[string]string{"FLANNELD_KUBE_SUBNET_MGR": "false"},
			flanneld: "etcd subnet manager", weft: "the same", agree: true,
			ok: func(o *options) bool { return true },
		},
		{
			name: "public IPv6", env: map[string]string{"FLANNELD_PUBLIC_IPV6": "2001:db8::1"},
			flanneld: "the node's IPv6 address for peers", weft: "the same", agree: true,
			ok: func(o *options) bool { return o.daemonConfig("t").Iface.PublicIPv6 == "2001:db8::1" },
		},
		{
			name: "a bad value", env: map[string]string{"FLANNELD_IP_MASQ": "yes"},
			flanneld: "SetFlagsFromEnv's error is logged; flanneld runs with the flag's default",
			weft:     "exits 2 naming the variable, the flag and the value", wantErr: `invalid value "yes" for --ip-masq (from $FLANNELD_IP_MASQ)`,
			differs: "a bad value in `FLANNELD_<FLAG>`",
		},
		{
			name: "a bad value and --version", args: []string{"--version"}, env: map[string]string{"FLANNELD_IP_MASQ": "yes"},
			flanneld: "prints the version (read before the environment)", weft: "exits 2: --version acts after every check",
			wantErr: `invalid value "yes" for --ip-masq (from $FLANNELD_IP_MASQ)`, differs: "a bad value in `FLANNELD_<FLAG>`",
		},
	})
}

// TestEnvWarnings: each variable with weftd's prefixes that it does not read is named once.
func TestEnvWarnings(t *testing.T) {
	_, warnings, err := parseFlags(nil, environ(map[string]string{
		"FLANNELD_IFACE_REGX": "^e", "WEFTD_NOPE": "1", "FLANNELD_VERSION": "true",
		"FLANNELD_IFACE": "eth1", "WEFTD_V": "1", "NODE_NAME": "n1", "FLANNELD_EMPTY": "",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"$FLANNELD_IFACE_REGX names no flag weftd reads from the environment; ignored",
		"$FLANNELD_VERSION names no flag weftd reads from the environment; ignored",
		"$WEFTD_NOPE names no flag weftd reads from the environment; ignored",
	}
	if !reflect.DeepEqual(warnings, want) {
		t.Errorf("warnings %q, want %q", warnings, want)
	}
}

// TestGoStyleArgs: only flag tokens gain a dash; values and what follows "--" never do.
func TestGoStyleArgs(t *testing.T) {
	fs := (&options{}).flagSet()
	for _, tc := range []struct{ in, want []string }{
		{[]string{"-ip-masq", "-iface", "-eth", "-v=2"}, []string{"--ip-masq", "--iface", "-eth", "--v=2"}},
		{[]string{"-v", "3", "-vmodule", "x=2"}, []string{"--v", "3", "--vmodule", "x=2"}},
		{[]string{"--iface-regex", "-x", "-iface-regex=-y"}, []string{"--iface-regex", "-x", "--iface-regex=-y"}},
		{[]string{"-ip-masq", "-false"}, []string{"--ip-masq", "--false"}}, // a boolean takes no separate value
		{[]string{"-no-such", "-x"}, []string{"--no-such", "--x"}},
		{[]string{"stray", "-ip-masq"}, []string{"stray", "--ip-masq"}},
		{[]string{"-", "--", "-ip-masq"}, []string{"-", "--", "-ip-masq"}},
		{[]string{"-h"}, []string{"--help"}},
		{[]string{"--h=true"}, []string{"--help=true"}},
		{[]string{"---x"}, []string{"---x"}},
		{[]string{"-iface"}, []string{"--iface"}},
	} {
		if got := goStyleArgs(fs, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("goStyleArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestFlagErrorsExit2: refusals end weftd with exit status 2 before it starts anything.
func TestFlagErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"--public-ipv6"}, {"stray"}} {
		// run starts the daemon when the flags are accepted: never here, in the root namespace.
		if _, _, err := parseFlags(args, os.Environ()); err == nil {
			t.Fatalf("weftd %q accepted", args)
		}
		if code := run(args); code != 2 {
			t.Errorf("weftd %q exits %d, want 2", args, code)
		}
	}
	if code := run([]string{"-help"}); code != 0 {
		t.Errorf("weftd -help exits %d, want 0", code)
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	o, _, err := parseFlags([]string{"--iface", "eth1", "--ip-masq"}, environ(map[string]string{
		"WEFTD_IFACE":                        "eth9", // the command line wins
		"FLANNELD_ETCD_PREFIX":               "/flannel/net",
		"WEFTD_SUBNET_LEASE_RENEW_MARGIN":    "30",
		"FLANNELD_SUBNET_LEASE_RENEW_MARGIN": "45", // WEFTD_ wins over FLANNELD_
		"FLANNELD_IFACE_REGEX":               "^en",
		"FLANNELD_IP_BLACKHOLE_ROUTE":        "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.ifaces) != 1 || o.ifaces[0] != "eth1" {
		t.Errorf("iface = %v, want the command line's [eth1]", o.ifaces)
	}
	if o.etcd.Prefix != "/flannel/net" || o.renewMargin != 30 || !o.ipMasq || len(o.ifaceRegexes) != 1 {
		t.Errorf("got prefix %q margin %d masq %v regexes %v", o.etcd.Prefix, o.renewMargin, o.ipMasq, o.ifaceRegexes)
	}
	c := o.daemonConfig("test")
	if c.RenewMargin != 30*time.Minute || c.Etcd.Endpoints[0] != "http://127.0.0.1:4001" || c.HealthzAddr != "" ||
		!c.ForwardRules || !c.RestrictTunnelPort || !c.BlackholeRoute || c.IPMasqNoRandomFully {
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
	o, _, err := parseFlags([]string{"--etcd-username", "cli"}, environ(map[string]string{
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
	if _, _, err := parseFlags(nil, environ(map[string]string{"WEFTD_ETCD_KEYFILE": ca})); err == nil || !strings.Contains(err.Error(), "--etcd-keyfile and --etcd-certfile go together") {
		t.Errorf("keyfile without certfile from the environment: %v", err)
	}
}

func TestFlagErrorsNameFlagAndValue(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--subnet-lease-renew-margin", "1440"}, nil, "invalid value 1440 for --subnet-lease-renew-margin"},
		{[]string{"--healthz-port", "70000"}, nil, "invalid value 70000 for --healthz-port"},
		{[]string{"--healthz-port", "1", "--healthz-ip", "nope"}, nil, `invalid value "nope" for --healthz-ip`},
		{[]string{"--etcd-endpoints", "etcd"}, nil, `invalid value "etcd" for --etcd-endpoints`},
		{nil, map[string]string{"WEFTD_ETCD_ENDPOINTS": "http://a:2379,ftp://b:2379"}, `invalid value "http://a:2379,ftp://b:2379" for --etcd-endpoints: "ftp://b:2379"`},
		{[]string{"--etcd-cafile", "/nonexistent/ca.pem"}, nil, "--etcd-cafile /nonexistent/ca.pem"},
		{nil, map[string]string{"FLANNELD_IP_MASQ": "yes"}, `invalid value "yes" for --ip-masq (from $FLANNELD_IP_MASQ)`},
		{[]string{"stray"}, nil, `unexpected argument "stray"`},
	} {
		_, _, err := parseFlags(tc.args, environ(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// TestKubeFlags: flanneld's Kubernetes-mode flags, defaults and environment.
func TestKubeFlags(t *testing.T) {
	o, _, err := parseFlags(nil, environ(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.daemonConfig("test").Kube != nil {
		t.Error("Kubernetes mode without --kube-subnet-mgr")
	}
	o, _, err = parseFlags([]string{"--kube-subnet-mgr", "--kubeconfig-file", "/k", "--set-node-network-unavailable=false"},
		environ(map[string]string{"FLANNELD_KUBE_ANNOTATION_PREFIX": "example.com/weft", "NODE_NAME": "n1"}))
	if err != nil {
		t.Fatal(err)
	}
	k := o.daemonConfig("test").Kube
	if k == nil || k.Kubeconfig != "/k" || k.APIURL != "" || k.AnnotationPrefix != "example.com/weft" ||
		k.NetConfPath != "/etc/kube-flannel/net-conf.json" || k.SetNodeNetworkUnavailable || k.Getenv("NODE_NAME") != "n1" {
		t.Errorf("kube config %+v", k)
	}
	o, _, _ = parseFlags([]string{"--kube-subnet-mgr"}, environ(nil))
	if k := o.daemonConfig("test").Kube; k.AnnotationPrefix != "flannel.alpha.coreos.com" || !k.SetNodeNetworkUnavailable {
		t.Errorf("defaults %+v", k)
	}
}
