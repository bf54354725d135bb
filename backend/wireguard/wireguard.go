package wireguard

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernelmode"
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
	return backend.Type{Name: Name, Validate: Validate, CheckNetwork: checkNetwork, New: New, CheckPeerData: CheckPeerData, Keys: keys}
}

// wgBackend is the backend before a lease is held. Prepare loads the key and decides
// the implementation.
type wgBackend struct {
	env     backend.Env
	cfg     Config
	specs   []linkSpec // the devices (layout)
	mtu     int
	keyFile string
	// socketDir is where userspace devices serve their configuration socket for wg
	// ($WEFT_WIREGUARD_SOCKET_DIR, else /var/run/wireguard); "" for none (newBackend).
	socketDir string
	log       klog.Logger

	key    privateKey
	impl   Implementation // ImplKernel or ImplUserspace once Prepare succeeded
	reason string         // why auto chose userspace
	// resumed: the devices Prepare found left by an earlier run, whose peers may still
	// hold sessions with them.
	resumed map[string]bool
}

var _ backend.Backend = (*wgBackend)(nil)

// New checks the config against the external interface and returns the backend. The
// private key file is $WIREGUARD_KEY_FILE, or /run/flannel/wgkey. It creates nothing.
func New(env backend.Env) (backend.Backend, error) {
	keyFile := DefaultKeyFile
	if p, ok := os.LookupEnv(KeyFileEnv); ok && p != "" {
		keyFile = p
	}
	b, err := newBackend(env, keyFile)
	if err != nil {
		return nil, err
	}
	b.socketDir = socketDirFromEnv()
	return b, nil
}

func newBackend(env backend.Env, keyFile string) (*wgBackend, error) {
	if env.Network == nil {
		return nil, fmt.Errorf("%s: no network config", errPrefix)
	}
	cfg, err := ParseConfig(env.Network.Backend)
	if err != nil {
		return nil, err
	}
	specs, err := layout(env.Network, cfg)
	if err != nil {
		return nil, err
	}
	ext := env.Ext
	if ext.Iface == nil {
		return nil, fmt.Errorf("%s: no external interface", errPrefix)
	}
	has4 := ext.IfaceAddr.Is4() && ext.PublicIP.Is4()
	has6 := ext.IfaceAddrV6.Is6() && ext.PublicIPv6.Is6() && !ext.PublicIPv6.Is4In6()
	if err := checkExternal(specs, has4, has6); err != nil {
		return nil, fmt.Errorf("%w (have %v, %v; IPv6 %v, %v)", err, ext.IfaceAddr, ext.PublicIP, ext.IfaceAddrV6, ext.PublicIPv6)
	}
	mtu, err := podMTU(cfg, ext.Iface.MTU)
	if err != nil {
		return nil, err
	}
	log := env.Log.WithValues("backend", Name)
	kv := []any{"implementation", cfg.Implementation, "mode", cfg.Mode}
	for _, s := range specs {
		kv = append(kv, s.name, fmt.Sprintf("port %d, sends to %s", s.port, s.via))
	}
	log.Info("WireGuard backend configured", append(kv, "mtu", mtu, "keyFile", keyFile, "psk", cfg.PSK != "",
		"persistentKeepalive", cfg.PersistentKeepaliveInterval)...)
	return &wgBackend{env: env, cfg: cfg, specs: specs, mtu: mtu, keyFile: keyFile, log: log}, nil
}

// Prepare loads (or, the first time, creates) the private key, decides the
// implementation and creates or adopts the devices. A device of the other layout (a
// flannel-wg-v6 that this Mode does not use, or flannel-wg in an IPv6-only network in
// Mode separate), left by an earlier run, is deleted, and so are the IPv6 address and
// route that flannel-wg kept from a run in Mode auto when this Mode gives IPv6 to
// flannel-wg-v6. In auto, a kernel without WireGuard means userspace (logged once, with
// the reason); Implementation kernel fails then with an error matching
// ErrNoKernelWireGuard. The lease attributes carry the public key as flanneld publishes
// it: in BackendData when the network runs IPv4, in BackendV6Data when it runs IPv6 (the
// same key: both devices use the one key file).
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
		probe = probeKernel(h, b.specs[0].name)
	}
	impl, err := kernelmode.Decide(wgDriver, b.cfg.Implementation, probe)
	if err != nil {
		return subnet.LeaseAttrs{}, fmt.Errorf("%s (Implementation %q): %w", errPrefix, b.cfg.Implementation, err)
	}
	if impl == ImplUserspace && b.cfg.Implementation == ImplAuto && b.reason == "" {
		b.reason = probe.Error()
		b.log.Info("WireGuard runs in userspace: the kernel has no WireGuard support, so weft runs wireguard-go on a TUN device; same wire protocol, more CPU per packet",
			"device", b.specs[0].name, "reason", b.reason)
	}
	if err := b.removeUnused(h); err != nil {
		return subnet.LeaseAttrs{}, err
	}
	resumed := map[string]bool{}
	for _, s := range b.specs {
		index, made, err := ensureDevice(h, s.name, impl, b.mtu, b.log)
		if err != nil {
			return subnet.LeaseAttrs{}, err
		}
		resumed[s.name] = !made
		if cfg := b.env.Network; !s.v6 && cfg.EnableIPv6 && !made {
			dropped, err := dropIPv6(h, s.name, index, cfg.IPv6Network)
			if err != nil {
				return subnet.LeaseAttrs{}, err
			}
			if dropped {
				b.log.Info("Removed the IPv6 address and route an earlier run gave the device; this Mode carries IPv6 on "+DeviceNameV6, "device", s.name)
			}
		}
	}
	b.impl, b.resumed = impl, resumed
	attrs := subnet.LeaseAttrs{BackendType: Name}
	if b.env.Network.EnableIPv4 {
		attrs.PublicIP, attrs.BackendData = b.env.Ext.PublicIP, backendData(key.public())
	}
	if b.env.Network.EnableIPv6 {
		attrs.PublicIPv6, attrs.BackendV6Data = b.env.Ext.PublicIPv6, backendData(key.public())
	}
	return attrs, nil
}

