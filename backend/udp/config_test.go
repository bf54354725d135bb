package udp

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		raw     string
		want    Config
		wantErr string // substring; "" for success
	}{
		{``, Config{Port: 8285, Batch: true}, ""},
		{`null`, Config{Port: 8285, Batch: true}, ""},
		{`{"Type":"udp"}`, Config{Port: 8285, Batch: true}, ""},
		{`{"Type":"udp","Port":8999}`, Config{Port: 8999, Batch: true}, ""},
		{`{"Type":"udp","port":1}`, Config{Port: 1, Batch: true}, ""}, // case-insensitive, as flanneld's json.Unmarshal
		{`{"Type":"udp","Batch":false}`, Config{Port: 8285, Batch: false}, ""},
		{`{"Type":"udp","Port":65535,"Batch":true}`, Config{Port: 65535, Batch: true}, ""},
		// Keys udp does not read are ignored, as flanneld ignores them (the config check warns).
		{`{"Type":"udp","MTU":1400}`, Config{Port: 8285, Batch: true}, ""},
		{`{"Type":"udp","VNI":1}`, Config{Port: 8285, Batch: true}, ""},
		{`{"Type":"udp","Port":0}`, Config{}, "key Port: value 0 is outside 1..65535"},
		{`{"Type":"udp","Port":70000}`, Config{}, "key Port: value 70000"},
		{`{"Type":"udp","Port":"8285"}`, Config{}, `key Port: value "8285" is not an integer`},
		{`{"Type":"udp","Port":1.5}`, Config{}, "key Port: value 1.5 is not an integer"},
		{`{"Type":"udp","Batch":"yes"}`, Config{}, `key Batch: value "yes" is not true or false`},
		{`[1]`, Config{}, "not a JSON object"},
	}
	for _, tt := range tests {
		got, err := ParseConfig(json.RawMessage(tt.raw))
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseConfig(%s) = %+v, %v; want %+v", tt.raw, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseConfig(%s) error = %v, want it to contain %q", tt.raw, err, tt.wantErr)
			continue
		}
		if !errors.Is(err, subnet.ErrInvalidConfig) {
			t.Errorf("ParseConfig(%s) error does not wrap ErrInvalidConfig: %v", tt.raw, err)
		}
		if Validate(json.RawMessage(tt.raw)) == nil {
			t.Errorf("Validate(%s) accepted it", tt.raw)
		}
	}
}

func TestPodMTU(t *testing.T) {
	for ext, want := range map[int]int{1500: 1472, 9000: 8972, 96: 68} {
		if got, err := podMTU(ext); err != nil || got != want {
			t.Errorf("podMTU(%d) = %d, %v; want %d", ext, got, err, want)
		}
	}
	if _, err := podMTU(95); err == nil {
		t.Error("podMTU(95) accepted a pod MTU below 68")
	}
}

func TestTypeEntry(t *testing.T) {
	ty := Type()
	if ty.Name != "udp" || ty.Validate == nil || ty.New == nil {
		t.Fatalf("Type() = %+v", ty)
	}
}

// TestNewRefusesIPv6: udp carries IPv4 only (as flanneld's); a dual-stack or IPv6-only
// network is refused by New with an error naming the config keys and the backends that
// carry IPv6, before anything is checked or created.
func TestNewRefusesIPv6(t *testing.T) {
	v6 := netip.MustParsePrefix("fd00:10::/48")
	for _, c := range []struct {
		name string
		cfg  subnet.Config
		want []string
	}{
		{"dual stack", subnet.Config{EnableIPv4: true, Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24,
			EnableIPv6: true, IPv6Network: v6, IPv6SubnetLen: 64}, []string{"EnableIPv6=true", "vxlan, host-gw, gre or wireguard", "IPv4 only"}},
		{"IPv6 only", subnet.Config{EnableIPv6: true, IPv6Network: v6, IPv6SubnetLen: 64},
			[]string{"EnableIPv4=false", "EnableIPv6=true", "vxlan, host-gw, gre or wireguard", "IPv4 only"}},
	} {
		cfg := c.cfg
		cfg.Backend = json.RawMessage(`{"Type":"udp"}`)
		_, err := New(backend.Env{Network: &cfg})
		if err == nil {
			t.Errorf("%s: New accepted the network", c.name)
			continue
		}
		if !errors.Is(err, subnet.ErrInvalidConfig) {
			t.Errorf("%s: error does not wrap ErrInvalidConfig: %v", c.name, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
	if err := checkFamilies(&subnet.Config{EnableIPv4: true, Network: netip.MustParsePrefix("10.244.0.0/16")}); err != nil {
		t.Errorf("an IPv4 network refused: %v", err)
	}
}
