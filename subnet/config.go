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
//
// A network runs IPv4, IPv6 or both (EnableIPv4, EnableIPv6). The fields of a family that
// is off are zero.
type Config struct {
	EnableIPv4 bool         // flannel's default: true
	Network    netip.Prefix // the whole IPv4 pod network, e.g. 10.244.0.0/16
	SubnetLen  int          // length of each node's IPv4 subnet
	SubnetMin  netip.Addr   // network address of the first IPv4 subnet handed out
	SubnetMax  netip.Addr   // network address of the last IPv4 subnet handed out

	EnableIPv6    bool         // flannel's default: false
	IPv6Network   netip.Prefix // the whole IPv6 pod network, e.g. fd00:10:244::/56
	IPv6SubnetLen int          // length of each node's IPv6 subnet
	IPv6SubnetMin netip.Addr   // network address of the first IPv6 subnet handed out
	IPv6SubnetMax netip.Addr   // network address of the last IPv6 subnet handed out

	EnableNFTables bool // weft's rules in nftables (table ip weft) instead of iptables

	BackendType string          // the Backend object's Type, lower-cased; DefaultBackendType without one
	Backend     json.RawMessage // the whole Backend object, for the backend to parse

	// Warnings says what in the config weft reads differently from what was probably meant,
	// while still running it as flanneld would: unknown keys, host bits in Network. The daemon logs them, /status shows
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
	cfg.EnableIPv4 = rc.EnableIPv4 == nil || *rc.EnableIPv4
	cfg.EnableIPv6 = rc.EnableIPv6 != nil && *rc.EnableIPv6
	if !cfg.EnableIPv4 && !cfg.EnableIPv6 {
		return nil, invalid("EnableIPv4=false and EnableIPv6 is not true: the network has no address family")
	}
	if cfg.EnableIPv4 {
		if err := cfg.parseIPv4(rc); err != nil {
			return nil, err
		}
	}
	if cfg.EnableIPv6 {
		if err := cfg.parseIPv6(rc); err != nil {
			return nil, err
		}
	}
	if rc.EnableNFTables != nil {
		cfg.EnableNFTables = *rc.EnableNFTables
	}

	var err error
	cfg.BackendType, cfg.Backend, err = parseBackendType(rc.Backend)
	if err != nil {
		return nil, err
	}
	return cfg, nil
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

// parseIPv4 reads Network, SubnetLen, SubnetMin and SubnetMax with flanneld's defaults.
func (cfg *Config) parseIPv4(rc rawConfig) error {
	if rc.Network == nil {
		return invalid("Network is missing (an IPv6-only network sets EnableIPv4 to false)")
	}
	network, err := cfg.parseNetwork("Network", *rc.Network, false)
	if err != nil {
		return err
	}
	if network.Bits() > 28 {
		return invalid("Network %s is too small: it must be a /28 or larger", network)
	}
	cfg.Network = network
	cfg.SubnetLen, err = subnetLen("SubnetLen", rc.SubnetLen, network, 24, 22, 30)
	if err != nil {
		return err
	}
	cfg.SubnetMin, cfg.SubnetMax, err = bounds(network, cfg.SubnetLen, "", rc.SubnetMin, rc.SubnetMax)
	return err
}

// parseIPv6 reads IPv6Network, IPv6SubnetLen, IPv6SubnetMin and IPv6SubnetMax with
// flanneld's defaults: IPv6SubnetLen is 64 for an IPv6Network of /62 or larger, else the
// network's length + 2.
func (cfg *Config) parseIPv6(rc rawConfig) error {
	if rc.IPv6Network == nil {
		return invalid("IPv6Network is missing: EnableIPv6 needs it")
	}
	network, err := cfg.parseNetwork("IPv6Network", *rc.IPv6Network, true)
	if err != nil {
		return err
	}
	if network.Bits() > 124 {
		return invalid("IPv6Network %s is too small: it must be a /124 or larger", network)
	}
	cfg.IPv6Network = network
	cfg.IPv6SubnetLen, err = subnetLen("IPv6SubnetLen", rc.IPv6SubnetLen, network, 64, 62, 126)
	if err != nil {
		return err
	}
	cfg.IPv6SubnetMin, cfg.IPv6SubnetMax, err = bounds(network, cfg.IPv6SubnetLen, "IPv6", rc.IPv6SubnetMin, rc.IPv6SubnetMax)
	return err
}

// parseNetwork parses a network of the given family; host bits are masked with a warning,
// as flanneld masks them silently.
func (cfg *Config) parseNetwork(key, s string, v6 bool) (netip.Prefix, error) {
	family := "an IPv4"
	if v6 {
		family = "an IPv6"
	}
	network, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return netip.Prefix{}, invalid("%s: %q is not a CIDR network", key, s)
	case network.Addr().Is6() != v6 || network.Addr().Is4In6() || network.Addr().Zone() != "":
		return netip.Prefix{}, invalid("%s: %q is not %s network", key, s, family)
	case network.Masked() != network:
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s %q has host bits set: using %s (did you mean %s?)", key, s, network.Masked(), network.Masked()))
		network = network.Masked()
	}
	return network, nil
}