// removeUnused deletes the WireGuard devices (wireguard links or TUNs) of weft's names
// that the layout does not use: an earlier run's under another Mode or families.
func (b *wgBackend) removeUnused(h *kernel.Handle) error {
	for _, name := range []string{DeviceName, DeviceNameV6} {
		if slices.ContainsFunc(b.specs, func(s linkSpec) bool { return s.name == name }) {
			continue
		}
		l, err := linkByName(h, name)
		if err != nil {
			return fmt.Errorf("%s: %w", errPrefix, err)
		}
		if l == nil || (!isWireGuard(l) && !isTUN(l)) {
			continue
		}
		if err := h.Netlink().LinkDel(l); err != nil {
			return fmt.Errorf("%s: delete %s, which Mode %q does not use here: %w", errPrefix, name, b.cfg.Mode, err)
		}
		b.log.Info("Deleted a WireGuard device this Mode does not use (an earlier run's)", "device", name, "mode", b.cfg.Mode)
	}
	return nil
}

// Activate brings up the data plane of the implementation Prepare chose for the own
// lease: each device with its own subnet's network address and the route to the
// network of each family it carries, and the devices' key and port. Kernel mode keeps
// the peers the links have (a restart does not interrupt traffic); Apply and Run correct
// them.
func (b *wgBackend) Activate(ctx context.Context, own subnet.Lease) (backend.Network, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg := b.env.Network
	if cfg.EnableIPv4 {
		if sn := own.Subnet; !sn.Addr().Is4() || !ip.IsNetworkAddress(sn) || !ip.Contains(cfg.Network, sn) {
			return nil, fmt.Errorf("%s: own subnet %s is not an IPv4 subnet of %s", errPrefix, sn, cfg.Network)
		}
	}
	if cfg.EnableIPv6 {
		if sn := own.IPv6Subnet; !sn.Addr().Is6() || !ip.IsNetworkAddress(sn) || !ip.Contains(cfg.IPv6Network, sn) {
			return nil, fmt.Errorf("%s: own IPv6 subnet %s is not an IPv6 subnet of %s", errPrefix, sn, cfg.IPv6Network)
		}
	}
	if b.impl == "" {
		return nil, fmt.Errorf("%s: Activate before Prepare", errPrefix)
	}
	h, err := kernel.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", errPrefix, err)
	}
	n, err := b.activate(h, own)
	if err != nil {
		h.Close()
		return nil, err
	}
	for _, l := range n.links {
		b.log.Info("WireGuard network active", "implementation", b.impl, "device", l.name, "subnet", l.dev.Own, "network", l.dev.Network,
			"ipv6Subnet", l.dev.Own6, "ipv6Network", l.dev.Network6, "listenPort", l.port, "mtu", b.mtu, "publicKey", b.key.public())
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); set && b.impl == ImplUserspace {
		if limit := debug.SetMemoryLimit(-1); limit < n.MemoryFloor() { // -1 reads the limit
			b.log.Info("GOMEMLIMIT is below what wireguard-go uses under load: the garbage collector will run all the time "+
				"and throughput drops several times; raise it, e.g. GOMEMLIMIT=256MiB per WireGuard device",
				"limitMiB", limit>>20, "wantMiB", n.MemoryFloor()>>20)
		}
	}
	return n, nil
}

// userspaceMemory is about what one wireguard-go device's packet buffers (64 KiB each,
// for TSO/GRO) take under a bulk TCP flow: 110–180 MiB of heap measured on a 2-core
// machine.
const userspaceMemory = 192 << 20

func (b *wgBackend) activate(h *kernel.Handle, own subnet.Lease) (*wgNetwork, error) {
	cfg := b.env.Network
	n := &wgNetwork{h: h, impl: b.impl, reason: b.reason, mode: b.cfg.Mode, key: b.key, psk: b.cfg.PSK != "", mtu: b.mtu}
	params := peerParams{keepalive: time.Duration(b.cfg.PersistentKeepaliveInterval) * time.Second}
	if b.cfg.PSK != "" {
		params.psk, _ = parseKey(b.cfg.PSK) // checked by ParseConfig
	}
	for _, s := range b.specs {
		l := &wgLink{
			name:      s.name,
			log:       b.log,
			repaired:  b.env.Repaired,
			h:         h,
			impl:      b.impl,
			resumed:   b.resumed[s.name],
			key:       b.key,
			port:      s.port,
			params:    params,
			period:    repairPeriod,
			socketDir: b.socketDir,
			dev:       tundev.Device{Name: s.name, ErrPrefix: errPrefix, MTU: b.mtu},
			peers:     newLinkPeerSet(s, b.cfg.Mode, b.key.public(), b.env.Ext.PublicIP, b.env.Ext.PublicIPv6),
			wake:      make(chan struct{}, 1),
			closed:    make(chan struct{}),
		}
		if s.v4 {
			l.dev.Own, l.dev.Network = own.Subnet, cfg.Network
		}
		if s.v6 {
			l.dev.Own6, l.dev.Network6 = own.IPv6Subnet, cfg.IPv6Network
		}
		if b.impl == ImplKernel {
			l.peerPoll = kernelPeerPoll // kernel peers change without a notification
		}
		if err := l.start(b.impl == ImplUserspace); err != nil {
			for _, started := range n.links {
				started.close()
			}
			return nil, err
		}
		n.links = append(n.links, l)
	}
	return n, nil
}
