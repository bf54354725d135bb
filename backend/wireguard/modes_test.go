package wireguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// TestLayout: flanneld's devices for every Mode and family combination, and the two
// that cannot work refused with the key and value named.
func TestLayout(t *testing.T) {
	v4 := subnet.Config{EnableIPv4: true}
	dual := subnet.Config{EnableIPv4: true, EnableIPv6: true}
	v6 := subnet.Config{EnableIPv6: true}
	wg := func(port int, fam4, fam6 bool, v via) linkSpec {
		return linkSpec{name: DeviceName, port: port, v4: fam4, v6: fam6, via: v}
	}
	wg6 := linkSpec{name: DeviceNameV6, port: 5001, v6: true, via: via6}
	for _, tc := range []struct {
		name string
		net  subnet.Config
		mode Mode
		want []linkSpec
		err  []string
	}{
		{"ipv4 separate", v4, ModeSeparate, []linkSpec{wg(5000, true, false, via4)}, nil},
		{"ipv4 auto", v4, ModeAuto, []linkSpec{wg(5000, true, false, via4)}, nil},
		{"ipv4 ipv4", v4, ModeIPv4, []linkSpec{wg(5000, true, false, via4)}, nil},
		{"ipv4 ipv6", v4, ModeIPv6, nil, []string{`key Mode: value "ipv6"`, "EnableIPv6 false"}},
		{"dual separate", dual, ModeSeparate, []linkSpec{wg(5000, true, false, via4), wg6}, nil},
		{"dual auto", dual, ModeAuto, []linkSpec{wg(5000, true, true, viaAuto)}, nil},
		{"dual ipv4", dual, ModeIPv4, []linkSpec{wg(5000, true, true, via4)}, nil},
		{"dual ipv6", dual, ModeIPv6, []linkSpec{wg(5000, true, true, via6)}, nil},
		{"ipv6-only separate", v6, ModeSeparate, []linkSpec{wg6}, nil},
		{"ipv6-only auto", v6, ModeAuto, []linkSpec{wg(5000, false, true, viaAuto)}, nil},
		{"ipv6-only ipv6", v6, ModeIPv6, []linkSpec{wg(5000, false, true, via6)}, nil},
		{"ipv6-only ipv4", v6, ModeIPv4, nil, []string{`key Mode: value "ipv4"`, "EnableIPv4=false"}},
		{"no family", subnet.Config{}, ModeAuto, nil, []string{"neither IPv4 nor IPv6"}},
	} {
		got, err := layout(&tc.net, Config{Mode: tc.mode, ListenPort: 5000, ListenPortV6: 5001})
		if tc.err == nil {
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("%s: layout = %+v, %v; want %+v", tc.name, got, err, tc.want)
			}
			continue
		}
		if err == nil || !errors.Is(err, subnet.ErrInvalidConfig) {
			t.Errorf("%s: layout = %+v, %v; want an ErrInvalidConfig", tc.name, got, err)
			continue
		}
		for _, w := range tc.err {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tc.name, err, w)
			}
		}
	}
}

