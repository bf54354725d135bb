package iface

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/test/nstest"
)

// TestSelectInNamespace runs every selection mode against a real kernel, inside a throwaway
// namespace: veth0 192.0.2.10/24 with the default route, veth1 198.51.100.10/24 plus the
// secondary 198.51.100.20/24, and br0 without an address.
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
