package gre

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/tun"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernelmode"
	"github.com/weftnet/weft/backend/internal/tundev"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
)

// Name is the Backend.Type value and the BackendType of gre leases.
const Name = "gre"

// repairPeriod is how often the userspace Run re-checks the TUN's kernel state.
const repairPeriod = 5 * time.Second

// The daemon reads a userspace gre Network's counters with a type assertion to
// StatsReporter (or backend.PacketCounter). The aliases make the fast path's types
// reachable outside backend/.
type (
	// StatsReporter is implemented by the Network that Activate returns in userspace mode.
	StatsReporter = fastpath.StatsReporter
	// Stats is a snapshot of the forwarding counters.
	Stats = fastpath.Stats
	// DropReason indexes Stats.Drops; its String is the reason's stable name.
	DropReason = fastpath.DropReason
)

// Type returns the gre entry for the daemon's table of backends.
func Type() backend.Type {
	return backend.Type{Name: Name, Validate: Validate, CheckNetwork: checkNetwork, New: New, Keys: backend.KeyNames(&Config{})}
}

// greBackend is the gre backend before a lease is held. Prepare decides the mode.
type greBackend struct {
	env  backend.Env
	cfg  Config
	spec deviceSpec // the kernel device; spec.mtu is the MTU of either mode
	log  klog.Logger

	mode   Mode   // ModeKernel or ModeUserspace once Prepare succeeded; "" before
	reason string // why auto mode chose userspace
}

var _ backend.Backend = (*greBackend)(nil)

// New checks the config against the external interface and returns the backend. It
// creates nothing; whether the kernel has GRE is found out by Prepare.
func New(env backend.Env) (backend.Backend, error) {
	if env.Network == nil {
		return nil, fmt.Errorf("gre backend: no network config")
	}
	cfg, err := ParseConfig(env.Network.Backend)
	if err != nil {
		return nil, err
	}
	if err := checkFamilies(env.Network, cfg.Mode); err != nil {
		return nil, err
	}
	ext := env.Ext
	local, over := ext.TunnelSource(), overhead
	if env.Network.EnableIPv4 {
		if ext.Iface == nil || !ext.IfaceAddr.Is4() || !ext.PublicIP.Is4() {
			return nil, fmt.Errorf("gre backend: the external interface needs an IPv4 interface address and public IP (have %v, %v)", ext.IfaceAddr, ext.PublicIP)
		}
	} else {
		// IPv6-only: GRE over the IPv6 underlay.
		local, over = ext.TunnelSourceV6(), overhead6
		if ext.Iface == nil || !local.Is6() || local.Is4In6() || !ext.PublicIPv6.Is6() || ext.PublicIPv6.Is4In6() {
			return nil, fmt.Errorf("gre backend: an IPv6-only network needs an external interface with an IPv6 address and public IPv6 (have %v, %v)", local, ext.PublicIPv6)
		}
	}
	mtu, err := podMTU(cfg, ext.Iface.MTU, over)
	if err != nil {
		return nil, err
	}
	if cfg.Mode == ModeUserspace {
		if err := tun.Check(); err != nil {
			return nil, fmt.Errorf("gre backend in userspace mode needs a TUN device: %w", err)
		}
	}
	log := env.Log.WithValues("backend", Name)
	log.Info("GRE backend configured", "mode", cfg.Mode, "mtu", mtu, "local", local)
	return &greBackend{
		env:  env,
		cfg:  cfg,
		spec: deviceSpec{name: DeviceName, local: local, mtu: mtu},
		log:  log,
	}, nil
}

