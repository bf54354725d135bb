package vxlan

import (
	"context"
	"fmt"
	"net/netip"
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
	spec   deviceSpec
	resync time.Duration
}

var _ backend.Backend = (*Backend)(nil)

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
	if ext.Iface == nil || !ext.IfaceAddr.Is4() || !ext.PublicIP.Is4() {
		return nil, fmt.Errorf("vxlan: the external interface needs an IPv4 interface address and public IP (have %v, %v)", ext.IfaceAddr, ext.PublicIP)
	}
	mtu, err := podMTU(cfg, ext.Iface.MTU)
	if err != nil {
		return nil, err
	}
	major, minor, err := kernel.KernelVersion()
	if err != nil {
		return nil, fmt.Errorf("vxlan: %w", err)
	}
	port := cfg.Port
	if port == 0 {
		port = defaultPort()
	}
	h, err := kernel.Open()
	if err != nil {
		return nil, fmt.Errorf("vxlan: %w", err)
	}
	log := env.Log.WithName("vxlan")
	b := &Backend{
		env: env,
		log: log,
		h:   h,
		ext: ext,
		cfg: cfg,
		spec: deviceSpec{
			name:      fmt.Sprintf("flannel.%d", cfg.VNI),
			vni:       cfg.VNI,
			mac:       vtepMAC(ext.PublicIP, cfg.VNI),
			mtu:       mtu,
			extIndex:  ext.Iface.Index,
			local:     ext.TunnelSource(),
			port:      port,
			learning:  cfg.Learning,
			gbp:       cfg.GBP,
			txCsumOff: needTxChecksumOff(major, minor, cfg.ChecksumOffload),
		},
		resync: defaultResync,
	}
	log.Info("VXLAN backend configured", "vni", cfg.VNI, "dstport", port, "gbp", cfg.GBP,
		"learning", cfg.Learning, "directRouting", cfg.DirectRouting, "mtu", mtu,
		"kernel", fmt.Sprintf("%d.%d", major, minor), "txChecksumOff", b.spec.txCsumOff)
	return b, nil
}

// Prepare creates or adopts flannel.<VNI> and returns the lease attributes:
// BackendType "vxlan" and BackendData {"VNI":<VNI>,"VtepMAC":"<mac>"}.
func (b *Backend) Prepare(ctx context.Context) (subnet.LeaseAttrs, error) {
	if err := ctx.Err(); err != nil {
		return subnet.LeaseAttrs{}, err
	}
	if _, _, err := ensureDevice(b.h, b.spec, false, b.log); err != nil {
		return subnet.LeaseAttrs{}, fmt.Errorf("vxlan: %w", err)
	}
	return subnet.LeaseAttrs{
		PublicIP:    b.ext.PublicIP,
		BackendType: Name,
		BackendData: marshalLeaseData(b.spec.vni, b.spec.mac),
	}, nil
}

// Activate puts <own subnet network address>/32 on the device, sets it up and returns the
// Network that programs peers.
func (b *Backend) Activate(ctx context.Context, own subnet.Lease) (backend.Network, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !own.Subnet.IsValid() || !own.Subnet.Addr().Is4() {
		return nil, fmt.Errorf("vxlan: own lease has no IPv4 subnet")
	}
	n := &network{
		env:     b.env,
		log:     b.log,
		h:       b.h,
		spec:    b.spec,
		extIdx:  b.ext.Iface.Index,
		direct:  b.cfg.DirectRouting,
		ownAddr: netip.PrefixFrom(own.Subnet.Masked().Addr(), 32),
		cidr:    b.env.Network.Network,
		resync:  b.resync,
		done:    make(chan struct{}),
		peers:   map[netip.Prefix]*peer{},
		gone:    map[netip.Prefix]*peer{},
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.ensureDeviceLocked(); err != nil {
		return nil, err
	}
	b.log.Info("VXLAN network active", "device", b.spec.name, "address", n.ownAddr, "mac", b.spec.mac)
	return n, nil
}

// Close releases the backend's sockets. Networks it activated must be closed first.
func (b *Backend) Close() error { return b.h.Close() }
