package vxlan

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/subnet"
)

// Name is the backend's Type in the network config and the BackendType of its leases.
const Name = "vxlan"

// defaultResync is how often Run checks all kernel state without being told of a change.
const defaultResync = 30 * time.Second

// Type returns the vxlan entry for the daemon's table of backends.
func Type() backend.Type {
	return backend.Type{Name: Name, Validate: Validate, New: New, CheckPeerData: checkPeerData, Keys: backend.KeyNames(&Config{})}
}

// Backend is the vxlan backend before a lease is held. Its kernel sockets are bound to the
// network namespace New ran in; Close releases them.
type Backend struct {
	env    backend.Env
	log    klog.Logger
	h      *kernel.Handle
	ext    backend.ExternalInterface
	cfg    Config
	spec   deviceSpec // flannel.<VNI>; zero when the network runs no IPv4
	spec6  deviceSpec // flannel-v6.<VNI>; zero when the network runs no IPv6
	resync time.Duration
}

var _ backend.Backend = (*Backend)(nil)

// runs4 and runs6 say which families the network config runs; a config that enables
// neither runs IPv4, as subnet.Config.Families says.
func runs4(c *subnet.Config) bool { return c.EnableIPv4 || !c.EnableIPv6 }
func runs6(c *subnet.Config) bool { return c.EnableIPv6 }

// New checks the config against the external interface and the kernel and binds the
// backend to the calling thread's network namespace. It creates nothing.
func New(env backend.Env) (backend.Backend, error) {
	if env.Network == nil {
		return nil, fmt.Errorf("vxlan: no network config")
	}
	cfg, err := ParseConfig(env.Network.Backend)
	if err != nil {
		return nil, err
	}
	ext := env.Ext
	if ext.Iface == nil {
		return nil, fmt.Errorf("vxlan: no external interface")
	}
	major, minor, err := kernel.KernelVersion()
	if err != nil {
		return nil, fmt.Errorf("vxlan: %w", err)
	}
	port := cfg.Port
	if port == 0 {
		port = defaultPort()
	}
	base := deviceSpec{
		vni:       cfg.VNI,
		extIndex:  ext.Iface.Index,
		port:      port,
		learning:  cfg.Learning,
		gbp:       cfg.GBP,
		txCsumOff: needTxChecksumOff(major, minor, cfg.ChecksumOffload),
	}
	var spec, spec6 deviceSpec
	if runs4(env.Network) {
		if !ext.IfaceAddr.Is4() || !ext.PublicIP.Is4() {
			return nil, fmt.Errorf("vxlan: the external interface needs an IPv4 interface address and public IP (have %v, %v)", ext.IfaceAddr, ext.PublicIP)
		}
		mtu, err := podMTU(cfg, ext.Iface.MTU)
		if err != nil {
			return nil, err
		}
		spec = base
		spec.name, spec.mac, spec.mtu, spec.local = fmt.Sprintf("flannel.%d", cfg.VNI), vtepMAC(ext.PublicIP, cfg.VNI), mtu, ext.TunnelSource()
	}
	if runs6(env.Network) {
		local := ext.TunnelSourceV6()
		if !local.Is6() || !ext.PublicIPv6.Is6() || local.Is4In6() {
			return nil, fmt.Errorf("vxlan: IPv6 is enabled, so the external interface needs an IPv6 interface address and public IPv6 (have %v, %v)", ext.IfaceAddrV6, ext.PublicIPv6)
		}
		mtu, err := podMTUv6(cfg, ext.Iface.MTU)
		if err != nil {
			return nil, err
		}
		spec6 = base
		spec6.name, spec6.mac, spec6.mtu, spec6.local = fmt.Sprintf("flannel-v6.%d", cfg.VNI), vtepMAC(ext.PublicIPv6, cfg.VNI), mtu, local
	}
	h, err := kernel.Open()
	if err != nil {
		return nil, fmt.Errorf("vxlan: %w", err)
	}
	log := env.Log.WithName("vxlan")
	b := &Backend{env: env, log: log, h: h, ext: ext, cfg: cfg, spec: spec, spec6: spec6, resync: defaultResync}
	log.Info("VXLAN backend configured", "vni", cfg.VNI, "dstport", port, "gbp", cfg.GBP,
		"learning", cfg.Learning, "directRouting", cfg.DirectRouting, "families", env.Network.Families(),
		"mtu", spec.mtu, "mtuV6", spec6.mtu, "kernel", fmt.Sprintf("%d.%d", major, minor), "txChecksumOff", base.txCsumOff)
	return b, nil
}

