package backends_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend/backends"
	"github.com/weftnet/weft/subnet"
)

func TestTableNamesItsTypes(t *testing.T) {
	types := backends.Types()
	for _, name := range []string{"host-gw", "vxlan", "udp", "gre", "wireguard"} {
		bt, ok := types[name]
		if !ok || bt.Name != name || bt.Validate == nil || bt.New == nil {
			t.Errorf("%s: %+v (present %v)", name, bt, ok)
		}
	}
	if len(types) != 5 {
		t.Errorf("%d types, want 5", len(types))
	}
}

func TestParseNetworkConfig(t *testing.T) {
	cfg, bt, err := backends.ParseNetworkConfig([]byte(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":4}}`))
	if err != nil || bt.Name != "vxlan" || cfg.Network.String() != "10.244.0.0/16" {
		t.Fatalf("valid config: %+v %s %v", cfg, bt.Name, err)
	}
	// flanneld's code gives udp to a config without Backend.
	if _, bt, err := backends.ParseNetworkConfig([]byte(`{"Network":"10.244.0.0/16"}`)); err != nil || bt.Name != "udp" {
		t.Errorf("default backend: %s %v, want udp", bt.Name, err)
	}
	// The Type is lower-cased; keys the backend does not read are warnings, not errors.
	cfg, bt, err = backends.ParseNetworkConfig([]byte(`{"Network":"10.244.0.0/16","Backend":{"type":"VXLAN","MacPrefix":"0E-2A","Name":"vxlan0"}}`))
	if err != nil || bt.Name != "vxlan" || len(cfg.Warnings) != 2 ||
		!strings.Contains(cfg.Warnings[0], `unknown Backend key "MacPrefix" ignored`) || !strings.Contains(cfg.Warnings[1], `"Name"`) {
		t.Errorf("flanneld's Windows vxlan keys: %s %v %q", bt.Name, err, cfg.Warnings)
	}
	for js, want := range map[string]string{
		`{"Network":"10.244.0.0/16","Backend":{"Type":"carrier-pigeon"}}`: `Backend.Type "carrier-pigeon" is not a known backend (known: [gre host-gw udp vxlan wireguard])`,
		// flanneld's backends that weft lacks: refused, saying what to do instead.
		`{"Network":"10.244.0.0/16","Backend":{"Type":"IPIP","DirectRouting":true}}`: `Backend.Type "ipip" is a flanneld backend that weft does not provide (switch the network to vxlan, or to weft's gre, before moving nodes to weftd) (known: [gre host-gw udp vxlan wireguard])`,
		`{"Network":"10.244.0.0/16","Backend":{"Type":"ipsec","PSK":"x"}}`:           `Backend.Type "ipsec" is a flanneld backend that weft does not provide (weft's wireguard backend encrypts instead)`,
		`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":0}}`:             `Backend (Type "vxlan")`,
		`{"Network":"10.244.0.0/16","Backend":{}}`:                                   `Backend has no Type`,
		// A backend's own error is not prefixed twice with "invalid network config".
		`{"Network":"10.244.0.0/16","Backend":{"Type":"gre","Mode":"bogus"}}`: `invalid network config: Backend (Type "gre"): gre backend: key Mode: value "bogus"`,
		// Keys each valid, but a combination with the network's families the backend cannot
		// run (Type.CheckNetwork): refused here, so weftd waits and weftctl refuses it.
		`{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10::/48","Backend":{"Type":"udp"}}`:                 `invalid network config: Backend (Type "udp"): the udp backend carries IPv4 only, as flanneld's: the network config sets EnableIPv6=true; use the vxlan, host-gw, gre or wireguard backend`,
		`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10::/48","Backend":{"Type":"udp"}}`:                        `EnableIPv4=false and EnableIPv6=true (an IPv6-only network)`,
		`{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10::/48","Backend":{"Type":"gre","Mode":"kernel"}}`: `Backend (Type "gre"): gre backend: key Mode: value "kernel" carries IPv4 only, but the network has EnableIPv6=true`,
		`{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard","Mode":"ipv6"}}`:                                            `Backend (Type "wireguard"): wireguard backend: key Mode: value "ipv6" sends to the peers' IPv6 addresses`,
		`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10::/48","Backend":{"Type":"wireguard","Mode":"ipv4"}}`:    `key Mode: value "ipv4" sends to the peers' IPv4 addresses, which an IPv6-only network`,
	} {
		_, _, err := backends.ParseNetworkConfig([]byte(js))
		if !errors.Is(err, subnet.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrInvalidConfig with %q", js, err, want)
		}
	}
}
