package wireguard

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime/debug"
	"time"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/tundev"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
)

// Name is the Backend.Type value and the BackendType of wireguard leases.
const Name = "wireguard"

// errPrefix starts the backend's error messages.
const errPrefix = "wireguard backend"

// Type returns the wireguard entry for the daemon's table of backends.
func Type() backend.Type {
	return backend.Type{Name: Name, Validate: Validate, New: New, CheckPeerData: CheckPeerData, Keys: keys}
}

// wgBackend is the backend before a lease is held. Prepare loads the key and decides
// the implementation.
type wgBackend struct {
	env     backend.Env
	cfg     Config
	mtu     int
	keyFile string
	log     klog.Logger

	key    privateKey
	impl   Implementation // ImplKernel or ImplUserspace once Prepare succeeded
	reason string         // why auto chose userspace
	// resumed: Prepare found flannel-wg left by an earlier run, whose peers may still
	// hold sessions with it.
	resumed bool
}

var _ backend.Backend = (*wgBackend)(nil)

// New checks the config against the external interface and returns the backend. The
// private key file is $WIREGUARD_KEY_FILE, or /run/flannel/wgkey. It creates nothing.
func New(env backend.Env) (backend.Backend, error) {
	keyFile := DefaultKeyFile
	if p, ok := os.LookupEnv(KeyFileEnv); ok && p != "" {
		keyFile = p
	}
	return newBackend(env, keyFile)
}

func newBackend(env backend.Env, keyFile string) (*wgBackend, error) {
	if env.Network == nil {
		return nil, fmt.Errorf("%s: no network config", errPrefix)
	}
	cfg, err := ParseConfig(env.Network.Backend)
	if err != nil {
		return nil, err
	}
	if err := checkFamilies(env.Network, cfg.Mode); err != nil {
		return nil, err
	}
	ext := env.Ext
	if ext.Iface == nil || !ext.IfaceAddr.Is4() || !ext.PublicIP.Is4() {
		return nil, fmt.Errorf("%s: the external interface needs an IPv4 address and public IP (have %v, %v)", errPrefix, ext.IfaceAddr, ext.PublicIP)
	}
	mtu, err := podMTU(cfg, ext.Iface.MTU)
	if err != nil {
		return nil, err
	}
	log := env.Log.WithValues("backend", Name)
	log.Info("WireGuard backend configured", "implementation", cfg.Implementation, "mode", cfg.Mode, "listenPort", cfg.ListenPort,
		"mtu", mtu, "keyFile", keyFile, "psk", cfg.PSK != "", "persistentKeepalive", cfg.PersistentKeepaliveInterval)
	return &wgBackend{env: env, cfg: cfg, mtu: mtu, keyFile: keyFile, log: log}, nil
}

// checkFamilies checks the network's address families against Mode. An IPv4 network runs
// in every Mode but "ipv6" (IPv6 endpoints). A dual-stack network runs in Mode "auto" or
// "ipv4": one device, flannel-wg, whose peers' allowed IPs are both their subnets, as
// flanneld's in those modes. Refused, naming the keys: Mode "separate" (flanneld's
// default: a second device flannel-wg-v6 with IPv6 endpoints on ListenPortV6) or "ipv6"
// with EnableIPv6, and an IPv6-only network (EnableIPv4=false), which weft's wireguard
// does not carry yet. Errors wrap subnet.ErrInvalidConfig.
func checkFamilies(cfg *subnet.Config, mode Mode) error {
	const other = "vxlan, host-gw or gre backend"
	switch {
	case cfg.EnableIPv6 && !cfg.EnableIPv4:
		return fmt.Errorf("%w: %s needs IPv4 in the network: the network config sets EnableIPv4=false and EnableIPv6=true (an IPv6-only network), "+
			"which weft's wireguard does not carry; use the %s, or a dual-stack network (EnableIPv4 true) with Mode %q or %q",
			subnet.ErrInvalidConfig, errPrefix, other, ModeAuto, ModeIPv4)
	case cfg.EnableIPv6 && mode != ModeAuto && mode != ModeIPv4:
		return fmt.Errorf("%w: %s: key Mode: value %q with EnableIPv6=true: weft's wireguard carries a dual-stack network on one device, "+
			"in Mode %q or %q (Mode %q needs a second device with IPv6 endpoints, which weft's wireguard does not have); "+
			"set Mode to %q or %q on every node, or use the %s",
			subnet.ErrInvalidConfig, errPrefix, mode, ModeAuto, ModeIPv4, mode, ModeAuto, ModeIPv4, other)
	case mode == ModeIPv6:
		return fmt.Errorf("%w: %s: key Mode: value %q needs IPv6 endpoints, which weft's wireguard does not use (use %q, %q or %q: in an IPv4 network they are the same)",
			subnet.ErrInvalidConfig, errPrefix, mode, ModeSeparate, ModeAuto, ModeIPv4)
	}
	return nil
}

