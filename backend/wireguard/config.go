package wireguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernelmode"
	"github.com/weftnet/weft/subnet"
)

// Mode is flanneld's Mode key: which devices carry which address family, and which
// public address of a peer they send to (see layout). In an IPv4 network "separate",
// "auto" and "ipv4" all mean one device, flannel-wg, with IPv4 endpoints, and "ipv6" is
// refused by the config check (Type.CheckNetwork: Validate alone sees only the Backend
// object) and by New. With IPv6, "separate" runs flannel-wg-v6 for it; the others one device for all.
type Mode string

// The values of the Mode key, as flanneld spells them.
const (
	ModeSeparate Mode = "separate" // flanneld's default: one device per family
	ModeAuto     Mode = "auto"     // one device, the endpoint's family chosen per peer
	ModeIPv4     Mode = "ipv4"     // one device, IPv4 endpoints
	ModeIPv6     Mode = "ipv6"     // one device, IPv6 endpoints
)

// Implementation is weft's Implementation key: where WireGuard runs. It is a key of its
// own, not a value of Mode, because flanneld refuses a Mode it does not know while it
// ignores unknown keys: a config with "Implementation" stays usable by flanneld nodes.
type Implementation string

// The values of the Implementation key: kernelmode's, which kernelmode.Decide picks between.
const (
	// ImplAuto uses the kernel's WireGuard where the kernel has it and wireguard-go in
	// userspace otherwise. It is the default.
	ImplAuto Implementation = kernelmode.Auto
	// ImplKernel uses the kernel's WireGuard and fails where the kernel has none.
	ImplKernel Implementation = kernelmode.Kernel
	// ImplUserspace uses wireguard-go over a TUN device, never the kernel module.
	ImplUserspace Implementation = kernelmode.Userspace
)

// Defaults and limits of the backend keys (flanneld's defaults).
const (
	DefaultListenPort   = 51820
	DefaultListenPortV6 = 51821
	// overhead is what WireGuard adds over IPv4 as flanneld counts it: outer IPv4 20 (it
	// reserves 40, for IPv6) + UDP 8 + type 4 + receiver index 4 + counter 8 + tag 16.
	overhead = 80
	minMTU   = 68 // the smallest MTU IPv4 allows (RFC 791)
	maxMTU   = 65535 - overhead
	// maxKeepalive is the largest persistent keepalive interval WireGuard accepts (16 bits).
	maxKeepalive = 65535
)

// Config is the wireguard part of the network config: the keys of the Backend object.
type Config struct {
	// ListenPort is the UDP port every node listens on and sends to; default 51820.
	ListenPort int
	// ListenPortV6 is the UDP port of the IPv6 device flannel-wg-v6 (Mode separate in a
	// network with IPv6), the same on every node; default 51821.
	ListenPortV6 int
	// PSK is an optional pre-shared key (base64, 32 bytes) mixed into every handshake.
	PSK string
	// PersistentKeepaliveInterval, in seconds (flanneld reads a bare number), makes each
	// peer send a keepalive that often when idle, for NATs; 0 (the default) is off.
	PersistentKeepaliveInterval int
	// Mode is flanneld's address-family mode (see Mode); default "separate".
	Mode Mode
	// Implementation is weft's choice of kernel or userspace WireGuard; default "auto".
	Implementation Implementation
	// MTU is the device (and pod) MTU; 0 means the external interface's MTU − 80. It
	// must not exceed that.
	MTU int
}

// keys are the accepted Backend keys besides Type, matched case-insensitively as
// encoding/json (and flanneld) do.
var keys = []string{"ListenPort", "ListenPortV6", "PSK", "PersistentKeepaliveInterval", "Mode", "Implementation", "MTU"}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: wireguard backend: "+format, append([]any{subnet.ErrInvalidConfig}, args...)...)
}

// Validate checks a Backend object without touching the system (unknown keys are warnings,
// given by backends.ParseNetworkConfig). Errors wrap
// subnet.ErrInvalidConfig and name the offending key and value (never the PSK's value).
func Validate(raw json.RawMessage) error {
	_, err := ParseConfig(raw)
	return err
}

