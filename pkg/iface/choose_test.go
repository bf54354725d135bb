package iface

import (
	"errors"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// fakeKernel is a namespace described in memory.
type fakeKernel struct {
	ls       []link
	rs       []route            // IPv4
	rs6      []route            // IPv6
	reach    map[netip.Addr]int // destination -> output interface
	reachSrc netip.Addr
	srcs     map[netip.Addr]netip.Addr // destination -> source, where not reachSrc
}

func (f fakeKernel) links() ([]link, error) { return f.ls, nil }
func (f fakeKernel) routes(fam family) ([]route, error) {
	if fam == ipv6 {
		return f.rs6, nil
	}
	return f.rs, nil
}
func (f fakeKernel) routeTo(dst netip.Addr) (int, netip.Addr, error) {
	if i, ok := f.reach[dst]; ok {
		if src, ok := f.srcs[dst]; ok {
			return i, src, nil
		}
		return i, f.reachSrc, nil
	}
	return 0, netip.Addr{}, errors.New("network is unreachable")
}

func mkLink(index int, name string, addrs ...string) link {
	l := link{iface: net.Interface{Index: index, Name: name, MTU: 1500}}
	for _, s := range addrs {
		if a := netip.MustParseAddr(s); a.Is4() {
			l.addrs = append(l.addrs, a)
		} else {
			l.addrs6 = append(l.addrs6, a)
		}
	}
	return l
}

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

// host is a typical node: loopback, two NICs (eth1 with a secondary address and a
// link-local one listed first), a bridge without addresses, a link-local-only interface.
var host = []link{
	mkLink(1, "lo", "127.0.0.1"),
	mkLink(2, "eth0", "192.0.2.10"),
	mkLink(3, "eth1", "169.254.9.9", "198.51.100.10", "198.51.100.20"),
	mkLink(4, "br0"),
	mkLink(5, "ll0", "169.254.7.7"),
}

func TestUsable(t *testing.T) {
	got := usable([]netip.Addr{a("169.254.1.1"), a("127.0.0.1"), a("198.51.100.1"), a("224.0.0.1"), a("192.0.2.1"), a("169.254.2.2")})
	want := []netip.Addr{a("198.51.100.1"), a("192.0.2.1"), a("169.254.1.1"), a("169.254.2.2")}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestMatchIface(t *testing.T) {
	for _, tc := range []struct {
		in, name, addr string
		err            error
	}{
		{in: "eth1", name: "eth1"},
		{in: "198.51.100.20", name: "eth1", addr: "198.51.100.20"},
		{in: "127.0.0.1", name: "lo", addr: "127.0.0.1"}, // any address counts, as flanneld
		{in: "::ffff:192.0.2.10", name: "eth0", addr: "192.0.2.10"},
		{in: "eth9", err: ErrNotFound},
		{in: "192.0.2.99", err: ErrNotFound},
	} {
		l, addr, err := matchIface(host, tc.in)
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("%s: err %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--iface "+tc.in+": ") {
				t.Errorf("%s: error %q does not name the value", tc.in, err)
			}
			continue
		}
		if l.iface.Name != tc.name || addr.String() != orInvalid(tc.addr) {
			t.Errorf("%s: got %s %v, want %s %s", tc.in, l.iface.Name, addr, tc.name, tc.addr)
		}
	}
}

func orInvalid(s string) string {
	if s == "" {
		return netip.Addr{}.String()
	}
	return s
}

func TestMatchRegex(t *testing.T) {
	for _, tc := range []struct {
		re, name, addr string
		notFound       bool
	}{
		{re: `^198\.51\.100\.20$`, name: "eth1", addr: "198.51.100.20"},
		{re: `^198\.51\.100\.`, name: "eth1", addr: "198.51.100.10"}, // first matching address
		{re: `^169\.254\.`, name: "eth1", addr: "169.254.9.9"},       // link-local tried after eth1's globals, interface order first
		{re: `^eth1$`, name: "eth1"},                                 // by name: address left to finish
		{re: `eth`, name: "eth0"},                                    // first interface by name
		{re: `0$`, name: "eth0", addr: "192.0.2.10"},                 // addresses beat names: "eth0"/"br0" would match by name too
		{re: `^br`, name: "br0"},
		{re: `^127\.`, notFound: true}, // loopback addresses are not usable
		{re: `^wan`, notFound: true},
	} {
		l, addr, err := matchRegex(host, regexp.MustCompile(tc.re))
		if tc.notFound {
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no interface matched --iface-regex") ||
				!strings.Contains(err.Error(), "eth1 [198.51.100.10 198.51.100.20 169.254.9.9]") {
				t.Errorf("%s: err %v", tc.re, err)
			}
			continue
		}
		if err != nil || l.iface.Name != tc.name || addr.String() != orInvalid(tc.addr) {
			t.Errorf("%s: got %s %v %v, want %s %s", tc.re, l.iface.Name, addr, err, tc.name, tc.addr)
		}
	}
}

func TestPickDefault(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name  string
		rs    []route
		index int
		msg   string
	}{
		{"nil dst", []route{{dst: p("192.0.2.0/24"), index: 2}, {index: 3}}, 3, ""},
		{"zero prefix", []route{{dst: p("0.0.0.0/0"), index: 4}, {index: 3}}, 4, ""},
		{"first wins", []route{{index: 2}, {index: 3}}, 2, ""},
		{"multipath", []route{{nexthops: []int{5, 2}}}, 5, ""},
		{"unreachable skipped", []route{{}, {index: 3}}, 3, ""},
		{"none", []route{{dst: p("192.0.2.0/24"), index: 2}}, 0, "no default route: use --iface"},
		{"no interface", []route{{}}, 0, "no default route with an output interface: use --iface"},
	} {
		got, err := pickDefault(tc.rs)
		if tc.msg != "" {
			if err == nil || err.Error() != tc.msg || !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.msg)
			}
			continue
		}
		if err != nil || got != tc.index {
			t.Errorf("%s: got %d %v, want %d", tc.name, got, err, tc.index)
		}
	}
}

