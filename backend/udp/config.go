package udp

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

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

// Config is the udp part of the network config: the keys of the Backend object.
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
	if len(raw) == 0 || string(raw) == "null" {
		return cfg, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return Config{}, invalid("not a JSON object: %v", err)
	}
	for k := range m {
		if !knownKey(k) {
			hint := ""
			if strings.EqualFold(k, "MTU") {
				hint = "; the udp backend derives its MTU from the interface (MTU - 28), as flanneld does"
			}
			return Config{}, invalid("unknown key %q (known: Type, Port, Batch)%s", k, hint)
		}
	}
	if err := backend.StrictDecode(raw, &cfg); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Config{}, invalid("key %s: value %s is not %s", te.Field, rawValue(m, te.Field), jsonKind(te.Type.String()))
		}
		return Config{}, invalid("%v", err)
	}
	if cfg.Port < 1 || cfg.Port > maxPort {
		return Config{}, invalid("key Port: value %d is outside 1..%d", cfg.Port, maxPort)
	}
	return cfg, nil
}

// knownKey reports whether k is an accepted Backend key, matched case-insensitively as
// encoding/json (and flanneld) do; Type is matched exactly, as StrictDecode drops it.
func knownKey(k string) bool {
	return k == "Type" || strings.EqualFold(k, "Port") || strings.EqualFold(k, "Batch")
}

// rawValue returns the JSON text given for key (matched as encoding/json does).
func rawValue(m map[string]json.RawMessage, key string) string {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return string(v)
		}
	}
	return "?"
}

// jsonKind names a Go field type the way a config author thinks of it.
func jsonKind(goType string) string {
	switch goType {
	case "int":
		return "an integer"
	case "bool":
		return "true or false"
	}
	return goType
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