// ParseConfig decodes and checks a Backend object (nil or empty: all defaults). The MTU
// upper bound depends on the external interface and is checked by New.
func ParseConfig(raw json.RawMessage) (Config, error) {
	// PSK is decoded by hand, so that no error can quote a secret given in the wrong type.
	in := struct {
		ListenPort, ListenPortV6    int
		PSK                         json.RawMessage
		PersistentKeepaliveInterval int
		Mode                        Mode
		Implementation              Implementation
		MTU                         int
	}{ListenPort: DefaultListenPort, ListenPortV6: DefaultListenPortV6, Mode: ModeSeparate, Implementation: ImplAuto}
	m, err := backend.DecodeKeys(raw, &in)
	if err != nil {
		return Config{}, invalid("%v", err)
	}
	cfg := Config{ListenPort: in.ListenPort, ListenPortV6: in.ListenPortV6, PersistentKeepaliveInterval: in.PersistentKeepaliveInterval,
		Mode: in.Mode, Implementation: in.Implementation, MTU: in.MTU}
	if len(in.PSK) > 0 && string(in.PSK) != "null" {
		if err := json.Unmarshal(in.PSK, &cfg.PSK); err != nil {
			return Config{}, invalid("key PSK: the value is not a string")
		}
	}
	for _, p := range []struct {
		key string
		v   int
	}{{"ListenPort", cfg.ListenPort}, {"ListenPortV6", cfg.ListenPortV6}} {
		if p.v < 1 || p.v > 65535 {
			return Config{}, invalid("key %s: value %d is outside 1..65535", p.key, p.v)
		}
	}
	if cfg.PSK != "" {
		if _, err := parseKey(cfg.PSK); err != nil {
			// The value is a secret: name the key and the problem only.
			return Config{}, invalid("key PSK: the value is not a WireGuard key (%v); make one with `wg genpsk`", err)
		}
	}
	if k := cfg.PersistentKeepaliveInterval; k < 0 || k > maxKeepalive {
		return Config{}, invalid("key PersistentKeepaliveInterval: value %d is outside 0..%d (seconds; 0 is off)", k, maxKeepalive)
	}
	switch cfg.Mode {
	case ModeSeparate, ModeAuto, ModeIPv4, ModeIPv6:
	default:
		return Config{}, invalid("key Mode: value %s is not one of %q, %q, %q, %q (flanneld's address-family modes; for kernel or userspace WireGuard see the key Implementation)",
			backend.RawValue(m, "Mode"), ModeSeparate, ModeAuto, ModeIPv4, ModeIPv6)
	}
	switch cfg.Implementation {
	case ImplAuto, ImplKernel, ImplUserspace:
	default:
		return Config{}, invalid("key Implementation: value %s is not one of %q, %q, %q",
			backend.RawValue(m, "Implementation"), ImplAuto, ImplKernel, ImplUserspace)
	}
	if cfg.MTU != 0 && (cfg.MTU < minMTU || cfg.MTU > maxMTU) {
		return Config{}, invalid("key MTU: value %d is outside %d..%d (0 or absent: the interface MTU - %d)", cfg.MTU, minMTU, maxMTU, overhead)
	}
	return cfg, nil
}

// parseKey parses a base64 WireGuard key (32 bytes), tolerating surrounding white space.
// Its errors never contain the text parsed.
func parseKey(s string) (wgtypes.Key, error) {
	k, err := wgtypes.ParseKey(strings.TrimSpace(s))
	if err != nil {
		return wgtypes.Key{}, errors.New("not 32 bytes of standard base64")
	}
	return k, nil
}

// podMTU returns the device (and pod) MTU for an external interface MTU, checking the MTU
// key against it. It is pure.
func podMTU(cfg Config, extMTU int) (int, error) {
	largest := extMTU - overhead
	if cfg.MTU != 0 {
		if cfg.MTU > largest {
			return 0, invalid("key MTU: value %d is larger than the external interface's MTU %d minus the %d-byte WireGuard overhead (%d)",
				cfg.MTU, extMTU, overhead, largest)
		}
		return cfg.MTU, nil
	}
	if largest < minMTU {
		return 0, fmt.Errorf("wireguard backend: the external interface's MTU %d leaves a pod MTU of %d, below the minimum %d", extMTU, largest, minMTU)
	}
	return largest, nil
}