// Prepare loads (or, the first time, creates) the private key, decides the
// implementation and creates or adopts flannel-wg. In auto, a kernel without WireGuard
// means userspace (logged once, with the reason); Implementation kernel fails then with
// a *KernelWireGuardError. The lease attributes carry the public key as flanneld
// publishes it.
func (b *wgBackend) Prepare(ctx context.Context) (subnet.LeaseAttrs, error) {
	if err := ctx.Err(); err != nil {
		return subnet.LeaseAttrs{}, err
	}
	key, created, err := loadOrCreateKey(b.keyFile)
	if err != nil {
		return subnet.LeaseAttrs{}, err
	}
	if created {
		b.log.Info("Created a WireGuard private key", "keyFile", b.keyFile, "publicKey", key.public())
	} else if key.k != b.key.k {
		b.log.Info("Using the WireGuard private key kept in the key file", "keyFile", b.keyFile, "publicKey", key.public())
	}
	b.key = key
	h, err := kernel.Open()
	if err != nil {
		return subnet.LeaseAttrs{}, fmt.Errorf("%s: %w", errPrefix, err)
	}
	defer h.Close()
	var probe error
	if b.cfg.Implementation != ImplUserspace {
		probe = probeKernel(h)
	}
	impl, err := decideImplementation(b.cfg.Implementation, probe)
	if err != nil {
		return subnet.LeaseAttrs{}, fmt.Errorf("%s (Implementation %q): %w", errPrefix, b.cfg.Implementation, err)
	}
	if impl == ImplUserspace && b.cfg.Implementation == ImplAuto && b.reason == "" {
		b.reason = probe.Error()
		b.log.Info("WireGuard runs in userspace: the kernel has no WireGuard support, so weft runs wireguard-go on a TUN device; same wire protocol, more CPU per packet",
			"device", DeviceName, "reason", b.reason)
	}
	_, made, err := ensureDevice(h, impl, b.mtu, b.log)
	if err != nil {
		return subnet.LeaseAttrs{}, err
	}
	b.impl = impl
	b.resumed = !made
	attrs := subnet.LeaseAttrs{PublicIP: b.env.Ext.PublicIP, BackendType: Name, BackendData: backendData(key.public())}
	if b.env.Network.EnableIPv6 {
		// flanneld publishes the same {"PublicKey": ...} for the IPv6 side.
		attrs.PublicIPv6, attrs.BackendV6Data = b.env.Ext.PublicIPv6, backendData(key.public())
	}
	return attrs, nil
}

