package subnet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/weftnet/weft/pkg/ip"
)

// DefaultBackendType is the backend of a config with no Backend key: udp, as flanneld's code
// decides (pkg/subnet/config.go), although flannel's documentation says vxlan. A mixed
// cluster must not split into two backends over it.
const DefaultBackendType = "udp"

// Config is the validated network configuration stored at <prefix>/config.
type Config struct {
	Network   netip.Prefix // the whole pod network, e.g. 10.244.0.0/16
	SubnetLen int          // length of each node's subnet
	SubnetMin netip.Addr   // network address of the first subnet handed out
	SubnetMax netip.Addr   // network address of the last subnet handed out

	EnableNFTables bool // weft's rules in nftables (table ip weft) instead of iptables

	BackendType string          // the Backend object's Type, lower-cased; DefaultBackendType without one
	Backend     json.RawMessage // the whole Backend object, for the backend to parse

	// Warnings says what in the config weft reads differently from what was probably meant,
	// or does not implement yet, while still running it as flanneld would: unknown keys,
	// host bits in Network, IPv6 in a dual-stack config. The daemon logs them, /status shows
	// them and weftctl config set prints them.
	Warnings []string
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

// ParseConfig decodes and validates a network config with flannel's keys and defaults,
// accepting exactly what flanneld accepts: keys match case-insensitively (encoding/json's
// rule), unknown keys are ignored with a warning, SubnetLen 0 and a SubnetMin or SubnetMax of
// 0.0.0.0 mean "unset", the Backend Type is lower-cased. Every error wraps ErrInvalidConfig and
// names the offending key and value. Backend keys other than Type are left to the backend
// (see Config.Backend).
func ParseConfig(data []byte) (*Config, error) {
	var rc rawConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&rc); err != nil {
		return nil, invalid("not valid JSON with flannel's keys: %v", err)
	}
	if dec.More() {
		return nil, invalid("trailing data after the JSON object")
	}
	cfg := &Config{Warnings: unknownKeys(data, rawConfig{}, "")}
	v4 := rc.EnableIPv4 == nil || *rc.EnableIPv4
	if rc.EnableIPv6 != nil && *rc.EnableIPv6 {
		if !v4 {
			return nil, invalid("EnableIPv4=false with EnableIPv6=true: IPv6-only networks are not supported by weft yet")
		}
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("EnableIPv6=true: weft does not support IPv6 yet; running the IPv4 network %s only (IPv6Network %s is not used)", deref(rc.Network), deref(rc.IPv6Network)))
	}
	if !v4 {
		return nil, invalid("EnableIPv4=false: an IPv6-only network is not supported by weft yet")
	}
	if rc.Network == nil {
		return nil, invalid("Network is missing")
	}
	network, err := netip.ParsePrefix(*rc.Network)
	switch {
	case err != nil:
		return nil, invalid("Network: %q is not a CIDR network", *rc.Network)
	case !network.Addr().Is4():
		return nil, invalid("Network: %q is not an IPv4 network", *rc.Network)
	case network.Masked() != network:
		// flanneld masks it silently; say what is used.
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("Network %q has host bits set: using %s (did you mean %s?)", *rc.Network, network.Masked(), network.Masked()))
		network = network.Masked()
	}
	if network.Bits() > 28 {
		return nil, invalid("Network %s is too small: it must be a /28 or larger", network)
	}
	cfg.Network = network

	switch {
	case rc.SubnetLen != nil && *rc.SubnetLen != 0:
		cfg.SubnetLen = *rc.SubnetLen
	case network.Bits() <= 22:
		cfg.SubnetLen = 24
	default:
		cfg.SubnetLen = network.Bits() + 2
	}
	if cfg.SubnetLen > 30 {
		return nil, invalid("SubnetLen %d out of range: it must be at most 30", cfg.SubnetLen)
	}
	if cfg.SubnetLen < network.Bits()+2 {
		return nil, invalid("SubnetLen %d out of range: Network /%d must be able to accommodate at least four subnets (SubnetLen %d or more)", cfg.SubnetLen, network.Bits(), network.Bits()+2)
	}

	size := ip.SubnetSize(cfg.SubnetLen)
	first := ip.ToUint32(network.Addr())
	last := first + ip.SubnetSize(network.Bits()) - size
	cfg.SubnetMin = ip.FromUint32(first + size)
	cfg.SubnetMax = ip.FromUint32(last)
	if rc.SubnetMin != nil && !isZeroAddr(*rc.SubnetMin) {
		if cfg.SubnetMin, err = cfg.parseBound("SubnetMin", *rc.SubnetMin); err != nil {
			return nil, err
		}
	}
	if rc.SubnetMax != nil && !isZeroAddr(*rc.SubnetMax) {
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

func deref(s *string) string {
	if s == nil {
		return "(none)"
	}
	return *s
}

// isZeroAddr reports whether s is 0.0.0.0, which flanneld reads as an unset bound.
func isZeroAddr(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4() && a.IsUnspecified()
}

// unknownKeys returns a warning for each key of the JSON object data that no field of
// the struct known has (matched as encoding/json matches, case-insensitively), in key order.
// where names the object in the warning ("" for the config, "Backend" for its object).
func unknownKeys(data []byte, known any, where string) []string {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	names := fieldNames(known)
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, k) }) {
			what := "key"
			if where != "" {
				what = where + " key"
			}
			out = append(out, fmt.Sprintf("unknown %s %q ignored (flanneld ignores it too; known: %s)", what, k, strings.Join(names, ", ")))
		}
	}
	return out
}

func fieldNames(v any) []string {
	t := reflect.TypeOf(v)
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		names = append(names, t.Field(i).Name)
	}
	return names
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

// parseBackendType reads the Backend object's Type as flanneld does: the key matched
// case-insensitively, the value lower-cased. No Backend key at all means DefaultBackendType;
// a Backend object with no Type has an empty type, which no backend is (flanneld refuses it).
func parseBackendType(raw json.RawMessage) (string, json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return DefaultBackendType, json.RawMessage(`{}`), nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", nil, invalid("Backend must be a JSON object, got %s", raw)
	}
	var t string
	for k, v := range m {
		if !strings.EqualFold(k, "Type") {
			continue
		}
		if err := json.Unmarshal(v, &t); err != nil {
			return "", nil, invalid("Backend.Type %s is not a backend name", v)
		}
		if k == "Type" {
			break // the exact spelling wins, as in encoding/json
		}
	}
	return strings.ToLower(t), raw, nil
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
