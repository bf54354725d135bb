package iface

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
)

// host6 is a dual-stack node: eth0 with a link-local IPv6 address listed before its global
// one, eth1 with two addresses of each family, a bridge without addresses, an interface with
// IPv4 and only a link-local IPv6 address, and an IPv6-only one.
var host6 = []link{
	mkLink(1, "lo", "127.0.0.1", "::1"),
	mkLink(2, "eth0", "192.0.2.10", "fe80::10", "2001:db8:1::10"),
	mkLink(3, "eth1", "198.51.100.10", "198.51.100.20", "2001:db8:2::10", "2001:db8:2::20"),
	mkLink(4, "br0"),
	mkLink(5, "v4only", "192.0.2.130", "fe80::5"),
	mkLink(6, "v6only", "2001:db8:6::6"),
}

// want is an expected selection; "" is the zero address or no interface.
type want struct {
	iface, addr4, pub4, pub4Iface, addr6, pub6, pub6Iface string
}

func orZero(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

type case6 struct {
	name    string
	k       kernel
	opts    Options
	want    want
	errIs   error
	errText string
}

func runCases6(t *testing.T, cases []case6) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parse(tc.opts)
			if err == nil {
				got, cerr := choose(tc.k, p, tc.opts.Log)
				if err = cerr; err == nil {
					if tc.errIs != nil {
						t.Fatalf("got %s, want error %v", got.Iface.Name, tc.errIs)
					}
					w := tc.want
					if got.Iface.Name != w.iface || got.IfaceAddr != orZero(w.addr4) || got.PublicIP != orZero(w.pub4) ||
						got.PublicIPIface != w.pub4Iface || got.IfaceAddrV6 != orZero(w.addr6) ||
						got.PublicIPv6 != orZero(w.pub6) || got.PublicIPv6Iface != w.pub6Iface {
						t.Fatalf("got %s v4 %v %v %q v6 %v %v %q; want %+v", got.Iface.Name, got.IfaceAddr, got.PublicIP,
							got.PublicIPIface, got.IfaceAddrV6, got.PublicIPv6, got.PublicIPv6Iface, w)
					}
					return
				}
			}
			if tc.errIs == nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !errors.Is(err, tc.errIs) || !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("error %q: want %v containing %q", err, tc.errIs, tc.errText)
			}
		})
	}
}

func kernel6() fakeKernel {
	return fakeKernel{
		ls:  host6,
		rs:  []route{{dst: netip.MustParsePrefix("192.0.2.0/24"), index: 2}, {index: 2}},
		rs6: []route{{dst: netip.MustParsePrefix("2001:db8:1::/64"), index: 2}, {dst: netip.MustParsePrefix("::/0"), index: 2}},
		reach: map[netip.Addr]int{a("2001:db8:2::77"): 3, a("2001:db8:9::1"): 2, a("198.51.100.77"): 3,
			a("2001:db8:5::1"): 5},
		reachSrc: a("198.51.100.20"),
		srcs:     map[netip.Addr]netip.Addr{a("2001:db8:2::77"): a("2001:db8:2::20"), a("2001:db8:9::1"): a("fe80::10")},
	}
}

