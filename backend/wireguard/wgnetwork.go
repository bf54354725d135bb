package wireguard

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/subnet"
)

// wgNetwork is the backend's Network: the devices of the layout, each a wgLink — one
// (flannel-wg), or in Mode separate with both families two (flannel-wg and
// flannel-wg-v6), as flanneld's. Apply, Run, Close and Describe fan out to them; they
// share the kernel handle, key, MTU and peer settings, and nothing else: each has its
// own engine, lock, peers and repair loop.
type wgNetwork struct {
	links     []*wgLink // in layout order: flannel-wg first where it exists
	h         *kernel.Handle
	impl      Implementation
	reason    string // why auto chose userspace
	mode      Mode
	key       privateKey
	psk       bool
	mtu       int
	closeOnce sync.Once
}

var (
	_ backend.MemoryUser = (*wgNetwork)(nil)
	_ backend.Network    = (*wgNetwork)(nil)
	_ backend.Tunnel     = (*wgNetwork)(nil)
	_ backend.TunnelV6   = (*wgNetwork)(nil)
	_ backend.Describer  = (*wgNetwork)(nil)
)

// MemoryFloor implements backend.MemoryUser: wireguard-go's buffers for each userspace
// device (each has its own pools), nothing in the kernel.
func (n *wgNetwork) MemoryFloor() int64 {
	if n.impl == ImplUserspace {
		return int64(len(n.links)) * userspaceMemory
	}
	return 0
}

// MTU is the devices' (and pods') MTU, the same for every device as flanneld's.
func (n *wgNetwork) MTU() int { return n.mtu }

// TunnelPort: the first device's UDP port (ListenPort; ListenPortV6 in an IPv6-only
// network in Mode separate), so the firewall can admit it from peers only
// (--restrict-tunnel-port).
func (n *wgNetwork) TunnelPort() (string, int) { return "udp", n.links[0].port }

// TunnelPortV6 implements backend.TunnelV6: in Mode separate with both families the
// IPv6 tunnel rules match flannel-wg-v6's ListenPortV6; else 0 (TunnelPort's).
func (n *wgNetwork) TunnelPortV6() int {
	if len(n.links) > 1 {
		return n.links[1].port
	}
	return 0
}

// Apply gives each device the peer changes; a lease counts for each device by the
// families it carries. The errors of all devices are joined.
func (n *wgNetwork) Apply(ctx context.Context, events []subnet.Event) error {
	var errs []error
	for _, l := range n.links {
		errs = append(errs, l.apply(ctx, events))
	}
	return errors.Join(errs...)
}

// Run runs each device's repairs until ctx ends or Close is called, and returns nil.
func (n *wgNetwork) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, l := range n.links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Close stops the engines and releases the sockets. The devices, their addresses,
// routes and (kernel) peers stay, so that a restarted weftd adopts them. Idempotent.
func (n *wgNetwork) Close() error {
	var err error
	n.closeOnce.Do(func() {
		for _, l := range n.links {
			l.close()
		}
		err = n.h.Close()
	})
	return err
}

// setPeriod sets every device's period of full checks (before Run; for tests).
func (n *wgNetwork) setPeriod(d time.Duration) {
	for _, l := range n.links {
		l.period = d
	}
}

// Describe reports the devices, the implementation and why, the public key (never the
// private one), and the peers. The first device is Device; a second (flannel-wg-v6 in
// Mode separate) is in Info as deviceV6, with its listenPortV6 and
// peersWithHandshakeV6.
func (n *wgNetwork) Describe() backend.Description {
	d := backend.Description{
		Device: n.links[0].name,
		Info: map[string]string{
			"mode":       string(n.impl),
			"familyMode": string(n.mode),
			"listenPort": strconv.Itoa(n.links[0].port),
			"publicKey":  n.key.public().String(),
		},
		Peers: map[netip.Prefix]backend.PeerStatus{},
	}
	if n.reason != "" {
		d.Info["userspaceReason"] = n.reason
	}
	if n.psk {
		d.Info["presharedKey"] = "set"
	}
	for i, l := range n.links {
		suffix := ""
		if i > 0 {
			suffix = "V6"
			d.Info["deviceV6"] = l.name
			d.Info["listenPortV6"] = strconv.Itoa(l.port)
		}
		if hs := l.describe(d.Peers); hs != "" {
			d.Info["peersWithHandshake"+suffix] = hs
		}
	}
	return d
}
