package wireguard

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"time"

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
	// kick starts handshakes with the peers (new to this device) rather than at their
	// first packet (userspace: a restarted device has no sessions, and a peer that only
	// sends would wait up to 15 s for WireGuard's rekey timers). now: this device lost
	// sessions its peers still hold; else the two sides of a new pair must not both
	// initiate at once (userEngine.kick).
	kick(keys []wgtypes.Key, now bool)
	// done is closed when the device stops by itself (its TUN was deleted); nil when it
	// cannot.
	done() <-chan struct{}
	// close releases what the process holds. The link stays.
	close()
}

// userEngine is wireguard-go serving the persistent TUN.
type userEngine struct {
	dev  *device.Device
	self wgtypes.Key  // the device's public key
	uapi net.Listener // the configuration socket for wg; nil without one
	log  klog.Logger

	// mu guards closed, settling and timer, and serialises configure with the delayed
	// kicks, so that a kick never restarts a peer that configure removed.
	mu       sync.Mutex
	closed   bool
	settling map[wgtypes.Key]*settle // the pairs this node settles (see kick)
	timer    *time.Timer             // fires at the earliest settle.due
}

// settle is a pair this node, the one with the higher key, is settling: at due it
// restarts the peer and initiates; the first time whatever happened, then unless a
// handshake has completed since its last restart (kicked).
type settle struct {
	due      time.Time
	kicked   time.Time
	attempts int
}

// handshakeDelay is how long after a new pair of nodes learned of each other the node
// with the higher public key starts the handshake that settles the pair (see kick). The
// lower one's initiation, and any that crosses it, is answered within a round trip: well
// under a millisecond between namespaces, a few milliseconds on a loaded host. Each
// check of a settling handshake waits twice as long as the one before, up to
// maxSettleWait, so that a slow handshake on a starved host is not cut off by the next
// restart.
const (
	handshakeDelay = 250 * time.Millisecond
	maxSettleWait  = time.Second
)

// settleAttempts bounds the handshakes a node starts to settle one pair: at 0.25, 0.75,
// 1.75 and 2.75 s, inside the lower node's REKEY_TIMEOUT (5 s); the last is checked at
// 3.75 s. After them a peer that does not answer is left to WireGuard's own
// retransmissions, every 5 s.
const settleAttempts = 4

