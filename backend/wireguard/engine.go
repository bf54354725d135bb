package wireguard

import (
	"fmt"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/kernel"
)

// engine is one implementation's WireGuard device as the Network programs it. Calls are
// serialised by the Network's mutex.
type engine interface {
	// configure applies cfg (private key, port, peer changes) to the device.
	configure(cfg wgtypes.Config) error
	// peers reads the device's peers.
	peers() ([]wgtypes.Peer, error)
	// kick starts a handshake with each of the peers now, rather than at their first
	// packet (userspace: a restarted device has no sessions, and a peer that only sends
	// would wait up to 15 s for WireGuard's rekey timers).
	kick(keys []wgtypes.Key)
	// done is closed when the device stops by itself (its TUN was deleted); nil when it
	// cannot.
	done() <-chan struct{}
	// close releases what the process holds. The link stays.
	close()
}

// userEngine is wireguard-go serving the persistent TUN.
type userEngine struct {
	dev *device.Device
}

// openUserEngine opens a queue of the persistent TUN flannel-wg (re-creating it if it is
// gone) and starts a wireguard-go device on it whose sockets are made in h's namespace.
// The device is configured with cfg and up.
func openUserEngine(h *kernel.Handle, mtu int, cfg wgtypes.Config, log klog.Logger) (*userEngine, error) {
	var e *userEngine
	err := h.InNamespace(func() error {
		f, err := openTUN(DeviceName)
		if err != nil {
			return err
		}
		t, err := tun.CreateTUNFromFile(f, mtu)
		if err != nil {
			f.Close()
			return fmt.Errorf("start TUN %s: %w", DeviceName, err)
		}
		e = &userEngine{dev: device.NewDevice(t, &nsBind{Bind: conn.NewStdNetBind(), h: h}, wgLogger(log))}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wireguard backend: %w", err)
	}
	if err := e.configure(cfg); err != nil {
		e.close()
		return nil, fmt.Errorf("wireguard backend: configure %s: %w", DeviceName, err)
	}
	if err := e.dev.Up(); err != nil {
		e.close()
		return nil, fmt.Errorf("wireguard backend: bring up wireguard-go on %s (listen port %d): %w", DeviceName, *cfg.ListenPort, err)
	}
	return e, nil
}

func (e *userEngine) configure(cfg wgtypes.Config) error { return e.dev.IpcSet(formatUAPI(cfg)) }

func (e *userEngine) peers() ([]wgtypes.Peer, error) {
	s, err := e.dev.IpcGet()
	if err != nil {
		return nil, err
	}
	return parseUAPIPeers(s)
}

func (e *userEngine) kick(keys []wgtypes.Key) {
	for _, k := range keys {
		if p := e.dev.LookupPeer(device.NoisePublicKey(k)); p != nil {
			_ = p.SendHandshakeInitiation(false)
		}
	}
}

func (e *userEngine) done() <-chan struct{} { return e.dev.Wait() }
func (e *userEngine) close()                { e.dev.Close() }

// nsBind makes wireguard-go's UDP sockets in the network namespace of h, whichever
// thread opens them (wireguard-go re-opens them when the TUN goes down and up again).
// Once open, a socket works from any thread.
type nsBind struct {
	conn.Bind
	h *kernel.Handle
}

func (b *nsBind) Open(port uint16) (fns []conn.ReceiveFunc, actual uint16, err error) {
	err = b.h.InNamespace(func() error {
		var err error
		fns, actual, err = b.Bind.Open(port)
		return err
	})
	return fns, actual, err
}

// wgLogger sends wireguard-go's log to klog: its errors at V(1) (some are caused by
// packets from anyone, so they must not flood the default log), the rest at V(5).
func wgLogger(log klog.Logger) *device.Logger {
	log = log.WithName("wireguard-go")
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if v := log.V(5); v.Enabled() {
				v.Info(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) {
			if v := log.V(1); v.Enabled() {
				v.Info(fmt.Sprintf(format, args...))
			}
		},
	}
}

// kernelEngine is the kernel's WireGuard link, programmed through wgctrl (generic
// netlink).
type kernelEngine struct {
	c *wgctrl.Client
}

// openKernelEngine opens a wgctrl client in h's namespace and configures flannel-wg.
func openKernelEngine(h *kernel.Handle, cfg wgtypes.Config) (*kernelEngine, error) {
	var c *wgctrl.Client
	err := h.InNamespace(func() error {
		var err error
		c, err = wgctrl.New()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("wireguard backend: open wgctrl: %w", err)
	}
	e := &kernelEngine{c: c}
	if err := e.configure(cfg); err != nil {
		c.Close()
		return nil, fmt.Errorf("wireguard backend: configure %s: %w", DeviceName, err)
	}
	return e, nil
}

func (e *kernelEngine) configure(cfg wgtypes.Config) error {
	return e.c.ConfigureDevice(DeviceName, cfg)
}

func (e *kernelEngine) peers() ([]wgtypes.Peer, error) {
	d, err := e.c.Device(DeviceName)
	if err != nil {
		return nil, err
	}
	return d.Peers, nil
}

func (e *kernelEngine) kick([]wgtypes.Key)    {}
func (e *kernelEngine) done() <-chan struct{} { return nil }
func (e *kernelEngine) close()                { e.c.Close() }