func TestChoose(t *testing.T) {
	k := fakeKernel{
		ls:       host,
		rs:       []route{{dst: netip.MustParsePrefix("192.0.2.0/24"), index: 2}, {index: 2}},
		reach:    map[netip.Addr]int{a("198.51.100.77"): 3, a("192.0.2.1"): 2},
		reachSrc: a("198.51.100.20"),
	}
	noDefault := k
	noDefault.rs = k.rs[:1]
	for _, tc := range []struct {
		name                       string
		k                          kernel
		opts                       Options
		iface, ifaceAddr, publicIP string
		errIs                      error
		errText                    string
	}{
		{name: "default route", k: k, opts: Options{}, iface: "eth0", ifaceAddr: "192.0.2.10", publicIP: "192.0.2.10"},
		{name: "default route, public ip elsewhere", k: k, opts: Options{PublicIP: "198.51.100.99"},
			iface: "eth0", ifaceAddr: "192.0.2.10", publicIP: "198.51.100.99"},
		{name: "public ip alone selects its interface", k: noDefault, opts: Options{PublicIP: "198.51.100.20"},
			iface: "eth1", ifaceAddr: "198.51.100.20", publicIP: "198.51.100.20"},
		{name: "no default route", k: noDefault, opts: Options{}, errIs: ErrNotFound, errText: "no default route: use --iface"},
		{name: "iface by name", k: k, opts: Options{Ifaces: []string{"eth1"}}, iface: "eth1", ifaceAddr: "198.51.100.10", publicIP: "198.51.100.10"},
		{name: "iface by ip", k: k, opts: Options{Ifaces: []string{"198.51.100.20"}}, iface: "eth1", ifaceAddr: "198.51.100.20", publicIP: "198.51.100.20"},
		{name: "iface link-local only", k: k, opts: Options{Ifaces: []string{"ll0"}}, iface: "ll0", ifaceAddr: "169.254.7.7", publicIP: "169.254.7.7"},
		{name: "iface list in order, skipping", k: k, opts: Options{Ifaces: []string{"eth9", "br0", "eth1", "eth0"}},
			iface: "eth1", ifaceAddr: "198.51.100.10", publicIP: "198.51.100.10"},
		{name: "public ip override", k: k, opts: Options{Ifaces: []string{"eth1"}, PublicIP: "192.0.2.200"},
			iface: "eth1", ifaceAddr: "198.51.100.10", publicIP: "192.0.2.200"},
		{name: "single missing iface", k: k, opts: Options{Ifaces: []string{"eth9"}}, errIs: ErrNotFound, errText: "--iface eth9: no such interface"},
		{name: "no address", k: k, opts: Options{Ifaces: []string{"br0"}}, errIs: ErrUnusable, errText: "--iface br0: interface br0 has no IPv4 address"},
		{name: "iface beats regex", k: k, opts: Options{Ifaces: []string{"eth0"}, Regexes: []string{"eth1"}}, iface: "eth0", ifaceAddr: "192.0.2.10", publicIP: "192.0.2.10"},
		{name: "regex after failed iface", k: k, opts: Options{Ifaces: []string{"eth9"}, Regexes: []string{`^wan`, `^198\.51\.100\.20$`}},
			iface: "eth1", ifaceAddr: "198.51.100.20", publicIP: "198.51.100.20"},
		{name: "regex by name without address fails that regex", k: k, opts: Options{Regexes: []string{`^br`, `^ll`}},
			iface: "ll0", ifaceAddr: "169.254.7.7", publicIP: "169.254.7.7"},
		{name: "regex beats can-reach", k: k, opts: Options{Regexes: []string{`^eth0$`}, CanReach: "198.51.100.77"}, iface: "eth0", ifaceAddr: "192.0.2.10", publicIP: "192.0.2.10"},
		{name: "can-reach uses route source", k: k, opts: Options{CanReach: "198.51.100.77"}, iface: "eth1", ifaceAddr: "198.51.100.20", publicIP: "198.51.100.20"},
		{name: "can-reach after failures", k: k, opts: Options{Ifaces: []string{"eth9"}, Regexes: []string{`^wan`}, CanReach: "198.51.100.77"},
			iface: "eth1", ifaceAddr: "198.51.100.20", publicIP: "198.51.100.20"},
		{name: "can-reach unreachable", k: k, opts: Options{CanReach: "198.51.100.5"}, errIs: ErrNotFound,
			errText: "--iface-can-reach 198.51.100.5: no route: network is unreachable"},
		{name: "all fail, no default fallback", k: k, opts: Options{Ifaces: []string{"eth9"}, Regexes: []string{`^wan`}},
			errIs: ErrNotFound, errText: "--iface eth9: no such interface; no interface matched --iface-regex \"^wan\""},
		{name: "invalid regexp", k: k, opts: Options{Ifaces: []string{"eth0"}, Regexes: []string{"["}}, errIs: ErrInvalid,
			errText: "--iface-regex \"[\": invalid regexp: error parsing regexp"},
		{name: "invalid public ip", k: k, opts: Options{PublicIP: "192.0.2"}, errIs: ErrInvalid, errText: "--public-ip \"192.0.2\": not an IPv4 address"},
		{name: "ipv6 public ip", k: k, opts: Options{PublicIP: "2001:db8::1"}, errIs: ErrInvalid, errText: "--public-ip \"2001:db8::1\": not an IPv4 address"},
		{name: "multicast public ip", k: k, opts: Options{PublicIP: "224.0.0.1"}, errIs: ErrInvalid, errText: "not a unicast IPv4 address"},
		{name: "invalid can-reach", k: k, opts: Options{CanReach: "node1"}, errIs: ErrInvalid, errText: "--iface-can-reach \"node1\": not an IPv4 address"},
		{name: "ipv6 iface", k: k, opts: Options{Ifaces: []string{"2001:db8::1"}}, errIs: ErrInvalid, errText: "--iface 2001:db8::1: not an IPv4 address"},
		{name: "empty iface", k: k, opts: Options{Ifaces: []string{""}}, errIs: ErrInvalid, errText: "--iface \"\": empty value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parse(tc.opts)
			if err == nil {
				got, cerr := choose(tc.k, p, tc.opts.Log)
				err = cerr
				if err == nil {
					if tc.errIs != nil {
						t.Fatalf("got %s %v, want error %v", got.Iface.Name, got.IfaceAddr, tc.errIs)
					}
					if got.Iface.Name != tc.iface || got.IfaceAddr != a(tc.ifaceAddr) || got.PublicIP != a(tc.publicIP) {
						t.Fatalf("got %s %v %v, want %s %s %s", got.Iface.Name, got.IfaceAddr, got.PublicIP, tc.iface, tc.ifaceAddr, tc.publicIP)
					}
					return
				}
			}
			if tc.errIs == nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !errors.Is(err, tc.errIs) {
				t.Errorf("error %v is not %v", err, tc.errIs)
			}
			if !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("error %q does not contain %q", err, tc.errText)
			}
		})
	}
}