// openUserEngine opens a queue of the persistent TUN name (re-creating it if it is
// gone) and starts a wireguard-go device on it whose sockets are made in h's namespace.
// The device is configured with cfg and up. Unless socketDir is empty it serves the
// device's configuration socket there for wg (serveUAPI), calling changed after each
// use; a socket it cannot serve is logged and done without.
func openUserEngine(h *kernel.Handle, name string, mtu int, cfg wgtypes.Config, socketDir string, changed func(), log klog.Logger) (*userEngine, error) {
	log = log.WithValues("device", name)
	e := &userEngine{self: cfg.PrivateKey.PublicKey(), log: log, settling: map[wgtypes.Key]*settle{}}
	err := h.InNamespace(func() error {
		f, err := openTUN(name)
		if err != nil {
			return err
		}
		t, err := tun.CreateTUNFromFile(f, mtu)
		if err != nil {
			f.Close()
			return fmt.Errorf("start TUN %s: %w", name, err)
		}
		e.dev = device.NewDevice(t, &nsBind{Bind: conn.NewStdNetBind(), h: h}, wgLogger(log))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wireguard backend: %w", err)
	}
	if err := e.configure(cfg); err != nil {
		e.close()
		return nil, fmt.Errorf("wireguard backend: configure %s: %w", name, err)
	}
	if err := e.dev.Up(); err != nil {
		e.close()
		return nil, fmt.Errorf("wireguard backend: bring up wireguard-go on %s (listen port %d): %w", name, *cfg.ListenPort, err)
	}
	if socketDir != "" {
		ln, err := serveUAPI(socketDir, name, e.dev, changed, log)
		if err != nil {
			log.Info("No configuration socket for wg: `wg show` will not see this userspace device", "err", err)
		}
		e.uapi = ln
	}
	return e, nil
}

func (e *userEngine) configure(cfg wgtypes.Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dev.IpcSet(formatUAPI(cfg))
}

func (e *userEngine) peers() ([]wgtypes.Peer, error) {
	s, err := e.dev.IpcGet()
	if err != nil {
		return nil, err
	}
	return parseUAPIPeers(s)
}

// kick starts the handshakes with peers that have no session with this device.
//
// Two nodes that learn of each other at the same moment (both start, or one joins and
// both see the other's lease in the same instant) must not both initiate: the
// initiations cross, each node's handshake state is replaced by the responder's state of
// the other's initiation, the responses no longer match ("Received invalid response
// message"), and wireguard-go, which handles the two messages in parallel workers, can
// even keep a session that carries one direction only. Either way the next initiation
// comes after REKEY_TIMEOUT (5 s; Peer.SendHandshakeInitiation does nothing before), and
// pods wait that long. So only the node with the lower public key initiates at once. The
// other cannot simply stay quiet: its own packets to the peer make wireguard-go initiate
// (which may cross the lower one's initiation), and the lower one's initiation is dropped
// if it arrived before this node knew the peer. So after handshakeDelay it starts one
// clean handshake whatever happened: it restarts the peer (Stop, Start: that clears
// wireguard-go's handshake state and the REKEY_TIMEOUT limit on initiations) and
// initiates. Whatever happened includes a handshake that completed: after crossed
// initiations the higher node can hold a confirmed session that carries nothing, so a
// completed handshake proves nothing before this restart (TestHandshakeWhenStartedTogether
// stalled 2 of 30 rounds when the restart was skipped after one). The lower node
// initiates nothing more before REKEY_TIMEOUT, so this handshake cannot cross; packets of
// the peer in flight at that instant are lost, once. Should that handshake be lost too
// (its initiation or response dropped on a loaded host), the higher node checks again
// after twice the delay (up to maxSettleWait) and starts another if none completed since
// its restart, at most settleAttempts times (settleDue).
//
// With now, this device lost the sessions that its peers still hold (a restart, a
// re-created device): they will not initiate, so it initiates with every peer at once,
// and the node with the higher key still settles the pair after handshakeDelay, in case
// the peer learned of it as new too (its key changed across the restart).
func (e *userEngine) kick(keys []wgtypes.Key, now bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	due := time.Now().Add(handshakeDelay)
	for _, k := range keys {
		lower := bytes.Compare(e.self[:], k[:]) < 0
		if now || lower {
			if p := e.dev.LookupPeer(device.NoisePublicKey(k)); p != nil {
				_ = p.SendHandshakeInitiation(false)
			}
		}
		if !lower {
			e.settling[k] = &settle{due: due}
		}
	}
	e.armLocked()
}

// armLocked sets the timer to the earliest settle.due.
func (e *userEngine) armLocked() {
	var first time.Time
	for _, s := range e.settling {
		if first.IsZero() || s.due.Before(first) {
			first = s.due
		}
	}
	if first.IsZero() {
		return
	}
	if e.timer == nil {
		e.timer = time.AfterFunc(time.Until(first), e.settleDue)
	} else {
		e.timer.Reset(time.Until(first))
	}
}

// settleDue restarts and initiates with every peer being settled whose time has come:
// the first time unconditionally, then if it has had no handshake since its last
// restart. One read of the device serves all of them.
func (e *userEngine) settleDue() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	now := time.Now()
	var handshakes map[wgtypes.Key]time.Time
	for k, s := range e.settling {
		if s.due.After(now) {
			continue
		}
		p := e.dev.LookupPeer(device.NoisePublicKey(k))
		if p == nil { // removed since
			delete(e.settling, k)
			continue
		}
		if s.attempts > 0 {
			if handshakes == nil {
				handshakes = e.handshakesLocked()
			}
			if handshakes[k].After(s.kicked) {
				e.log.V(4).Info("Handshake with a new peer completed", "publicKey", k, "attempts", s.attempts)
				delete(e.settling, k)
				continue
			}
			if s.attempts == settleAttempts {
				e.log.Info("A new WireGuard peer answered none of the handshakes started to settle the pair; WireGuard retries every 5 s", "publicKey", k, "attempts", s.attempts)
				delete(e.settling, k)
				continue
			}
		}
		e.log.V(4).Info("Starting the handshake with a new peer", "publicKey", k, "attempt", s.attempts+1)
		p.Stop()
		p.Start()
		_ = p.SendHandshakeInitiation(false)
		s.kicked, s.due = now, now.Add(min(handshakeDelay<<(s.attempts+1), maxSettleWait))
		s.attempts++
	}
	e.armLocked()
}

// handshakesLocked reads when each peer last completed a handshake.
func (e *userEngine) handshakesLocked() map[wgtypes.Key]time.Time {
	ps, err := e.peers()
	if err != nil {
		e.log.V(1).Info("Reading the WireGuard peers' handshakes failed", "err", err)
		return map[wgtypes.Key]time.Time{}
	}
	m := make(map[wgtypes.Key]time.Time, len(ps))
	for _, p := range ps {
		m[p.PublicKey] = p.LastHandshakeTime
	}
	return m
}

func (e *userEngine) done() <-chan struct{} { return e.dev.Wait() }

// close stops the delayed kicks and the device.
func (e *userEngine) close() {
	e.mu.Lock()
	e.closed = true
	if e.timer != nil {
		e.timer.Stop()
	}
	e.mu.Unlock()
	if e.uapi != nil {
		e.uapi.Close()
	}
	e.dev.Close()
}

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
	c    *wgctrl.Client
	name string // the link
}

// openKernelEngine opens a wgctrl client in h's namespace and configures the link name.
func openKernelEngine(h *kernel.Handle, name string, cfg wgtypes.Config) (*kernelEngine, error) {
	var c *wgctrl.Client
	err := h.InNamespace(func() error {
		var err error
		c, err = wgctrl.New()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("wireguard backend: open wgctrl: %w", err)
	}
	e := &kernelEngine{c: c, name: name}
	if err := e.configure(cfg); err != nil {
		c.Close()
		return nil, fmt.Errorf("wireguard backend: configure %s: %w", name, err)
	}
	return e, nil
}

func (e *kernelEngine) configure(cfg wgtypes.Config) error {
	return e.c.ConfigureDevice(e.name, cfg)
}

func (e *kernelEngine) peers() ([]wgtypes.Peer, error) {
	d, err := e.c.Device(e.name)
	if err != nil {
		return nil, err
	}
	return d.Peers, nil
}

func (e *kernelEngine) kick([]wgtypes.Key, bool) {}
func (e *kernelEngine) done() <-chan struct{}    { return nil }
func (e *kernelEngine) close()                   { e.c.Close() }
