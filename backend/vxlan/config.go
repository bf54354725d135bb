package vxlan

import (
	"encoding/json"
	"fmt"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// Limits and defaults of the backend keys.
const (
	defaultVNI = 1
	maxVNI     = 1<<24 - 1
	maxPort    = 65535
	// encapOverhead is what VXLAN adds to an IPv4 packet: outer IPv4 20 + UDP 8 + VXLAN 8
	// + inner Ethernet 14.
	encapOverhead = 50
	// minPodMTU is the smallest MTU IPv4 allows (RFC 791).
	minPodMTU = 68
)

// Config is the vxlan part of the network config: its fields are the keys of the Backend
// object, matched case-insensitively (backend.DecodeKeys).
type Config struct {
	VNI           int  // VXLAN network identifier, 1..16777215; default 1
	Port          int  // UDP destination port; 0 means the kernel's default (8472)
	GBP           bool // VXLAN group-based policy extension
	Learning      bool // let the device learn remote MACs (off, as in flanneld)
	DirectRouting bool // route directly, without VXLAN, to peers on the same L2 segment
	// MTU is the underlay MTU the device MTU is derived from (device and pod MTU = MTU
	// − 50), as in flanneld; 0 means the external interface's MTU.
	MTU int
	// ChecksumOffload: nil (absent) = automatic, off on kernels before 5.7; true = leave
	// the offload as the kernel set it; false = always switch it off.
	ChecksumOffload *bool
}

// Validate checks a Backend object strictly, without touching the system. Errors wrap
// subnet.ErrInvalidConfig and name the offending key and value.
func Validate(raw json.RawMessage) error {
	_, err := ParseConfig(raw)
	return err
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: vxlan backend: "+format, append([]any{subnet.ErrInvalidConfig}, args...)...)
}

// ParseConfig decodes and checks a Backend object (nil or empty: all defaults). The MTU
// upper bound depends on the external interface and is checked by New.
func ParseConfig(raw json.RawMessage) (Config, error) {
	cfg := Config{VNI: defaultVNI}
	if _, err := backend.DecodeKeys(raw, &cfg); err != nil {
		return Config{}, invalid("%v", err)
	}
	switch {
	case cfg.VNI < 1 || cfg.VNI > maxVNI:
		return Config{}, invalid("key VNI: value %d is outside 1..%d", cfg.VNI, maxVNI)
	case cfg.Port < 0 || cfg.Port > maxPort:
		return Config{}, invalid("key Port: value %d is outside 0..%d (0: kernel default 8472)", cfg.Port, maxPort)
	case cfg.MTU != 0 && cfg.MTU-encapOverhead < minPodMTU:
		return Config{}, invalid("key MTU: value %d leaves a pod MTU of %d after the %d-byte VXLAN overhead; the minimum is %d (MTU %d)",
			cfg.MTU, cfg.MTU-encapOverhead, encapOverhead, minPodMTU, minPodMTU+encapOverhead)
	}
	return cfg, nil
}

// underlayMTU is the MTU the tunnels may use on the underlay: the MTU key, which must not
// exceed the external interface's MTU, else that MTU.
func underlayMTU(cfg Config, extMTU int) (int, error) {
	if cfg.MTU == 0 {
		return extMTU, nil
	}
	if cfg.MTU > extMTU {
		return 0, invalid("key MTU: value %d is larger than the external interface's MTU %d", cfg.MTU, extMTU)
	}
	return cfg.MTU, nil
}

// podMTU returns the device (and pod) MTU for an external interface MTU, checking the MTU
// key against it. It is pure.
func podMTU(cfg Config, extMTU int) (int, error) {
	under, err := underlayMTU(cfg, extMTU)
	if err != nil {
		return 0, err
	}
	if under-encapOverhead < minPodMTU {
		return 0, fmt.Errorf("vxlan: the external interface's MTU %d leaves a pod MTU below %d", extMTU, minPodMTU)
	}
	return under - encapOverhead, nil
}

// podMTUv6 is podMTU for flannel-v6.<VNI>: the underlay MTU (the MTU key, else the
// external interface's) less the 70-byte VXLAN overhead over IPv6, at least IPv6's 1280.
// It is pure.
func podMTUv6(cfg Config, extMTU int) (int, error) {
	under, err := underlayMTU(cfg, extMTU)
	if err != nil {
		return 0, err
	}
	if under-encapOverheadV6 < minPodMTUv6 && cfg.MTU != 0 {
		return 0, invalid("key MTU: value %d leaves flannel-v6.%d an MTU of %d after the %d-byte VXLAN overhead over IPv6; IPv6 needs at least %d (MTU %d)",
			cfg.MTU, cfg.VNI, cfg.MTU-encapOverheadV6, encapOverheadV6, minPodMTUv6, minPodMTUv6+encapOverheadV6)
	}
	if under-encapOverheadV6 < minPodMTUv6 {
		return 0, fmt.Errorf("vxlan: an underlay MTU of %d leaves flannel-v6.%d an MTU of %d after the %d-byte VXLAN overhead over IPv6; IPv6 needs at least %d (underlay MTU %d)",
			under, cfg.VNI, under-encapOverheadV6, encapOverheadV6, minPodMTUv6, minPodMTUv6+encapOverheadV6)
	}
	return under - encapOverheadV6, nil
}
