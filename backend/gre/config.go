package gre

import (
	"encoding/json"
	"fmt"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernelmode"
	"github.com/weftnet/weft/subnet"
)

// Mode says where GRE packets are encapsulated.
type Mode string

// The values of the Mode key: kernelmode's, which kernelmode.Decide picks between.
const (
	// ModeAuto uses the kernel's GRE device when the kernel has one (ip_gre) and the
	// userspace forwarder otherwise. It is the default.
	ModeAuto Mode = kernelmode.Auto
	// ModeKernel uses the kernel's GRE device and fails when the kernel has none.
	ModeKernel Mode = kernelmode.Kernel
	// ModeUserspace uses a TUN device and a raw IP socket (protocol 47), never the
	// kernel's GRE device.
	ModeUserspace Mode = kernelmode.Userspace
)

// Limits of the backend keys.
const (
	// minMTU is the smallest MTU IPv4 allows (RFC 791).
	minMTU = 68
	// maxMTU leaves room for the outer headers in the 16-bit IPv4 total length.
	maxMTU = 65535 - overhead
)

// Config is the gre part of the network config: its fields are the keys of the Backend
// object, matched case-insensitively (backend.DecodeKeys).
type Config struct {
	// Mode is "auto" (default), "kernel" or "userspace".
	Mode Mode
	// MTU is the device (and pod) MTU; 0 means the external interface's MTU − 24
	// (outer IPv4 20 + GRE 4), or − 44 in an IPv6-only network (outer IPv6 40 + GRE 4).
	// It must not exceed that.
	MTU int
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: gre backend: "+format, append([]any{subnet.ErrInvalidConfig}, args...)...)
}

// Validate checks a Backend object strictly, without touching the system. Errors wrap
// subnet.ErrInvalidConfig and name the offending key and value.
func Validate(raw json.RawMessage) error {
	_, err := ParseConfig(raw)
	return err
}

// ParseConfig decodes and checks a Backend object (nil or empty: all defaults). The MTU
// upper bound depends on the external interface and is checked by New.
func ParseConfig(raw json.RawMessage) (Config, error) {
	cfg := Config{Mode: ModeAuto}
	m, err := backend.DecodeKeys(raw, &cfg)
	if err != nil {
		return Config{}, invalid("%v", err)
	}
	switch cfg.Mode {
	case ModeAuto, ModeKernel, ModeUserspace:
	case "":
		return Config{}, invalid("key Mode: value %s is empty (known: %q, %q, %q)", backend.RawValue(m, "Mode"), ModeAuto, ModeKernel, ModeUserspace)
	default:
		return Config{}, invalid("key Mode: value %q is not one of %q, %q, %q", cfg.Mode, ModeAuto, ModeKernel, ModeUserspace)
	}
	if cfg.MTU != 0 && (cfg.MTU < minMTU || cfg.MTU > maxMTU) {
		return Config{}, invalid("key MTU: value %d is outside %d..%d (0 or absent: the interface MTU - %d, or - %d in an IPv6-only network)", cfg.MTU, minMTU, maxMTU, overhead, overhead6)
	}
	return cfg, nil
}

// podMTU returns the device (and pod) MTU for an external interface MTU and the
// encapsulation's overhead (overhead over IPv4, overhead6 over IPv6), checking the MTU
// key against it. It is pure.
func podMTU(cfg Config, extMTU, overhead int) (int, error) {
	largest := extMTU - overhead
	if cfg.MTU != 0 {
		if cfg.MTU > largest {
			return 0, invalid("key MTU: value %d is larger than the external interface's MTU %d minus the %d-byte GRE overhead (%d)",
				cfg.MTU, extMTU, overhead, largest)
		}
		return cfg.MTU, nil
	}
	if largest < minMTU {
		return 0, fmt.Errorf("gre backend: the external interface's MTU %d leaves a pod MTU of %d, below the minimum %d", extMTU, largest, minMTU)
	}
	return largest, nil
}