// TestNewModes: New accepts every combination flanneld runs, given the external
// addresses it needs, and refuses with a clear error what cannot work: Mode ipv4 in an
// IPv6-only network, Mode ipv6 in an IPv4 one, and a device that sends to IPv6
// addresses on an interface without one. Nothing is created: not even the key file.
func TestNewModes(t *testing.T) {
	v4net := netip.MustParsePrefix("10.244.0.0/16")
	v6net := netip.MustParsePrefix("fd00:10::/48")
	iface := &net.Interface{Index: 2, Name: "eth0", MTU: 1500}
	a4, a6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	ext46 := backend.ExternalInterface{Iface: iface, IfaceAddr: a4, PublicIP: a4, IfaceAddrV6: a6, PublicIPv6: a6}
	ext4 := backend.ExternalInterface{Iface: iface, IfaceAddr: a4, PublicIP: a4}
	ext6 := backend.ExternalInterface{Iface: iface, IfaceAddrV6: a6, PublicIPv6: a6}
	dual := subnet.Config{EnableIPv4: true, Network: v4net, SubnetLen: 24, EnableIPv6: true, IPv6Network: v6net, IPv6SubnetLen: 64}
	ipv4 := subnet.Config{EnableIPv4: true, Network: v4net, SubnetLen: 24}
	ipv6 := subnet.Config{EnableIPv6: true, IPv6Network: v6net, IPv6SubnetLen: 64}
	keyFile := filepath.Join(t.TempDir(), "wgkey")
	for _, tc := range []struct {
		name    string
		cfg     subnet.Config
		ext     backend.ExternalInterface
		mode    string
		devices []string // nil: refused
		want    []string // in the error
	}{
		{"IPv4, default Mode", ipv4, ext4, "", []string{DeviceName}, nil},
		{"dual stack, default Mode (separate)", dual, ext46, "", []string{DeviceName, DeviceNameV6}, nil},
		{"dual stack, Mode auto", dual, ext46, "auto", []string{DeviceName}, nil},
		{"dual stack, Mode auto, no IPv6 on the interface", dual, ext4, "auto", []string{DeviceName}, nil},
		{"dual stack, Mode ipv4", dual, ext4, "ipv4", []string{DeviceName}, nil},
		{"dual stack, Mode ipv6", dual, ext46, "ipv6", []string{DeviceName}, nil},
		{"IPv6 only, default Mode", ipv6, ext6, "", []string{DeviceNameV6}, nil},
		{"IPv6 only, Mode auto", ipv6, ext6, "auto", []string{DeviceName}, nil},
		{"IPv6 only, Mode ipv6", ipv6, ext6, "ipv6", []string{DeviceName}, nil},
		{"IPv6 only, Mode ipv4", ipv6, ext6, "ipv4", nil, []string{`key Mode: value "ipv4"`, "IPv6-only"}},
		{"IPv4, Mode ipv6", ipv4, ext4, "ipv6", nil, []string{`key Mode: value "ipv6"`, "IPv4 network"}},
		{"dual stack, Mode separate, no IPv6 on the interface", dual, ext4, "separate", nil, []string{DeviceNameV6, "IPv6 address"}},
		{"dual stack, Mode ipv6, no IPv6 on the interface", dual, ext4, "ipv6", nil, []string{DeviceName, "IPv6 address"}},
		{"IPv4, no IPv4 on the interface", ipv4, ext6, "", nil, []string{DeviceName, "IPv4 address"}},
	} {
		cfg := tc.cfg
		cfg.Backend = json.RawMessage(`{"Type":"wireguard"}`)
		if tc.mode != "" {
			cfg.Backend = json.RawMessage(fmt.Sprintf(`{"Type":"wireguard","Mode":%q}`, tc.mode))
		}
		b, err := newBackend(backend.Env{Ext: tc.ext, Network: &cfg}, keyFile)
		if tc.devices != nil {
			if err != nil {
				t.Errorf("%s: refused: %v", tc.name, err)
				continue
			}
			var names []string
			for _, s := range b.specs {
				names = append(names, s.name)
			}
			if !slices.Equal(names, tc.devices) {
				t.Errorf("%s: devices %v, want %v", tc.name, names, tc.devices)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: New accepted the network", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tc.name, err, w)
			}
		}
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New touched the key file: %v", err)
	}
}