func TestNoInterfaceErrorUnwraps(t *testing.T) {
	p, err := parse(Options{Ifaces: []string{"eth9", "br0"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = choose(fakeKernel{ls: host}, p, Options{}.Log)
	var nie *NoInterfaceError
	if !errors.As(err, &nie) || len(nie.Tried) != 2 {
		t.Fatalf("got %v, want a NoInterfaceError with two causes", err)
	}
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrUnusable) {
		t.Errorf("%v should be both ErrNotFound and ErrUnusable", err)
	}
}

// TestChooseTunnelSource: tunnel traffic leaves from the public IP when an interface of
// the node holds it (whichever), else from the interface address.
func TestChooseTunnelSource(t *testing.T) {
	k := fakeKernel{ls: host, rs: []route{{index: 2}}}
	for _, tc := range []struct {
		name        string
		opts        Options
		publicIface string
		source      string
	}{
		{name: "no public ip", opts: Options{}, publicIface: "eth0", source: "192.0.2.10"},
		{name: "public ip is the interface address", opts: Options{Ifaces: []string{"eth0"}, PublicIP: "192.0.2.10"}, publicIface: "eth0", source: "192.0.2.10"},
		{name: "secondary address of the interface", opts: Options{Ifaces: []string{"eth1"}, PublicIP: "198.51.100.20"}, publicIface: "eth1", source: "198.51.100.20"},
		{name: "address of another interface", opts: Options{Ifaces: []string{"eth0"}, PublicIP: "198.51.100.20"}, publicIface: "eth1", source: "198.51.100.20"},
		{name: "not local (NAT)", opts: Options{Ifaces: []string{"eth0"}, PublicIP: "203.0.113.7"}, publicIface: "", source: "192.0.2.10"},
		{name: "not local, default route", opts: Options{PublicIP: "203.0.113.7"}, publicIface: "", source: "192.0.2.10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parse(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := choose(k, p, tc.opts.Log)
			if err != nil {
				t.Fatal(err)
			}
			if got.PublicIPIface != tc.publicIface || got.TunnelSource() != a(tc.source) {
				t.Errorf("PublicIPIface %q, TunnelSource %v; want %q, %s", got.PublicIPIface, got.TunnelSource(), tc.publicIface, tc.source)
			}
		})
	}
}