// Prepare decides the mode and creates or adopts its device: in kernel and auto mode it
// creates the GRE device, which tells whether the kernel has GRE; auto falls back to
// userspace when it has not (logged once, with the reason), kernel mode fails with
// ErrNoKernelGRE. The device of the other mode, if an earlier run left one, is deleted.
// A network with EnableIPv6 (dual-stack or IPv6-only) always runs in userspace mode,
// without probing the kernel: the kernel-mode data plane carries IPv4 only (auto logs
// why once).
// The lease attributes are BackendType "gre" and no BackendData or BackendV6Data, with
// PublicIP the external interface's when the network runs IPv4 (zero when IPv6-only) and
// PublicIPv6 set to the external interface's when it runs IPv6 (when it has one).
func (b *greBackend) Prepare(ctx context.Context) (subnet.LeaseAttrs, error) {
	if err := ctx.Err(); err != nil {
		return subnet.LeaseAttrs{}, err
	}
	h, err := kernel.Open()
	if err != nil {
		return subnet.LeaseAttrs{}, fmt.Errorf("gre backend: %w", err)
	}
	defer h.Close()
	var probe error
	var mode Mode
	switch {
	case !b.env.Network.EnableIPv4:
		// New refused Mode "kernel": no ip6gre kernel mode.
		mode = ModeUserspace
		if b.cfg.Mode == ModeAuto {
			b.reason = "the network is IPv6-only (EnableIPv4=false), which weft's gre carries in userspace mode only"
			b.log.Info("GRE runs in userspace: the network is IPv6-only and weft's kernel-mode gre carries IPv4 only; IPv6 packets travel in GRE (protocol type 0x86DD) over the IPv6 underlay with a raw IPv6 socket",
				"device", TUNName, "reason", b.reason)
		}
	case b.env.Network.EnableIPv6:
		// New refused Mode "kernel": the kernel-mode data plane carries IPv4 only.
		mode = ModeUserspace
		if b.cfg.Mode == ModeAuto {
			b.reason = "the network carries IPv6 (EnableIPv6), which weft's gre carries in userspace mode only"
			b.log.Info("GRE runs in userspace: the network is dual-stack and weft's kernel-mode gre carries IPv4 only; IPv6 packets travel in GRE (protocol type 0x86DD) over the IPv4 underlay",
				"device", TUNName, "reason", b.reason)
		}
	default:
		if b.cfg.Mode != ModeUserspace {
			_, _, probe = ensureKernelDevice(h, b.spec, false, b.log)
		}
		if mode, err = kernelmode.Decide(greDriver, b.cfg.Mode, probe); err != nil {
			return subnet.LeaseAttrs{}, fmt.Errorf("gre backend (Mode %q): %w", b.cfg.Mode, err)
		}
	}
	if mode == ModeUserspace && b.cfg.Mode == ModeAuto && probe != nil {
		b.reason = probe.Error()
		b.log.Info("GRE runs in userspace: the kernel has no GRE support (ip_gre), so weft encapsulates in userspace with a TUN device and a raw GRE socket; same wire format, more CPU per packet",
			"device", TUNName, "reason", b.reason)
	}
	if err := b.prepareMode(h, mode); err != nil {
		return subnet.LeaseAttrs{}, err
	}
	b.mode = mode
	attrs := subnet.LeaseAttrs{BackendType: Name}
	if b.env.Network.EnableIPv4 {
		attrs.PublicIP = b.env.Ext.PublicIP
	}
	if b.env.Network.EnableIPv6 && b.env.Ext.PublicIPv6.Is6() {
		attrs.PublicIPv6 = b.env.Ext.PublicIPv6
	}
	return attrs, nil
}

// prepareMode creates the userspace TUN (the kernel device exists already in kernel
// mode) and deletes the other mode's device.
func (b *greBackend) prepareMode(h *kernel.Handle, mode Mode) error {
	if mode == ModeKernel {
		deleted, err := deleteLinkIf(h, TUNName, isTUNLink)
		if err != nil {
			return fmt.Errorf("gre backend: remove the userspace-mode TUN: %w", err)
		}
		if deleted {
			b.log.Info("Deleted the TUN device of an earlier userspace-mode run", "device", TUNName)
		}
		return nil
	}
	if err := tun.Check(); err != nil {
		return fmt.Errorf("gre backend in userspace mode needs a TUN device: %w", err)
	}
	deleted, err := deleteLinkIf(h, DeviceName, isGRELink)
	if err != nil {
		return fmt.Errorf("gre backend: remove the kernel-mode GRE device: %w", err)
	}
	if deleted {
		b.log.Info("Deleted the GRE device of an earlier kernel-mode run", "device", DeviceName)
	}
	_, err = tundev.Create(h, TUNName, b.spec.mtu, errPrefix, b.log)
	return err
}