// Activate brings up the data plane of the implementation Prepare chose for the own
// lease: flannel-wg with the own subnet's network address and the route to the Network,
// and the device's key and port. Kernel mode keeps the peers the link has (a restart
// does not interrupt traffic); Apply and Run correct them.
func (b *wgBackend) Activate(ctx context.Context, own subnet.Lease) (backend.Network, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	network := b.env.Network.Network
	sn := own.Subnet
	if !sn.Addr().Is4() || !ip.IsNetworkAddress(sn) || !ip.Contains(network, sn) {
		return nil, fmt.Errorf("%s: own subnet %s is not an IPv4 subnet of %s", errPrefix, sn, network)
	}
	var d6 dev6
	if cfg := b.env.Network; cfg.EnableIPv6 {
		d6 = dev6{own: own.IPv6Subnet, network: cfg.IPv6Network}
		if !d6.own.Addr().Is6() || !ip.IsNetworkAddress(d6.own) || !ip.Contains(d6.network, d6.own) {
			return nil, fmt.Errorf("%s: own IPv6 subnet %s is not an IPv6 subnet of %s", errPrefix, d6.own, d6.network)
		}
	}
	if b.impl == "" {
		return nil, fmt.Errorf("%s: Activate before Prepare", errPrefix)
	}
	h, err := kernel.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", errPrefix, err)
	}
	n, err := b.activate(h, sn, network, d6)
	if err != nil {
		h.Close()
		return nil, err
	}
	b.log.Info("WireGuard network active", "implementation", b.impl, "device", DeviceName, "subnet", sn, "network", network,
		"ipv6Subnet", d6.own, "ipv6Network", d6.network, "listenPort", b.cfg.ListenPort, "mtu", b.mtu, "publicKey", b.key.public())
	if _, set := os.LookupEnv("GOMEMLIMIT"); set && b.impl == ImplUserspace {
		if limit := debug.SetMemoryLimit(-1); limit < userspaceMemory { // -1 reads the limit
			b.log.Info("GOMEMLIMIT is below what wireguard-go uses under load: the garbage collector will run all the time "+
				"and throughput drops several times; raise it, e.g. GOMEMLIMIT=256MiB",
				"limitMiB", limit>>20, "wantMiB", userspaceMemory>>20)
		}
	}
	return n, nil
}

// userspaceMemory is about what wireguard-go's packet buffers (64 KiB each, for TSO/GRO)
// take under a bulk TCP flow: 110–180 MiB of heap measured on a 2-core machine.
const userspaceMemory = 192 << 20

func (b *wgBackend) activate(h *kernel.Handle, own, network netip.Prefix, d6 dev6) (*wgNetwork, error) {
	n := &wgNetwork{
		log:      b.log,
		repaired: b.env.Repaired,
		h:        h,
		impl:     b.impl,
		reason:   b.reason,
		resumed:  b.resumed,
		mode:     b.cfg.Mode,
		key:      b.key,
		port:     b.cfg.ListenPort,
		params:   peerParams{keepalive: time.Duration(b.cfg.PersistentKeepaliveInterval) * time.Second},
		period:   repairPeriod,
		dev:      tundev.Device{Name: DeviceName, ErrPrefix: errPrefix, Own: own, Network: network, MTU: b.mtu},
		dev6:     d6,
		peers:    newPeerSet(uint16(b.cfg.ListenPort), b.key.public()),
		wake:     make(chan struct{}, 1),
		closed:   make(chan struct{}),
	}
	if b.cfg.PSK != "" {
		n.params.psk, _ = parseKey(b.cfg.PSK) // checked by ParseConfig
	}
	if d6.on() {
		n.peers.v6, n.peers.mode, n.peers.own4, n.peers.own6 = true, b.cfg.Mode, b.env.Ext.PublicIP, b.env.Ext.PublicIPv6
	}
	if b.impl == ImplKernel {
		n.peerPoll = kernelPeerPoll // kernel peers change without a notification
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.openEngineLocked(b.impl == ImplUserspace); err != nil {
		return nil, err
	}
	if err := n.dev.Ensure(h); err != nil {
		n.eng.close()
		return nil, err
	}
	if err := n.dev6.ensure(h, n.dev.Index); err != nil {
		n.eng.close()
		return nil, err
	}
	return n, nil
}