// TestPeersPerMode: the peer each device of each layout makes of one dual-stack lease in
// flanneld's format (BackendData and BackendV6Data both {"PublicKey": ...}), and of an
// IPv6-only lease: allowed IPs by the families the device carries, the endpoint by the
// address it sends to and its port.
func TestPeersPerMode(t *testing.T) {
	own, k := pubKey(t), pubKey(t)
	p, ap := netip.MustParsePrefix, netip.MustParseAddrPort
	dualLease := subnet.Lease{Subnet: p("10.244.2.0/24"), IPv6Subnet: p("fd00:10:0:2::/64"), Attrs: subnet.LeaseAttrs{
		PublicIP: netip.MustParseAddr("192.0.2.2"), PublicIPv6: netip.MustParseAddr("2001:db8::2"), BackendType: Name,
		BackendData: backendData(k), BackendV6Data: backendData(k)}}
	only6 := subnet.Lease{IPv6Subnet: p("fd00:10:0:3::/64"), Attrs: subnet.LeaseAttrs{
		PublicIP: netip.MustParseAddr("0.0.0.0"), PublicIPv6: netip.MustParseAddr("2001:db8::3"), BackendType: Name, BackendV6Data: backendData(k)}}
	type peer struct {
		endpoint string
		allowed  []netip.Prefix
	}
	for _, tc := range []struct {
		name string
		net  subnet.Config
		mode Mode
		l    subnet.Lease
		want map[string]peer // by device; endpoint "" means rejected or no peer
	}{
		{"dual separate", subnet.Config{EnableIPv4: true, EnableIPv6: true}, ModeSeparate, dualLease, map[string]peer{
			DeviceName:   {"192.0.2.2:51820", []netip.Prefix{p("10.244.2.0/24")}},
			DeviceNameV6: {"[2001:db8::2]:51821", []netip.Prefix{p("fd00:10:0:2::/64")}},
		}},
		{"dual auto (public IPv4 first)", subnet.Config{EnableIPv4: true, EnableIPv6: true}, ModeAuto, dualLease, map[string]peer{
			DeviceName: {"192.0.2.2:51820", []netip.Prefix{p("10.244.2.0/24"), p("fd00:10:0:2::/64")}},
		}},
		{"dual ipv6", subnet.Config{EnableIPv4: true, EnableIPv6: true}, ModeIPv6, dualLease, map[string]peer{
			DeviceName: {"[2001:db8::2]:51820", []netip.Prefix{p("10.244.2.0/24"), p("fd00:10:0:2::/64")}},
		}},
		{"IPv6-only separate", subnet.Config{EnableIPv6: true}, ModeSeparate, only6, map[string]peer{
			DeviceNameV6: {"[2001:db8::3]:51821", []netip.Prefix{p("fd00:10:0:3::/64")}},
		}},
		{"IPv6-only auto", subnet.Config{EnableIPv6: true}, ModeAuto, only6, map[string]peer{
			DeviceName: {"[2001:db8::3]:51820", []netip.Prefix{p("fd00:10:0:3::/64")}},
		}},
		{"IPv6-only ipv6", subnet.Config{EnableIPv6: true}, ModeIPv6, only6, map[string]peer{
			DeviceName: {"[2001:db8::3]:51820", []netip.Prefix{p("fd00:10:0:3::/64")}},
		}},
		// An IPv6-only lease in a dual-stack network: no peer of the IPv4 device.
		{"dual separate, IPv6-only lease", subnet.Config{EnableIPv4: true, EnableIPv6: true}, ModeSeparate, only6, map[string]peer{
			DeviceName:   {},
			DeviceNameV6: {"[2001:db8::3]:51821", []netip.Prefix{p("fd00:10:0:3::/64")}},
		}},
	} {
		specs, err := layout(&tc.net, Config{Mode: tc.mode, ListenPort: 51820, ListenPortV6: 51821})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(specs) != len(tc.want) {
			t.Fatalf("%s: %d devices, want %d", tc.name, len(specs), len(tc.want))
		}
		for _, s := range specs {
			ps := newLinkPeerSet(s, tc.mode, own, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"))
			c := ps.apply(ev(subnet.Added, tc.l))
			want, bad := ps.desired()
			w := tc.want[s.name]
			if w.endpoint == "" {
				if len(want) != 0 || len(bad) != 0 || c.kind != unchanged {
					t.Errorf("%s: %s: peers %v, bad %v, change %d; want none", tc.name, s.name, want, bad, c.kind)
				}
				continue
			}
			got := want[k]
			if c.kind != added || len(want) != 1 || got.endpoint != ap(w.endpoint) || !slices.Equal(got.allowed, w.allowed) {
				t.Errorf("%s: %s: change %d, peers %+v; want %s %v", tc.name, s.name, c.kind, want, w.endpoint, w.allowed)
			}
			if c := ps.apply(ev(subnet.Removed, tc.l)); c.kind != removed {
				t.Errorf("%s: %s: removal: %+v", tc.name, s.name, c)
			}
		}
	}
	// A lease without the address a device sends to is refused, with the reason.
	specs, _ := layout(&subnet.Config{EnableIPv4: true, EnableIPv6: true}, Config{Mode: ModeSeparate, ListenPort: 51820, ListenPortV6: 51821})
	ps := newLinkPeerSet(specs[1], ModeSeparate, own, netip.Addr{}, netip.Addr{})
	l := dualLease
	l.Attrs.PublicIPv6 = netip.Addr{}
	if c := ps.apply(ev(subnet.Added, l)); c.kind != rejected || !strings.Contains(c.err.Error(), "PublicIPv6") {
		t.Errorf("lease without PublicIPv6 on %s: %+v", DeviceNameV6, c)
	}
}