// Activate brings up the data plane of the mode Prepare chose for the own lease.
func (b *greBackend) Activate(ctx context.Context, own subnet.Lease) (backend.Network, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	network := b.env.Network.Network
	sn := own.Subnet
	if !b.env.Network.EnableIPv4 {
		network, sn = netip.Prefix{}, netip.Prefix{} // IPv6-only: the TUN carries no IPv4
	} else if !sn.Addr().Is4() || !ip.IsNetworkAddress(sn) || !ip.Contains(network, sn) {
		return nil, fmt.Errorf("gre backend: own subnet %s is not an IPv4 subnet of %s", sn, network)
	}
	if b.env.Network.EnableIPv6 {
		network6, sn6 := b.env.Network.IPv6Network, own.IPv6Subnet
		if !sn6.IsValid() || !sn6.Addr().Is6() || !ip.IsNetworkAddress(sn6) || !ip.Contains(network6, sn6) {
			return nil, fmt.Errorf("gre backend: own IPv6 subnet %s (lease %s) is not an IPv6 subnet of %s", sn6, own.Key(), network6)
		}
	}
	h, err := kernel.Open()
	if err != nil {
		return nil, fmt.Errorf("gre backend: %w", err)
	}
	var nw backend.Network
	switch b.mode {
	case ModeKernel:
		nw, err = b.activateKernel(h, sn)
	case ModeUserspace:
		nw, err = b.activateUserspace(h, sn, network, own.IPv6Subnet)
	default:
		err = fmt.Errorf("gre backend: Activate before Prepare")
	}
	if err != nil {
		h.Close()
		return nil, err
	}
	return nw, nil
}

func (b *greBackend) activateKernel(h *kernel.Handle, own netip.Prefix) (*kernelNetwork, error) {
	n := &kernelNetwork{
		env:     b.env,
		log:     b.log,
		h:       h,
		spec:    b.spec,
		cidr:    b.env.Network.Network,
		ownAddr: netip.PrefixFrom(own.Addr(), 32),
		resync:  kernelResync,
		done:    make(chan struct{}),
		peers:   newPeerSet(),
		failed:  map[netip.Prefix]string{},
		gone:    map[netip.Prefix]*leaving{},
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.ensureDeviceLocked(); err != nil {
		return nil, err
	}
	b.log.Info("GRE network active", "mode", ModeKernel, "device", b.spec.name, "address", n.ownAddr,
		"local", b.spec.local, "mtu", b.spec.mtu)
	return n, nil
}

// activateUserspace brings up the TUN (without IPv4 when own is zero: an IPv6-only
// network; with its IPv6 side when the network carries IPv6, own6 valid), the raw socket
// (IPv4, or IPv6 in an IPv6-only network) and the Forwarder.
func (b *greBackend) activateUserspace(h *kernel.Handle, own, network, own6 netip.Prefix) (*userNetwork, error) {
	d := tundev.Device{Name: TUNName, ErrPrefix: errPrefix, Own: own, Network: network, MTU: b.spec.mtu}
	if b.env.Network.EnableIPv6 {
		d.Own6, d.Network6 = own6, b.env.Network.IPv6Network
	}
	dev, err := tundev.Activate(h, d, b.log)
	if err != nil {
		return nil, err
	}
	batch := fastpath.OffloadBatchSize
	local := b.spec.local // TunnelSource, or TunnelSourceV6 in an IPv6-only network
	c, err := listenGRE(local, batch, b.log)
	if err != nil {
		return nil, err
	}
	plane, err := tundev.NewPlane(tundev.PlaneConfig{
		Device:     dev,
		Handle:     h,
		TUNOptions: tun.Options{Persist: true, Batch: batch, Offload: true, Log: b.log},
		Conn:       c,
		Resync:     repairPeriod,
		Repaired:   b.env.Repaired,
		Log:        b.log,
	})
	if err != nil {
		return nil, err
	}
	n := &userNetwork{
		log:    b.log,
		plane:  plane,
		addr6:  dev.Addr6(),
		local:  local,
		reason: b.reason,
		peers:  newLeasePeers(b.env.Network.EnableIPv4, b.env.Network.EnableIPv6),
	}
	b.log.Info("GRE network active", "mode", ModeUserspace, "device", TUNName, "subnet", own, "network", network,
		"ipv6Subnet", dev.Own6, "ipv6Network", dev.Network6,
		"local", local, "mtu", b.spec.mtu, "batch", plane.Forwarder().BatchSize(), "offloads", plane.Forwarder().Offloads())
	return n, nil
}
