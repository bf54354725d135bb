// Package backends is the explicit table of the backends weft knows and the validation of a
// network config against it. weftd builds its backend from this table, and weftctl
// validates a config with it before writing, so that both accept exactly the same configs.
//
// It only lists and validates: nothing here touches the system, and no backend registers
// itself from init(). It must not import the daemon, so that weftctl does not link it.
package backends

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/gre"
	"github.com/weftnet/weft/backend/hostgw"
	"github.com/weftnet/weft/backend/udp"
	"github.com/weftnet/weft/backend/vxlan"
	"github.com/weftnet/weft/backend/wireguard"
	"github.com/weftnet/weft/subnet"
)

// Types is the explicit table of backend types, by Backend.Type name.
func Types() map[string]backend.Type {
	types := []backend.Type{
		hostgw.Type(),
		vxlan.Type(),
		udp.Type(),
		gre.Type(),
		wireguard.Type(),
	}
	m := make(map[string]backend.Type, len(types))
	for _, t := range types {
		m[t.Name] = t
	}
	return m
}

// detail is a backend's config error without the "invalid network config: " it may start
// with, which ParseNetworkConfig's own error already says.
func detail(err error) string {
	return strings.TrimPrefix(err.Error(), subnet.ErrInvalidConfig.Error()+": ")
}

// notProvided names flanneld's backend types that weft has no backend for, with what a
// cluster moving to weft does instead. A config naming one is refused like any unknown type,
// but the error says why, since the config is valid for flanneld.
var notProvided = map[string]string{
	"ipip":        "switch the network to vxlan, or to weft's gre, before moving nodes to weftd",
	"ipsec":       "weft's wireguard backend encrypts instead",
	"alloc":       "it only hands out subnets; host-gw or vxlan also program the routes",
	"extension":   "it runs commands of the operator's for each lease; weft has no such hook",
	"tencent-vpc": "cloud VPC routes are not programmed by weft; use vxlan or host-gw",
	"ali-vpc":     "cloud VPC routes are not programmed by weft; use vxlan or host-gw",
	"aws-vpc":     "cloud VPC routes are not programmed by weft; use vxlan or host-gw",
	"gce":         "cloud VPC routes are not programmed by weft; use vxlan or host-gw",
}

// ParseNetworkConfig validates a raw <prefix>/config exactly as weftd does: flannel's keys
// and defaults (subnet.ParseConfig), a known backend type, the backend's own keys
// (Type.Validate), and whether the backend can run the network's address families
// (Type.CheckNetwork). Errors wrap subnet.ErrInvalidConfig.
func ParseNetworkConfig(raw []byte) (*subnet.Config, backend.Type, error) {
	cfg, err := subnet.ParseConfig(raw)
	if err != nil {
		return nil, backend.Type{}, err
	}
	types := Types()
	bt, ok := types[cfg.BackendType]
	if !ok && cfg.BackendType == "" {
		return nil, backend.Type{}, fmt.Errorf("%w: Backend has no Type (known: %v); flanneld refuses it too", subnet.ErrInvalidConfig, slices.Sorted(maps.Keys(types)))
	}
	if !ok {
		why := "is not a known backend"
		if hint, flannel := notProvided[cfg.BackendType]; flannel {
			why = "is a flanneld backend that weft does not provide (" + hint + ")"
		}
		return nil, backend.Type{}, fmt.Errorf("%w: Backend.Type %q %s (known: %v)",
			subnet.ErrInvalidConfig, cfg.BackendType, why, slices.Sorted(maps.Keys(types)))
	}
	if err := bt.Validate(cfg.Backend); err != nil {
		return nil, backend.Type{}, fmt.Errorf("%w: Backend (Type %q): %s", subnet.ErrInvalidConfig, cfg.BackendType, detail(err))
	}
	if bt.CheckNetwork != nil {
		if err := bt.CheckNetwork(cfg); err != nil {
			return nil, backend.Type{}, fmt.Errorf("%w: Backend (Type %q): %s", subnet.ErrInvalidConfig, cfg.BackendType, detail(err))
		}
	}
	for _, k := range backend.UnknownKeys(cfg.Backend, bt.Keys) {
		known := "none besides Type"
		if len(bt.Keys) > 0 {
			known = "Type, " + strings.Join(bt.Keys, ", ")
		}
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("unknown Backend key %q ignored: the %s backend does not read it (flanneld ignores it too; known: %s)", k, bt.Name, known))
	}
	return cfg, bt, nil
}