func TestChooseIPv6Only(t *testing.T) {
	k := kernel6()
	viaV6Only := k
	viaV6Only.rs6 = []route{{index: 6}}
	noDefault6 := k
	noDefault6.rs6 = k.rs6[:1]
	v6 := func(o Options) Options { o.IPv6 = true; return o }
	eth0 := want{iface: "eth0", addr6: "2001:db8:1::10", pub6: "2001:db8:1::10", pub6Iface: "eth0"}
	eth1 := want{iface: "eth1", addr6: "2001:db8:2::10", pub6: "2001:db8:2::10", pub6Iface: "eth1"}
	eth1b := want{iface: "eth1", addr6: "2001:db8:2::20", pub6: "2001:db8:2::20", pub6Iface: "eth1"}
	runCases6(t, []case6{
		{name: "default route, link-local skipped", k: k, opts: v6(Options{}), want: eth0},
		{name: "default route of its own", k: viaV6Only, opts: v6(Options{}),
			want: want{iface: "v6only", addr6: "2001:db8:6::6", pub6: "2001:db8:6::6", pub6Iface: "v6only"}},
		{name: "no IPv6 default route", k: noDefault6, opts: v6(Options{}), errIs: ErrNotFound, errText: "no IPv6 default route: use --iface"},
		{name: "iface name", k: k, opts: v6(Options{Ifaces: []string{"eth1"}}), want: eth1},
		{name: "iface address", k: k, opts: v6(Options{Ifaces: []string{"2001:db8:2::20"}}), want: eth1b},
		{name: "iface with link-local only", k: k, opts: v6(Options{Ifaces: []string{"v4only"}}), errIs: ErrUnusable,
			errText: "--iface v4only: interface v4only has no global IPv6 address (only link-local fe80::5, which cannot be a tunnel endpoint)"},
		{name: "iface list, skipping", k: k, opts: v6(Options{Ifaces: []string{"v4only", "br0", "eth1"}}), want: eth1},
		{name: "iface IPv4 address", k: k, opts: v6(Options{Ifaces: []string{"192.0.2.10"}}), errIs: ErrInvalid,
			errText: "--iface 192.0.2.10: not an IPv6 address (the network runs IPv6 only)"},
		{name: "iface link-local address", k: k, opts: v6(Options{Ifaces: []string{"fe80::10"}}), errIs: ErrInvalid,
			errText: "--iface fe80::10: a link-local IPv6 address cannot be a tunnel endpoint"},
		{name: "iface address not local", k: k, opts: v6(Options{Ifaces: []string{"2001:db8:2::99"}}), errIs: ErrNotFound,
			errText: "--iface 2001:db8:2::99: no interface has this address"},
		{name: "regex address", k: k, opts: v6(Options{Regexes: []string{`^2001:db8:2::20$`}}), want: eth1b},
		{name: "regex first matching address", k: k, opts: v6(Options{Regexes: []string{`^2001:db8:2::`}}), want: eth1},
		{name: "regex addresses beat names", k: k, opts: v6(Options{Regexes: []string{`1::10$|^eth1$`}}), want: eth0},
		{name: "regex name", k: k, opts: v6(Options{Regexes: []string{`^eth1$`}}), want: eth1},
		{name: "regex never matches link-local", k: k, opts: v6(Options{Regexes: []string{`^fe80::`}}), errIs: ErrNotFound,
			errText: `no interface matched --iface-regex "^fe80::" (interfaces: lo [], eth0 [2001:db8:1::10], eth1 [2001:db8:2::10 2001:db8:2::20]`},
		{name: "regex ignores IPv4 addresses", k: k, opts: v6(Options{Regexes: []string{`^192\.0\.2\.10$`}}), errIs: ErrNotFound,
			errText: "no interface matched"},
		{name: "can-reach uses route source", k: k, opts: v6(Options{CanReach: "2001:db8:2::77"}), want: eth1b},
		{name: "can-reach link-local source ignored", k: k, opts: v6(Options{CanReach: "2001:db8:9::1"}), want: eth0},
		{name: "can-reach interface without global address", k: k, opts: v6(Options{CanReach: "2001:db8:5::1"}), errIs: ErrUnusable,
			errText: "--iface-can-reach 2001:db8:5::1: interface v4only has no global IPv6 address"},
		{name: "can-reach IPv4", k: k, opts: v6(Options{CanReach: "198.51.100.77"}), errIs: ErrInvalid,
			errText: `--iface-can-reach "198.51.100.77": not an IPv6 address`},
		{name: "public ipv6 alone selects its interface", k: k, opts: v6(Options{PublicIPv6: "2001:db8:2::20"}), want: eth1b},
		{name: "public ipv6 not local (NAT)", k: k, opts: v6(Options{PublicIPv6: "2001:db8:ff::1"}),
			want: want{iface: "eth0", addr6: "2001:db8:1::10", pub6: "2001:db8:ff::1"}},
		{name: "public ipv6 on another interface", k: k, opts: v6(Options{Ifaces: []string{"eth0"}, PublicIPv6: "2001:db8:2::20"}),
			want: want{iface: "eth0", addr6: "2001:db8:1::10", pub6: "2001:db8:2::20", pub6Iface: "eth1"}},
		{name: "public ip ignored", k: k, opts: v6(Options{PublicIP: "192.0.2.10"}), want: eth0},
		{name: "public ip still validated", k: k, opts: v6(Options{PublicIP: "2001:db8::1"}), errIs: ErrInvalid,
			errText: `--public-ip "2001:db8::1": not an IPv4 address`},
	})
}

