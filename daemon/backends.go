package daemon

import (
	"fmt"
	"sort"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/gre"
	"github.com/weftnet/weft/backend/hostgw"
	"github.com/weftnet/weft/backend/udp"
	"github.com/weftnet/weft/backend/vxlan"
	"github.com/weftnet/weft/subnet"
)

// Backends is the explicit table of backend types weft knows, by Backend.Type name.
func Backends() map[string]backend.Type {
	types := []backend.Type{
		hostgw.Type(),
		vxlan.Type(),
		udp.Type(),
		gre.Type(),
	}
	m := make(map[string]backend.Type, len(types))
	for _, t := range types {
		m[t.Name] = t
	}
	return m
}

// ParseNetworkConfig validates a raw <prefix>/config exactly as weftd does: flannel's keys
// and defaults (subnet.ParseConfig), a known backend type, and the backend's own keys.
// weftctl uses it before writing a config. Errors wrap subnet.ErrInvalidConfig.
func ParseNetworkConfig(raw []byte) (*subnet.Config, backend.Type, error) {
	cfg, err := subnet.ParseConfig(raw)
	if err != nil {
		return nil, backend.Type{}, err
	}
	types := Backends()
	bt, ok := types[cfg.BackendType]
	if !ok {
		names := make([]string, 0, len(types))
		for n := range types {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, backend.Type{}, fmt.Errorf("%w: Backend.Type %q is not a known backend (known: %v)", subnet.ErrInvalidConfig, cfg.BackendType, names)
	}
	if err := bt.Validate(cfg.Backend); err != nil {
		return nil, backend.Type{}, fmt.Errorf("%w: Backend (Type %q): %v", subnet.ErrInvalidConfig, cfg.BackendType, err)
	}
	return cfg, bt, nil
}
