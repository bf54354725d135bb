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
	if _, bt, err := backends.ParseNetworkConfig([]byte(`{"Network":"10.244.0.0/16"}`)); err != nil || bt.Name != "vxlan" {
		t.Errorf("default backend: %s %v, want vxlan", bt.Name, err)
	}
	for js, want := range map[string]string{
		`{"Network":"10.244.0.1/16"}`:                                       "not a network address",
		`{"Network":"10.244.0.0/16","Backend":{"Type":"carrier-pigeon"}}`:   `Backend.Type "carrier-pigeon" is not a known backend (known: [gre host-gw udp vxlan wireguard])`,
		`{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw","Port":1}}`: `Backend (Type "host-gw")`,
	} {
		_, _, err := backends.ParseNetworkConfig([]byte(js))
		if !errors.Is(err, subnet.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrInvalidConfig with %q", js, err, want)
		}
	}
}