func TestChooseDualStack(t *testing.T) {
	k := kernel6()
	split := k
	split.rs6 = []route{{index: 3}}
	noDefault6 := k
	noDefault6.rs6 = nil
	viaV4Only := k
	viaV4Only.rs = []route{{index: 5}}
	viaV4Only.rs6 = nil
	noDefault := k
	noDefault.rs, noDefault.rs6 = nil, nil
	ds := func(o Options) Options { o.IPv4, o.IPv6 = true, true; return o }
	eth0 := want{iface: "eth0", addr4: "192.0.2.10", pub4: "192.0.2.10", pub4Iface: "eth0",
		addr6: "2001:db8:1::10", pub6: "2001:db8:1::10", pub6Iface: "eth0"}
	eth1 := func(a4, a6 string) want {
		return want{iface: "eth1", addr4: a4, pub4: a4, pub4Iface: "eth1", addr6: a6, pub6: a6, pub6Iface: "eth1"}
	}
	runCases6(t, []case6{
		{name: "default route", k: k, opts: ds(Options{}), want: eth0},
		{name: "default routes on two interfaces", k: split, opts: ds(Options{}), errIs: ErrNotFound,
			errText: "default route: the IPv6 default route uses interface eth1, the IPv4 one eth0; dual stack needs one interface: use --iface"},
		{name: "no IPv6 default route", k: noDefault6, opts: ds(Options{}), want: eth0},
		{name: "default interface without global IPv6", k: viaV4Only, opts: ds(Options{}), errIs: ErrUnusable,
			errText: "default route: interface v4only has no global IPv6 address (only link-local fe80::5"},
		{name: "no default route", k: noDefault, opts: ds(Options{}), errIs: ErrNotFound, errText: "no default route: use --iface"},
		{name: "iface without IPv6 skipped", k: k, opts: ds(Options{Ifaces: []string{"v4only", "eth1"}}), want: eth1("198.51.100.10", "2001:db8:2::10")},
		{name: "iface without IPv4", k: k, opts: ds(Options{Ifaces: []string{"v6only"}}), errIs: ErrUnusable,
			errText: "--iface v6only: interface v6only has no IPv4 address"},
		{name: "iface IPv4 address", k: k, opts: ds(Options{Ifaces: []string{"198.51.100.20"}}), want: eth1("198.51.100.20", "2001:db8:2::10")},
		{name: "iface IPv6 address", k: k, opts: ds(Options{Ifaces: []string{"2001:db8:2::20"}}), want: eth1("198.51.100.10", "2001:db8:2::20")},
		{name: "regex matching both families", k: k, opts: ds(Options{Regexes: []string{`^(198\.51\.100\.20|2001:db8:2::20)$`}}),
			want: eth1("198.51.100.20", "2001:db8:2::20")},
		{name: "regex: both families beat an earlier IPv4 match", k: k,
			opts: ds(Options{Regexes: []string{`^(192\.0\.2\.10|198\.51\.100\.10|2001:db8:2::10)$`}}), want: eth1("198.51.100.10", "2001:db8:2::10")},
		{name: "regex matching IPv4 only", k: k, opts: ds(Options{Regexes: []string{`^192\.0\.2\.10$`}}), want: eth0},
		{name: "regex matching IPv6 only", k: k, opts: ds(Options{Regexes: []string{`^2001:db8:2::20$`}}), want: eth1("198.51.100.10", "2001:db8:2::20")},
		{name: "regex interface without IPv6", k: k, opts: ds(Options{Regexes: []string{`^192\.0\.2\.130$`}}), errIs: ErrUnusable,
			errText: "interface v4only has no global IPv6 address"},
		{name: "regex none lists both families", k: k, opts: ds(Options{Regexes: []string{`^wan`}}), errIs: ErrNotFound,
			errText: "eth1 [198.51.100.10 198.51.100.20 2001:db8:2::10 2001:db8:2::20]"},
		{name: "can-reach IPv4", k: k, opts: ds(Options{CanReach: "198.51.100.77"}), want: eth1("198.51.100.20", "2001:db8:2::10")},
		{name: "can-reach IPv6", k: k, opts: ds(Options{CanReach: "2001:db8:2::77"}), want: eth1("198.51.100.10", "2001:db8:2::20")},
		{name: "can-reach not an address", k: k, opts: ds(Options{CanReach: "node1"}), errIs: ErrInvalid,
			errText: `--iface-can-reach "node1": not an IP address`},
		{name: "public ip alone", k: noDefault, opts: ds(Options{PublicIP: "198.51.100.20"}), want: eth1("198.51.100.20", "2001:db8:2::10")},
		{name: "public ipv6 alone", k: noDefault, opts: ds(Options{PublicIPv6: "2001:db8:2::20"}), want: eth1("198.51.100.10", "2001:db8:2::20")},
		{name: "public ip not local, public ipv6 local", k: noDefault, opts: ds(Options{PublicIP: "203.0.113.7", PublicIPv6: "2001:db8:2::20"}),
			want: want{iface: "eth1", addr4: "198.51.100.10", pub4: "203.0.113.7", addr6: "2001:db8:2::20", pub6: "2001:db8:2::20", pub6Iface: "eth1"}},
		{name: "public ipv6 on another interface", k: k, opts: ds(Options{Ifaces: []string{"eth0"}, PublicIPv6: "2001:db8:2::20"}),
			want: want{iface: "eth0", addr4: "192.0.2.10", pub4: "192.0.2.10", pub4Iface: "eth0", addr6: "2001:db8:1::10", pub6: "2001:db8:2::20", pub6Iface: "eth1"}},
	})
}

