package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/pkg/iface"
	"github.com/weftnet/weft/subnet"
)

// prepared is a backend built and prepared for one network config.
type prepared struct {
	cfg   *subnet.Config
	btype backend.Type
	be    backend.Backend
	attrs subnet.LeaseAttrs // to publish, PublicIP included
	ext   backend.ExternalInterface
}

// nodePublicIPs is a registry that stores operator-set public addresses for this node:
// Kubernetes mode's node-public-ip and node-public-ipv6 annotations (kube.Registry).
type nodePublicIPs interface {
	NodePublicIPs(ctx context.Context) (v4, v6 netip.Addr, err error)
}

// selectInterface chooses the external interface for the families cfg runs and shows it.
// As flanneld, a node-public-ip(v6) annotation stands in for --public-ip(v6).
func (d *Daemon) selectInterface(ctx context.Context, reg subnet.Registry, cfg *subnet.Config) (backend.ExternalInterface, error) {
	opts := withLog(d.cfg.Iface, d.log)
	opts.IPv4, opts.IPv6 = cfg.EnableIPv4, cfg.EnableIPv6
	if np, ok := reg.(nodePublicIPs); ok {
		v4, v6, err := np.NodePublicIPs(ctx)
		if err != nil && !errors.Is(err, subnet.ErrNotFound) {
			return backend.ExternalInterface{}, err
		}
		if v4.IsValid() {
			d.log.Info("Using the node's node-public-ip annotation as the public IP", "publicIP", v4, "insteadOf", opts.PublicIP)
			opts.PublicIP = v4.String()
		}
		if v6.IsValid() {
			d.log.Info("Using the node's node-public-ipv6 annotation as the public IPv6 address", "publicIPv6", v6, "insteadOf", opts.PublicIPv6)
			opts.PublicIPv6 = v6.String()
		}
	}
	ext, err := iface.Select(opts)
	if err != nil {
		return ext, err
	}
	d.view.mu.Lock()
	d.view.ext = ext
	d.view.mu.Unlock()
	kv := []any{"iface", ext.Iface.Name, "mtu", ext.Iface.MTU, "families", cfg.Families()}
	if cfg.EnableIPv4 {
		kv = append(kv, "ifaceAddr", ext.IfaceAddr, "publicIP", ext.PublicIP, "tunnelSource", ext.TunnelSource())
	}
	if cfg.EnableIPv6 {
		kv = append(kv, "ifaceAddrV6", ext.IfaceAddrV6, "publicIPv6", ext.PublicIPv6, "tunnelSourceV6", ext.TunnelSourceV6())
	}
	d.log.Info("Using interface", kv...)
	if note, warn := tunnelSourceNote(ext); warn {
		d.log.Info("Warning: " + note)
	} else if note != "" {
		d.log.Info(note)
	}
	return ext, nil
}

// prepare removes what other backends left, then builds and prepares the backend of cfg.
func (d *Daemon) prepare(ctx context.Context, cfg *subnet.Config, btype backend.Type, ext backend.ExternalInterface) (*prepared, error) {
	d.removeLeftovers(btype.Name, cfg, ext)
	be, err := btype.New(backend.Env{Ext: ext, Network: cfg, Log: d.log.WithName(btype.Name), OnRepair: d.metrics.Repaired})
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", btype.Name, err)
	}
	p := &prepared{cfg: cfg, btype: btype, be: be, ext: ext}
	if p.attrs, err = be.Prepare(ctx); err != nil {
		p.close()
		return nil, fmt.Errorf("backend %s: %w", btype.Name, err)
	}
	p.attrs.PublicIP, p.attrs.PublicIPv6 = netip.Addr{}, netip.Addr{}
	if cfg.EnableIPv4 {
		p.attrs.PublicIP = ext.PublicIP
	}
	if cfg.EnableIPv6 {
		p.attrs.PublicIPv6 = ext.PublicIPv6
	}
	return p, nil
}

// close releases what the backend holds, if it holds anything; nil-safe.
func (p *prepared) close() {
	if p == nil {
		return
	}
	if c, ok := p.be.(io.Closer); ok {
		_ = c.Close()
	}
}

// netConfigLog is the key/value list that logs a network config: the keys of the families
// it runs only.
func netConfigLog(cfg *subnet.Config) []any {
	kv := []any{"families", cfg.Families(), "backend", cfg.BackendType}
	if cfg.EnableIPv4 {
		kv = append(kv, "network", cfg.Network, "subnetLen", cfg.SubnetLen, "subnetMin", cfg.SubnetMin, "subnetMax", cfg.SubnetMax)
	}
	if cfg.EnableIPv6 {
		kv = append(kv, "ipv6Network", cfg.IPv6Network, "ipv6SubnetLen", cfg.IPv6SubnetLen,
			"ipv6SubnetMin", cfg.IPv6SubnetMin, "ipv6SubnetMax", cfg.IPv6SubnetMax)
	}
	return kv
}
