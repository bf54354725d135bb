package main

import (
	"strings"
	"testing"
)

// TestUsageErrors: what the user typed wrong exits 2 with an error naming the value, before
// anything is asked of etcd (the endpoint here answers nothing).
func TestUsageErrors(t *testing.T) {
	noEtcd := map[string]string{"WEFTD_ETCD_ENDPOINTS": "http://127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no command", noEtcd, nil, "no command given"},
		{"unknown command", noEtcd, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"group without subcommand", noEtcd, []string{"config"}, `"config" needs a subcommand: get, set`},
		{"unknown subcommand", noEtcd, []string{"config", "delete"}, `unknown subcommand "delete" of "config"`},
		{"unknown flag", noEtcd, []string{"leases", "--frob"}, "unknown flag: --frob"},
		{"flag of another command", noEtcd, []string{"leases", "--force"}, "unknown flag: --force"},
		{"missing file", noEtcd, []string{"config", "set"}, "config set needs FILE (missing FILE)"},
		{"missing public IP", noEtcd, []string{"reserve", "10.244.1.0/24"}, "reserve needs SUBNET PUBLIC-IP (missing PUBLIC-IP)"},
		{"missing both", noEtcd, []string{"reserve"}, "(missing SUBNET PUBLIC-IP)"},
		{"extra argument", noEtcd, []string{"leases", "now"}, `leases: unexpected argument "now"`},
		{"extra argument after two", noEtcd, []string{"unreserve", "10.244.1.0/24", "x"}, `unexpected argument "x"`},
		{"host bits set", noEtcd, []string{"reserve", "10.244.1.1/24", "192.0.2.1"}, `invalid subnet "10.244.1.1/24": not a network address (did you mean 10.244.1.0/24?)`},
		{"not a subnet", noEtcd, []string{"reserve", "banana", "192.0.2.1"}, `invalid subnet "banana"`},
		{"IPv6 subnet with host bits", noEtcd, []string{"unreserve", "fd00::1/64"}, `invalid subnet "fd00::1/64": not a network address (did you mean fd00::/64?)`},
		{"IPv4-mapped subnet", noEtcd, []string{"unreserve", "::ffff:10.244.1.0/120"}, `invalid subnet "::ffff:10.244.1.0/120"`},
		{"bare 0.0.0.0-0 key", noEtcd, []string{"unreserve", "0.0.0.0-0"}, `invalid subnet "0.0.0.0-0"`},
		{"bad dual-stack key", noEtcd, []string{"unreserve", "10.244.1.0-24&fd00::1-64"}, `invalid subnet "10.244.1.0-24&fd00::1-64"`},
		{"IPv4 public IP of an IPv6-only reservation", noEtcd, []string{"reserve", "fd00:0:0:5::/64", "192.0.2.1"}, `invalid public IP "192.0.2.1": not an IPv6 address`},
		{"--ipv6-subnet with an IPv6 SUBNET", noEtcd, []string{"reserve", "fd00:0:0:5::/64", "2001:db8::1", "--ipv6-subnet", "fd00:0:0:6::/64"}, "SUBNET fd00:0:0:5::/64 already names the IPv6 subnet"},
		{"--ipv6-subnet not IPv6", noEtcd, []string{"reserve", "10.244.1.0/24", "192.0.2.1", "--ipv6-subnet", "10.245.1.0/24"}, `invalid --ipv6-subnet "10.245.1.0/24": not an IPv6 CIDR`},
		{"--ipv6-subnet with host bits", noEtcd, []string{"reserve", "10.244.1.0/24", "192.0.2.1", "--ipv6-subnet", "fd00::1/64"}, `invalid --ipv6-subnet "fd00::1/64": not a network address (did you mean fd00::/64?)`},
		{"dual stack without --public-ipv6", noEtcd, []string{"reserve", "10.244.1.0/24", "192.0.2.1", "--ipv6-subnet", "fd00:0:0:1::/64"}, "needs the node's public IPv6 address (--public-ipv6)"},
		{"dual-stack key without --public-ipv6", noEtcd, []string{"reserve", "10.244.1.0-24&fd00:0:0:1::-64", "192.0.2.1"}, "needs the node's public IPv6 address (--public-ipv6)"},
		{"--public-ipv6 not IPv6", noEtcd, []string{"reserve", "10.244.1.0/24", "192.0.2.1", "--ipv6-subnet", "fd00:0:0:1::/64", "--public-ipv6", "192.0.2.2"}, `invalid --public-ipv6 "192.0.2.2": not an IPv6 address`},
		{"--public-ipv6 without an IPv6 subnet", noEtcd, []string{"reserve", "10.244.1.0/24", "192.0.2.1", "--public-ipv6", "2001:db8::1"}, "--public-ipv6 goes with a reservation that has an IPv6 subnet"},
		{"--public-ipv6 differs in an IPv6-only reservation", noEtcd, []string{"reserve", "fd00:0:0:5::/64", "2001:db8::1", "--public-ipv6", "2001:db8::2"}, "--public-ipv6 2001:db8::2 differs from PUBLIC-IP 2001:db8::1"},
		{"bad lease key", noEtcd, []string{"unreserve", "10.244.1.0-33"}, `invalid subnet "10.244.1.0-33"`},
		{"bad public IP", noEtcd, []string{"reserve", "10.244.1.0/24", "192.0.2.300"}, `invalid public IP "192.0.2.300"`},
		{"IPv6 public IP", noEtcd, []string{"reserve", "10.244.1.0/24", "2001:db8::1"}, `invalid public IP "2001:db8::1"`},
		{"bad output", noEtcd, []string{"leases", "-o", "yaml"}, `invalid value "yaml" for --output`},
		{"bad timeout", noEtcd, []string{"leases", "--timeout", "soon"}, `invalid argument "soon" for "--timeout"`},
		{"bad endpoint flag", nil, []string{"leases", "--etcd-endpoints", "etcd"}, `invalid value "etcd" for --etcd-endpoints`},
		{"bad endpoint from env", map[string]string{"FLANNELD_ETCD_ENDPOINTS": "ftp://etcd:2379"}, []string{"leases"}, `invalid value "ftp://etcd:2379" for --etcd-endpoints`},
		{"missing CA file", noEtcd, []string{"leases", "--etcd-cafile", "/nonexistent/ca.pem"}, "--etcd-cafile /nonexistent/ca.pem"},
		{"key without cert", noEtcd, []string{"leases", "--etcd-keyfile", "/dev/null"}, "--etcd-keyfile and --etcd-certfile go together"},
		{"status without node", noEtcd, []string{"status"}, "status needs --node HOST:PORT"},
		{"status node not host:port", noEtcd, []string{"status", "--node", "192.0.2.1"}, `invalid value "192.0.2.1" for --node`},
		{"status node bad port", noEtcd, []string{"status", "--node", "192.0.2.1:http"}, `invalid value "192.0.2.1:http" for --node`},
		{"help of unknown command", noEtcd, []string{"help", "frob"}, `help: unknown command "frob"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runWith(t, tc.env, "", tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("want exit 2 and %q in stderr, got %s", tc.want, r)
			}
			if !strings.Contains(r.stderr, "--help' for usage") {
				t.Errorf("no usage hint: %s", r)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty: %s", r)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "Commands:"},
		{[]string{"-h"}, "reserve SUBNET PUBLIC-IP"},
		{[]string{"help"}, "WEFTD_<FLAG> or else FLANNELD_<FLAG>"},
		{[]string{"help", "config", "set"}, "Usage: weftctl config set FILE"},
		{[]string{"config", "set", "--help"}, "--force"},
		{[]string{"config", "-h"}, "Commands:"},
		{[]string{"--etcd-prefix=/x", "unreserve", "-h"}, "Usage: weftctl unreserve SUBNET"},
		{[]string{"status", "--help"}, "--node string"},
	} {
		r := runWith(t, nil, "", tc.args...)
		if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
			t.Errorf("%q: want exit 0 and %q on stdout, got %s", tc.args, tc.want, r)
		}
	}
	r := runWith(t, nil, "", "version")
	if r.code != 0 || r.stdout != "weftctl dev\n" {
		t.Errorf("version: %s", r)
	}
}

// TestEtcdUnreachable: an etcd that does not answer is an operational error (exit 1) that
// says where etcd was expected, within --timeout.
func TestEtcdUnreachable(t *testing.T) {
	r := runWith(t, map[string]string{"FLANNELD_ETCD_ENDPOINTS": "http://127.0.0.1:1"}, "", "leases", "--timeout=1s")
	if r.code != 1 || !strings.Contains(r.stderr, "no answer from etcd at http://127.0.0.1:1 within --timeout 1s") {
		t.Fatalf("want exit 1 naming the endpoint, got %s", r)
	}
}
