package subnet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/pkg/ip"
)

// DefaultBackendType is the backend used when the config names none, as in flannel.
const DefaultBackendType = "vxlan"

// Config is the validated network configuration stored at <prefix>/config.
type Config struct {
	Network   netip.Prefix // the whole pod network, e.g. 10.244.0.0/16
	SubnetLen int          // length of each node's subnet
	SubnetMin netip.Addr   // network address of the first subnet handed out
	SubnetMax netip.Addr   // network address of the last subnet handed out

	EnableNFTables bool // weft's rules in nftables (table ip weft) instead of iptables

	BackendType string          // "vxlan" unless the Backend object says otherwise
	Backend     json.RawMessage // the whole Backend object, for the backend to parse strictly
}

// ErrInvalidConfig marks every validation failure of a network config.
var ErrInvalidConfig = errors.New("invalid network config")

// rawConfig mirrors flannel's JSON keys. Pointers tell "absent" from "zero".
type rawConfig struct {
	Network        *string
	SubnetLen      *int
	SubnetMin      *string
	SubnetMax      *string
	EnableIPv4     *bool
	EnableIPv6     *bool
	IPv6Network    *string
	IPv6SubnetLen  *int
	IPv6SubnetMin  *string
	IPv6SubnetMax  *string
	EnableNFTables *bool
	Backend        json.RawMessage
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}

// ParseConfig decodes and validates a network config with flannel's keys and defaults.
// Every error wraps ErrInvalidConfig and names the offending key and value. Backend keys
// other than Type are left to the backend (see Config.Backend).
func ParseConfig(data []byte) (*Config, error) {
	var rc rawConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		return nil, invalid("not valid JSON with flannel's keys: %v", err)
	}
	if dec.More() {
		return nil, invalid("trailing data after the JSON object")
	}
	if rc.EnableIPv6 != nil && *rc.EnableIPv6 {
		return nil, invalid("EnableIPv6=true: weft supports IPv4 networks only")
	}
	if rc.EnableIPv4 != nil && !*rc.EnableIPv4 {
		return nil, invalid("EnableIPv4=false: weft supports IPv4 networks only")
	}
	if rc.Network == nil {
		return nil, invalid("Network is missing")
	}
	network, err := ip.ParseNetwork(*rc.Network)
	if err != nil {
		return nil, invalid("Network: %v", err)
	}
	if network.Bits() > 28 {
		return nil, invalid("Network %s is too small: it must be a /28 or larger", network)
	}
	cfg := &Config{Network: network}

	switch {
	case rc.SubnetLen != nil:
		cfg.SubnetLen = *rc.SubnetLen
	case network.Bits() <= 22:
		cfg.SubnetLen = 24
	default:
		cfg.SubnetLen = network.Bits() + 2
	}
	if cfg.SubnetLen <= network.Bits() || cfg.SubnetLen > 30 {
		return nil, invalid("SubnetLen %d out of range: it must be larger than Network's /%d and at most 30", cfg.SubnetLen, network.Bits())
	}

	size := ip.SubnetSize(cfg.SubnetLen)
	first := ip.ToUint32(network.Addr())
	last := first + ip.SubnetSize(network.Bits()) - size
	cfg.SubnetMin = ip.FromUint32(first + size)
	cfg.SubnetMax = ip.FromUint32(last)
	if rc.SubnetMin != nil {
		if cfg.SubnetMin, err = cfg.parseBound("SubnetMin", *rc.SubnetMin); err != nil {
			return nil, err
		}
	}
	if rc.SubnetMax != nil {
		if cfg.SubnetMax, err = cfg.parseBound("SubnetMax", *rc.SubnetMax); err != nil {
			return nil, err
		}
	}
	if ip.ToUint32(cfg.SubnetMin) > ip.ToUint32(cfg.SubnetMax) {
		return nil, invalid("SubnetMin %s is above SubnetMax %s", cfg.SubnetMin, cfg.SubnetMax)
	}
	if rc.EnableNFTables != nil {
		cfg.EnableNFTables = *rc.EnableNFTables
	}

	cfg.BackendType, cfg.Backend, err = parseBackendType(rc.Backend)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) parseBound(key, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, invalid("%s %q is not an IPv4 address", key, s)
	}
	if !c.Network.Contains(a) {
		return netip.Addr{}, invalid("%s %s is outside Network %s", key, a, c.Network)
	}
	if netip.PrefixFrom(a, c.SubnetLen).Masked().Addr() != a {
		return netip.Addr{}, invalid("%s %s is not aligned to SubnetLen /%d", key, a, c.SubnetLen)
	}
	return a, nil
}

func parseBackendType(raw json.RawMessage) (string, json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return DefaultBackendType, json.RawMessage(`{}`), nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", nil, invalid("Backend must be a JSON object, got %s", raw)
	}
	t := DefaultBackendType
	if v, ok := m["Type"]; ok {
		if err := json.Unmarshal(v, &t); err != nil || t == "" {
			return "", nil, invalid("Backend.Type %s is not a backend name", v)
		}
	}
	return t, raw, nil
}

// Contains reports whether a lease subnet fits this config: inside Network with the
// configured length. Reservations may lie outside [SubnetMin, SubnetMax] and still fit.
func (c *Config) Contains(sn netip.Prefix) bool {
	return sn.Addr().Is4() && sn.Bits() == c.SubnetLen && ip.IsNetworkAddress(sn) && c.Network.Contains(sn.Addr())
}

// InRange reports whether a subnet is one weft may hand out on its own: it fits the config
// and lies within [SubnetMin, SubnetMax].
func (c *Config) InRange(sn netip.Prefix) bool {
	if !c.Contains(sn) {
		return false
	}
	v := ip.ToUint32(sn.Addr())
	return v >= ip.ToUint32(c.SubnetMin) && v <= ip.ToUint32(c.SubnetMax)
}