// TestChooseIPv4OnlyIgnoresIPv6: without IPv6 the IPv6 addresses, routes and --public-ipv6
// change nothing and the IPv6 fields stay zero.
func TestChooseIPv4OnlyIgnoresIPv6(t *testing.T) {
	k := kernel6()
	k.rs6 = []route{{index: 3}}
	eth0 := want{iface: "eth0", addr4: "192.0.2.10", pub4: "192.0.2.10", pub4Iface: "eth0"}
	runCases6(t, []case6{
		{name: "default route", k: k, opts: Options{}, want: eth0},
		{name: "explicit IPv4", k: k, opts: Options{IPv4: true}, want: eth0},
		{name: "interface without IPv6", k: k, opts: Options{Ifaces: []string{"v4only"}},
			want: want{iface: "v4only", addr4: "192.0.2.130", pub4: "192.0.2.130", pub4Iface: "v4only"}},
		{name: "public ipv6 ignored", k: k, opts: Options{PublicIPv6: "2001:db8:2::20"}, want: eth0},
		{name: "public ipv6 still validated", k: k, opts: Options{PublicIPv6: "fe80::1"}, errIs: ErrInvalid,
			errText: `--public-ipv6 "fe80::1": a link-local address, not a routable one`},
		{name: "can-reach IPv6", k: k, opts: Options{CanReach: "2001:db8:2::77"}, errIs: ErrInvalid,
			errText: `--iface-can-reach "2001:db8:2::77": not an IPv4 address`},
	})
}

func TestParsePublicIPv6(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{"2001:db8::1", ""},
		{"fd00::1", ""}, // unique local: routable inside the site
		{"::ffff:192.0.2.1", "an IPv4-mapped address, not an IPv6 one"},
		{"192.0.2.1", "not an IPv6 address"},
		{"node1", "not an IPv6 address"},
		{"fe80::1", "a link-local address, not a routable one"},
		{"fe80::1%eth0", "a link-local address, not a routable one"},
		{"2001:db8::1%eth0", "an IPv6 zone belongs to link-local addresses only"},
		{"ff02::1", "not a global unicast IPv6 address"},
		{"::", "not a global unicast IPv6 address"},
		{"::1", "not a global unicast IPv6 address"},
	} {
		p, err := parse(Options{IPv6: true, PublicIPv6: tc.in})
		if tc.msg == "" {
			if err != nil || p.publicIPv6 != a(tc.in) {
				t.Errorf("%s: got %v %v", tc.in, p.publicIPv6, err)
			}
			continue
		}
		if want := `--public-ipv6 "` + tc.in + `": ` + tc.msg; err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want %q", tc.in, err, want)
		}
	}
}

// TestSkippedCandidateLogsReason: a candidate without an address of a family the network
// runs is logged with the reason before the next one is tried.
func TestSkippedCandidateLogsReason(t *testing.T) {
	var lines []string
	log := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{})
	opts := Options{IPv4: true, IPv6: true, Ifaces: []string{"v4only", "eth1"}, Log: log}
	p, err := parse(opts)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := choose(kernel6(), p, log)
	if err != nil || ext.Iface.Name != "eth1" {
		t.Fatalf("got %v %v, want eth1", ext.Iface, err)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "Interface candidate gives no usable interface") ||
		!strings.Contains(lines[0], "--iface v4only: interface v4only has no global IPv6 address") {
		t.Errorf("log %q: want one line with the reason v4only was skipped", lines)
	}
}