// Prepare creates or adopts flannel.<VNI> (IPv4) and flannel-v6.<VNI> (IPv6) and returns
// the lease attributes as flanneld writes them: BackendType "vxlan", BackendData
// {"VNI":<VNI>,"VtepMAC":"<mac of flannel.<VNI>>"} when the network runs IPv4 and
// BackendV6Data, the same with the MAC of flannel-v6.<VNI>, when it runs IPv6.
func (b *Backend) Prepare(ctx context.Context) (subnet.LeaseAttrs, error) {
	if err := ctx.Err(); err != nil {
		return subnet.LeaseAttrs{}, err
	}
	attrs := subnet.LeaseAttrs{BackendType: Name}
	if b.spec.name != "" {
		if _, _, err := ensureDevice(b.h, b.spec, false, b.log); err != nil {
			return subnet.LeaseAttrs{}, fmt.Errorf("vxlan: %w", err)
		}
		attrs.PublicIP, attrs.BackendData = b.ext.PublicIP, marshalLeaseData(b.spec.vni, b.spec.mac)
	}
	if b.spec6.name != "" {
		if _, _, err := ensureDevice(b.h, b.spec6, false, b.log); err != nil {
			return subnet.LeaseAttrs{}, fmt.Errorf("vxlan: %w", err)
		}
		attrs.PublicIPv6, attrs.BackendV6Data = b.ext.PublicIPv6, marshalLeaseData(b.spec6.vni, b.spec6.mac)
	}
	return attrs, nil
}

// Activate puts <own subnet network address>/32 on flannel.<VNI> and <own IPv6 subnet
// network address>/128 on flannel-v6.<VNI>, sets them up and returns the Network that
// programs peers. The lease must have a subnet of each family the network runs.
func (b *Backend) Activate(ctx context.Context, own subnet.Lease) (backend.Network, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := &network{
		env:    b.env,
		log:    b.log,
		h:      b.h,
		extIdx: b.ext.Iface.Index,
		resync: b.resync,
		done:   make(chan struct{}),
	}
	if b.spec.name != "" {
		if !own.Subnet.IsValid() || !own.Subnet.Addr().Is4() {
			return nil, fmt.Errorf("vxlan: own lease %s has no IPv4 subnet", own.Key())
		}
		f := newFamily(false, b.spec, b.env.Network.Network, b.cfg.DirectRouting)
		f.setOwn(own.Subnet)
		n.fams = append(n.fams, f)
	}
	if b.spec6.name != "" {
		if !own.IPv6Subnet.IsValid() || !own.IPv6Subnet.Addr().Is6() {
			return nil, fmt.Errorf("vxlan: own lease %s has no IPv6 subnet", own.Key())
		}
		f := newFamily(true, b.spec6, b.env.Network.IPv6Network, b.cfg.DirectRouting)
		f.setOwn(own.IPv6Subnet)
		n.fams = append(n.fams, f)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, f := range n.fams {
		if _, err := n.ensureDeviceLocked(f); err != nil {
			return nil, err
		}
		b.log.Info("VXLAN network active", "device", f.spec.name, "address", f.ownAddr, "mac", f.spec.mac, "mtu", f.spec.mtu)
	}
	return n, nil
}

// families lists the address families n runs, for its kernel subscription.
func (n *network) families() []kernel.Family {
	var fs []kernel.Family
	for _, f := range n.fams {
		fs = append(fs, f.kernelFamily())
	}
	return fs
}

// Close releases the backend's sockets. Networks it activated must be closed first.
func (b *Backend) Close() error { return b.h.Close() }
