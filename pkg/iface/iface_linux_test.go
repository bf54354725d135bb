package iface

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
	"golang.org/x/sys/unix"
)

// TestSelectInNamespace runs every selection mode against a real kernel, inside a throwaway
// namespace: veth0 192.0.2.10/24 and 2001:db8:1::10/64 with both default routes, veth1
// 198.51.100.10/24 plus the secondary 198.51.100.20/24 and 2001:db8:2::10/64 (listed first)
// plus 2001:db8:2::20/64, veth2 192.0.2.130/25 with a link-local IPv6 address only, and br0
// without an address.
func TestSelectInNamespace(t *testing.T) {
	ns := nstest.Temp(t, "iface")
	for _, cmd := range [][]string{
		{"ip", "link", "add", "veth0", "mtu", "1400", "type", "veth", "peer", "name", "veth0p"},
		{"ip", "link", "add", "veth1", "type", "veth", "peer", "name", "veth1p"},
		{"ip", "link", "add", "br0", "type", "bridge"},
		{"ip", "addr", "add", "192.0.2.10/24", "dev", "veth0"},
		{"ip", "addr", "add", "198.51.100.10/24", "dev", "veth1"},
		{"ip", "addr", "add", "198.51.100.20/24", "dev", "veth1"},
		{"ip", "link", "set", "veth0", "up"},
		{"ip", "link", "set", "veth0p", "up"},
		{"ip", "link", "set", "veth1", "up"},
		{"ip", "link", "set", "veth1p", "up"},
		{"ip", "link", "set", "br0", "up"},
		{"ip", "route", "add", "default", "via", "192.0.2.1", "dev", "veth0"},
		{"ip", "link", "add", "veth2", "type", "veth", "peer", "name", "veth2p"},
		{"ip", "addr", "add", "192.0.2.130/25", "dev", "veth2"},
		{"ip", "addr", "add", "fe80::2:1/64", "dev", "veth2", "nodad"},
		{"ip", "link", "set", "veth2", "up"},
		{"ip", "link", "set", "veth2p", "up"},
		{"ip", "addr", "add", "2001:db8:1::10/64", "dev", "veth0", "nodad"},
		// The kernel lists IPv6 addresses newest first: ::10 is veth1's first.
		{"ip", "addr", "add", "2001:db8:2::20/64", "dev", "veth1", "nodad"},
		{"ip", "addr", "add", "2001:db8:2::10/64", "dev", "veth1", "nodad"},
		{"ip", "-6", "route", "add", "default", "via", "2001:db8:1::1", "dev", "veth0"},
	} {
		if _, err := nstest.Run(ns, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	sel := func(t *testing.T, opts Options) (backend.ExternalInterface, error) {
		t.Helper()
		var ext backend.ExternalInterface
		var serr error
		if err := nsutil.Do(ns, func() error { ext, serr = Select(opts); return nil }); err != nil {
			t.Fatal(err)
		}
		return ext, serr
	}

	for _, tc := range []struct {
		name                       string
		opts                       Options
		iface, ifaceAddr, publicIP string
		mtu                        int
		errText                    string
	}{
		{name: "default route", iface: "veth0", ifaceAddr: "192.0.2.10", publicIP: "192.0.2.10", mtu: 1400},
		{name: "public ip alone", opts: Options{PublicIP: "198.51.100.20"}, iface: "veth1", ifaceAddr: "198.51.100.20", publicIP: "198.51.100.20"},
		{name: "public ip not local", opts: Options{PublicIP: "198.51.100.99"}, iface: "veth0", ifaceAddr: "192.0.2.10", publicIP: "198.51.100.99"},
		{name: "iface name", opts: Options{Ifaces: []string{"veth1"}}, iface: "veth1", ifaceAddr: "198.51.100.10", publicIP: "198.51.100.10"},
		{name: "iface ip", opts: Options{Ifaces: []string{"198.51.100.20"}}, iface: "veth1", ifaceAddr: "198.51.100.20", publicIP: "198.51.100.20"},
		{name: "iface list", opts: Options{Ifaces: []string{"eth9", "br0", "veth1"}, PublicIP: "192.0.2.99"}, iface: "veth1", ifaceAddr: "198.51.100.10", publicIP: "192.0.2.99"},
		{name: "iface missing", opts: Options{Ifaces: []string{"eth9"}}, errText: "--iface eth9: no such interface"},
		{name: "iface without address", opts: Options{Ifaces: []string{"br0"}}, errText: "--iface br0: interface br0 has no IPv4 address"},
		{name: "regex address", opts: Options{Regexes: []string{`^198\.51\.100\.20$`}}, iface: "veth1", ifaceAddr: "198.51.100.20", publicIP: "198.51.100.20"},
		{name: "regex name", opts: Options{Regexes: []string{`^veth1$`}}, iface: "veth1", ifaceAddr: "198.51.100.10", publicIP: "198.51.100.10"},
		{name: "regex none", opts: Options{Regexes: []string{`^wan`}}, errText: `no interface matched --iface-regex "^wan"`},
		{name: "can-reach connected", opts: Options{CanReach: "198.51.100.77"}, iface: "veth1", ifaceAddr: "198.51.100.10", publicIP: "198.51.100.10"},
		{name: "can-reach via default", opts: Options{CanReach: "10.244.1.1"}, iface: "veth0", ifaceAddr: "192.0.2.10", publicIP: "192.0.2.10", mtu: 1400},
		{name: "iface beats can-reach", opts: Options{Ifaces: []string{"veth0"}, CanReach: "198.51.100.77"}, iface: "veth0", ifaceAddr: "192.0.2.10", publicIP: "192.0.2.10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ext, err := sel(t, tc.opts)
			if tc.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("got %v, want an error containing %q", err, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ext.Iface.Name != tc.iface || ext.IfaceAddr != netip.MustParseAddr(tc.ifaceAddr) || ext.PublicIP != netip.MustParseAddr(tc.publicIP) {
				t.Fatalf("got %s %v %v, want %s %s %s", ext.Iface.Name, ext.IfaceAddr, ext.PublicIP, tc.iface, tc.ifaceAddr, tc.publicIP)
			}
			if tc.mtu != 0 && ext.Iface.MTU != tc.mtu {
				t.Errorf("MTU %d, want %d", ext.Iface.MTU, tc.mtu)
			}
			if ext.Iface.Index <= 1 {
				t.Errorf("index %d, want the namespace's link index", ext.Iface.Index)
			}
		})
	}

	testSelectIPv6InNamespace(t, sel)

	t.Run("no default route", func(t *testing.T) {
		if _, err := nstest.Run(ns, "ip", "route", "del", "default"); err != nil {
			t.Fatal(err)
		}
		_, err := sel(t, Options{})
		if !errors.Is(err, ErrNotFound) || err.Error() != "no default route: use --iface" {
			t.Fatalf("got %v, want the no-default-route error", err)
		}
		_, err = sel(t, Options{CanReach: "10.244.1.1"})
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "--iface-can-reach 10.244.1.1: no route") {
			t.Fatalf("got %v, want a can-reach error", err)
		}
	})
}

// testSelectIPv6InNamespace runs the IPv6-only and dual-stack modes in TestSelectInNamespace's
// namespace (before its default routes are deleted).
func testSelectIPv6InNamespace(t *testing.T, sel func(*testing.T, Options) (backend.ExternalInterface, error)) {
	v6 := func(o Options) Options { o.IPv6 = true; return o }
	ds := func(o Options) Options { o.IPv4, o.IPv6 = true, true; return o }
	for _, tc := range []struct {
		name                                 string
		opts                                 Options
		iface, addr4, addr6, pub6, pub6Iface string
		errText                              string
	}{
		{name: "v6 default route", opts: v6(Options{}), iface: "veth0", addr6: "2001:db8:1::10", pub6Iface: "veth0"},
		{name: "v6 iface name", opts: v6(Options{Ifaces: []string{"veth1"}}), iface: "veth1", addr6: "2001:db8:2::10", pub6Iface: "veth1"},
		{name: "v6 iface address", opts: v6(Options{Ifaces: []string{"2001:db8:2::20"}}), iface: "veth1", addr6: "2001:db8:2::20", pub6Iface: "veth1"},
		{name: "v6 link-local only", opts: v6(Options{Ifaces: []string{"veth2"}}), errText: "--iface veth2: interface veth2 has no global IPv6 address (only link-local"},
		{name: "v6 regex address", opts: v6(Options{Regexes: []string{`^2001:db8:2::20$`}}), iface: "veth1", addr6: "2001:db8:2::20", pub6Iface: "veth1"},
		{name: "v6 regex link-local", opts: v6(Options{Regexes: []string{`^fe80::2:1$`}}), errText: `no interface matched --iface-regex "^fe80::2:1$"`},
		{name: "v6 can-reach connected", opts: v6(Options{CanReach: "2001:db8:2::77"}), iface: "veth1", addr6: "2001:db8:2::10", pub6Iface: "veth1"},
		{name: "v6 can-reach via default", opts: v6(Options{CanReach: "2001:db8:99::1"}), iface: "veth0", addr6: "2001:db8:1::10", pub6Iface: "veth0"},
		{name: "v6 public alone", opts: v6(Options{PublicIPv6: "2001:db8:2::20"}), iface: "veth1", addr6: "2001:db8:2::20", pub6Iface: "veth1"},
		{name: "v6 public not local", opts: v6(Options{PublicIPv6: "2001:db8:ff::1"}), iface: "veth0", addr6: "2001:db8:1::10", pub6: "2001:db8:ff::1"},
		{name: "dual default route", opts: ds(Options{}), iface: "veth0", addr4: "192.0.2.10", addr6: "2001:db8:1::10", pub6Iface: "veth0"},
		{name: "dual iface IPv4 address", opts: ds(Options{Ifaces: []string{"198.51.100.20"}}), iface: "veth1", addr4: "198.51.100.20", addr6: "2001:db8:2::10", pub6Iface: "veth1"},
		{name: "dual iface without IPv6 skipped", opts: ds(Options{Ifaces: []string{"veth2", "veth1"}}), iface: "veth1", addr4: "198.51.100.10", addr6: "2001:db8:2::10", pub6Iface: "veth1"},
		{name: "dual iface without IPv6", opts: ds(Options{Ifaces: []string{"veth2"}}), errText: "--iface veth2: interface veth2 has no global IPv6 address"},
		{name: "dual can-reach IPv6", opts: ds(Options{CanReach: "2001:db8:2::77"}), iface: "veth1", addr4: "198.51.100.10", addr6: "2001:db8:2::10", pub6Iface: "veth1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ext, err := sel(t, tc.opts)
			if tc.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("got %v, want an error containing %q", err, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			pub6 := tc.pub6
			if pub6 == "" {
				pub6 = tc.addr6
			}
			if ext.Iface.Name != tc.iface || ext.IfaceAddr != orZero(tc.addr4) || ext.PublicIP != orZero(tc.addr4) ||
				ext.IfaceAddrV6 != orZero(tc.addr6) || ext.PublicIPv6 != orZero(pub6) || ext.PublicIPv6Iface != tc.pub6Iface {
				t.Fatalf("got %s %v %v %v %v %q, want %s %s %s %s %q", ext.Iface.Name, ext.IfaceAddr, ext.PublicIP,
					ext.IfaceAddrV6, ext.PublicIPv6, ext.PublicIPv6Iface, tc.iface, tc.addr4, tc.addr6, pub6, tc.pub6Iface)
			}
		})
	}
}

// TestSelectSkipsDADFailedIPv6: an IPv6 address that failed duplicate address detection
// (the same address on both ends of a veth pair: one end loses) is never selected.
func TestSelectSkipsDADFailedIPv6(t *testing.T) {
	ns := nstest.Temp(t, "ifdad")
	for _, cmd := range [][]string{
		{"ip", "link", "add", "veth3", "type", "veth", "peer", "name", "veth3p"},
		{"ip", "addr", "add", "2001:db8:3::1/64", "dev", "veth3"},
		{"ip", "addr", "add", "2001:db8:3::1/64", "dev", "veth3p"},
		{"ip", "link", "set", "veth3", "up"},
		{"ip", "link", "set", "veth3p", "up"},
	} {
		if _, err := nstest.Run(ns, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	failed := map[string]bool{} // the ends whose address failed DAD
	deadline := time.Now().Add(10 * time.Second)
	for len(failed) == 0 && time.Now().Before(deadline) {
		out, err := nstest.Run(ns, "ip", "-6", "-o", "addr", "show", "dadfailed")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 {
				name, _, _ := strings.Cut(f[1], "@")
				failed[name] = true
			}
		}
		if len(failed) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	lost, won := "veth3", "veth3p"
	switch {
	case failed["veth3p"] && !failed["veth3"]:
		lost, won = won, lost
	case failed["veth3"] && failed["veth3p"]:
		won = "" // both probed at once: both lost
	case !failed["veth3"]:
		t.Fatalf("no address of the veth pair failed DAD within 10 s (failed: %v)", failed)
	}
	var ext backend.ExternalInterface
	var errFailed, errOther error
	if err := nsutil.Do(ns, func() error {
		_, errFailed = Select(Options{IPv6: true, Ifaces: []string{lost}})
		if won != "" {
			ext, errOther = Select(Options{IPv6: true, Ifaces: []string{won}})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if errFailed == nil || !strings.Contains(errFailed.Error(), "interface "+lost+" has no global IPv6 address") {
		t.Errorf("%s: got %v, want no global IPv6 address", lost, errFailed)
	}
	if won != "" && (errOther != nil || ext.IfaceAddrV6 != netip.MustParseAddr("2001:db8:3::1")) {
		t.Errorf("%s: got %v %v, want 2001:db8:3::1", won, ext.IfaceAddrV6, errOther)
	}
}

func TestKeepIPv6(t *testing.T) {
	for _, tc := range []struct {
		flags int
		keep  bool
	}{
		{0, true},
		{unix.IFA_F_PERMANENT | unix.IFA_F_NODAD, true},
		{unix.IFA_F_TENTATIVE, true}, // still in DAD at boot: usable once it completes
		{unix.IFA_F_TEMPORARY, false},
		{unix.IFA_F_DADFAILED | unix.IFA_F_TENTATIVE, false},
	} {
		if got := keepIPv6(tc.flags); got != tc.keep {
			t.Errorf("flags %#x: keep %v, want %v", tc.flags, got, tc.keep)
		}
	}
}
