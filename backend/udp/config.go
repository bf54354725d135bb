package udp

import (
	"encoding/json"
	"fmt"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// Defaults and limits of the backend keys.
const (
	// DefaultPort is flanneld's udp port; every node must use the same one.
	DefaultPort = 8285
	maxPort     = 65535
	// encapOverhead is what the encapsulation adds: outer IPv4 20 + UDP 8 (flanneld: 28).
	encapOverhead = 28
	// minPodMTU is the smallest MTU IPv4 allows (RFC 791).
	minPodMTU = 68
)

// Config is the udp part of the network config: its fields are the keys of the Backend
// object, matched case-insensitively (backend.DecodeKeys).
// flanneld's udp backend knows only Port; Batch is weft's.
type Config struct {
	// Port is the UDP port the node listens on and sends to, on every node; default 8285.
	Port int
	// Batch moves many packets per system call (recvmmsg/sendmmsg and repeated TUN
	// reads); default true. false keeps one packet per system call, to measure the gain.
	Batch bool
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: udp backend: "+format, append([]any{subnet.ErrInvalidConfig}, args...)...)
}

// Validate checks a Backend object strictly, without touching the system. Errors wrap
// subnet.ErrInvalidConfig and name the offending key and value.
func Validate(raw json.RawMessage) error {
	_, err := ParseConfig(raw)
	return err
}

// ParseConfig decodes and checks a Backend object (nil or empty: all defaults).
func ParseConfig(raw json.RawMessage) (Config, error) {
	cfg := Config{Port: DefaultPort, Batch: true}
	if _, err := backend.DecodeKeys(raw, &cfg); err != nil {
		return Config{}, invalid("%v", err)
	}
	if cfg.Port < 1 || cfg.Port > maxPort {
		return Config{}, invalid("key Port: value %d is outside 1..%d", cfg.Port, maxPort)
	}
	return cfg, nil
}

// podMTU returns the TUN (and pod) MTU for an external interface MTU: flanneld's
// interface MTU − 28.
func podMTU(extMTU int) (int, error) {
	if extMTU-encapOverhead < minPodMTU {
		return 0, fmt.Errorf("udp backend: the external interface's MTU %d leaves a pod MTU of %d, below the minimum %d",
			extMTU, extMTU-encapOverhead, minPodMTU)
	}
	return extMTU - encapOverhead, nil
}