// subnetLen returns the configured subnet length (0 or absent: the default, def when the
// network is a /bigAt or larger, else its length + 2), checked to be at most maxLen and to
// leave at least four subnets.
func subnetLen(key string, v *int, network netip.Prefix, def, bigAt, maxLen int) (int, error) {
	n := network.Bits() + 2
	switch {
	case v != nil && *v != 0:
		n = *v
	case network.Bits() <= bigAt:
		n = def
	}
	if n > maxLen || n < 0 {
		return 0, invalid("%s %d out of range: it must be at most %d", key, n, maxLen)
	}
	if n < network.Bits()+2 {
		return 0, invalid("%s %d out of range: the network /%d must be able to accommodate at least four subnets (%s %d or more)", key, n, network.Bits(), key, network.Bits()+2)
	}
	return n, nil
}

// bounds returns the first and last subnet to hand out: by default the second subnet of
// the network and its last; the keys, when set (and not the unspecified address, which
// flanneld reads as unset), must be aligned subnet addresses inside the network. The keys
// are named with the family's prefix: "" (SubnetMin) or "IPv6" (IPv6SubnetMin).
func bounds(network netip.Prefix, bits int, family string, minVal, maxVal *string) (lo, hi netip.Addr, err error) {
	minKey, maxKey, netKey, lenKey := family+"SubnetMin", family+"SubnetMax", family+"Network", family+"SubnetLen"
	bl := network.Addr().BitLen()
	second, _ := ip.ToU128(network.Addr()).Add(ip.Size128(bits, bl))
	lo = ip.FromU128(second, bl)
	hi = netip.PrefixFrom(ip.LastAddr(network), bits).Masked().Addr()
	parse := func(key string, s *string, def netip.Addr) (netip.Addr, error) {
		if s == nil {
			return def, nil
		}
		a, err := netip.ParseAddr(*s)
		switch {
		case err == nil && a.IsUnspecified() && a.BitLen() == bl:
			return def, nil
		case err != nil || a.BitLen() != bl || a.Is4In6() || a.Zone() != "":
			return netip.Addr{}, invalid("%s %q is not an IPv%d address", key, *s, map[int]int{32: 4, 128: 6}[bl])
		case !network.Contains(a):
			return netip.Addr{}, invalid("%s %s is outside %s %s", key, a, netKey, network)
		case netip.PrefixFrom(a, bits).Masked().Addr() != a:
			return netip.Addr{}, invalid("%s %s is not aligned to %s /%d", key, a, lenKey, bits)
		}
		return a, nil
	}
	if lo, err = parse(minKey, minVal, lo); err != nil {
		return
	}
	if hi, err = parse(maxKey, maxVal, hi); err != nil {
		return
	}
	if lo.Compare(hi) > 0 {
		err = invalid("%s %s is above %s %s", minKey, lo, maxKey, hi)
	}
	return
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

// Contains reports whether an IPv4 lease subnet fits this config: inside Network with the
// configured length. Reservations may lie outside [SubnetMin, SubnetMax] and still fit.
func (c *Config) Contains(sn netip.Prefix) bool {
	return c.EnableIPv4 && fits(c.Network, c.SubnetLen, sn)
}

// ContainsIPv6 is Contains for an IPv6 lease subnet.
func (c *Config) ContainsIPv6(sn netip.Prefix) bool {
	return c.EnableIPv6 && fits(c.IPv6Network, c.IPv6SubnetLen, sn)
}

func fits(network netip.Prefix, bits int, sn netip.Prefix) bool {
	return sn.IsValid() && sn.Addr().BitLen() == network.Addr().BitLen() && !sn.Addr().Is4In6() &&
		sn.Bits() == bits && ip.IsNetworkAddress(sn) && network.Contains(sn.Addr())
}

// InRange reports whether an IPv4 subnet is one weft may hand out on its own: it fits the
// config and lies within [SubnetMin, SubnetMax].
func (c *Config) InRange(sn netip.Prefix) bool {
	return c.Contains(sn) && sn.Addr().Compare(c.SubnetMin) >= 0 && sn.Addr().Compare(c.SubnetMax) <= 0
}

// InRangeIPv6 is InRange for an IPv6 subnet.
func (c *Config) InRangeIPv6(sn netip.Prefix) bool {
	return c.ContainsIPv6(sn) && sn.Addr().Compare(c.IPv6SubnetMin) >= 0 && sn.Addr().Compare(c.IPv6SubnetMax) <= 0
}

// Fits reports whether a lease's subnets are exactly the families this config runs, each
// fitting its network: what a node's own lease must be.
func (c *Config) Fits(l Lease) bool {
	return c.EnableIPv4 == l.Subnet.IsValid() && c.EnableIPv6 == l.IPv6Subnet.IsValid() &&
		(!c.EnableIPv4 || c.Contains(l.Subnet)) && (!c.EnableIPv6 || c.ContainsIPv6(l.IPv6Subnet))
}

// Families names the address families the config runs: "ipv4", "dual-stack" or "ipv6".
func (c *Config) Families() string {
	switch {
	case c.EnableIPv4 && c.EnableIPv6:
		return "dual-stack"
	case c.EnableIPv6:
		return "ipv6"
	}
	return "ipv4"
}
