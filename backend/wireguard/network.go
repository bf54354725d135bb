package wireguard

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/tundev"
	"github.com/weftnet/weft/subnet"
)

const (
	// repairPeriod is how often Run checks everything without being told of a change.
	repairPeriod = 30 * time.Second
	// kernelPeerPoll is how often the kernel link's peers are compared with the leases:
	// `wg set` sends no notification, and a peer deleted by hand must be back within a
	// second.
	kernelPeerPoll = 500 * time.Millisecond
)

// wgLink is one active WireGuard device of either implementation (flannel-wg, or flannel-wg-v6
// in Mode separate): the device with the own subnet's address and the route to the Network of
// each family it carries (a tundev.Device), and its peers, one per public key, built from the
// leases. wgNetwork runs one or two of them.
type wgLink struct {
	name     string // the device
	log      klog.Logger
	repaired func(kind string) // backend.Env.Repaired
	h        *kernel.Handle    // the Network's; closed by wgNetwork.Close
	impl     Implementation
	resumed  bool // the device outlived an earlier run: the first peers are kicked at once (guarded by mu)
	key      privateKey
	port     int
	params   peerParams
	period   time.Duration // between full checks
	peerPoll time.Duration // between peer checks (kernel mode); 0: only with the full checks
	// socketDir is where a userspace device serves its configuration socket for wg
	// (serveUAPI); "" for none.
	socketDir string

	wake      chan struct{} // buffered 1: a pass is due (the engine stopped, programming failed)
	closed    chan struct{} // closed by close
	closeOnce sync.Once

	// mu serialises Apply, the repair passes, describe and close, and guards the fields
	// below.
	mu         sync.Mutex
	dev        tundev.Device // zero Own: no IPv4, zero Own6: no IPv6; only Index changes, when the device is re-created
	eng        engine        // nil after close
	peers      *peerSet
	programmed map[wgtypes.Key]wantPeer // what the device was last given; nil: unknown, compare with the device
	bad        map[netip.Prefix]string  // leases that cannot be peers, with the reason
	applied    bool                     // Apply ran: a device peer of no lease is stale
	lastRepair string                   // the last repair failure logged, so a lasting one logs once
}

// baseConfig is the device-level configuration: key and port, and with replace every
// peer of want (and no other).
func (n *wgLink) baseConfig(replace bool, want map[wgtypes.Key]wantPeer) wgtypes.Config {
	k, port := n.key.k, n.port
	cfg := wgtypes.Config{PrivateKey: &k, ListenPort: &port, ReplacePeers: replace}
	if replace {
		cfg.Peers = diffPeers(want, nil, n.params, true)
	}
	return cfg
}

// openEngineLocked (re)creates or adopts the device and starts the implementation's
// engine on it, closing an earlier one. With replace the device gets exactly the peers
// of the leases (a fresh or re-created device); without, it keeps the peers it has (the
// kernel link of an earlier run) until Apply compares.
func (n *wgLink) openEngineLocked(replace bool) error {
	if n.eng != nil {
		n.eng.close()
		n.eng = nil
	}
	index, _, err := ensureDevice(n.h, n.name, n.impl, n.dev.MTU, n.log)
	if err != nil {
		return err
	}
	n.dev.Index = index
	want, bad := n.peers.desired()
	n.bad = bad
	cfg := n.baseConfig(replace, want)
	var eng engine
	if n.impl == ImplUserspace {
		eng, err = openUserEngine(n.h, n.name, n.dev.MTU, cfg, n.socketDir, n.poke, n.log)
	} else {
		eng, err = openKernelEngine(n.h, n.name, cfg)
	}
	if err != nil {
		return err
	}
	n.eng = eng
	n.programmed = nil
	if replace {
		n.programmed = want
		eng.kick(slices.Collect(maps.Keys(want)), true) // a re-created device lost its sessions
	}
	if done := eng.done(); done != nil {
		go func() {
			select {
			case <-done:
				n.poke()
			case <-n.closed:
			}
		}()
	}
	return nil
}

// poke asks Run for a pass soon.
func (n *wgLink) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// apply folds peer events into the lease set and gives the device the peers that
// changed. Leases that cannot be peers are logged with their subnet; a failure to
// program is retried by run.
func (n *wgLink) apply(_ context.Context, events []subnet.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.eng == nil {
		return nil
	}
	dirty := !n.applied
	n.applied = true
	var errs []error
	for _, e := range events {
		c := n.peers.apply(e)
		switch c.kind {
		case added:
			n.log.Info("Peer added", "device", n.name, "subnet", c.subnet, "endpoint", c.now.endpoint, "publicKey", c.now.key)
		case updated:
			n.log.Info("Peer changed", "device", n.name, "subnet", c.subnet, "endpoint", c.now.endpoint, "publicKey", c.now.key,
				"wasEndpoint", c.was.endpoint, "wasPublicKey", c.was.key)
		case removed:
			n.log.Info("Peer removed", "device", n.name, "subnet", c.subnet, "endpoint", c.was.endpoint, "publicKey", c.was.key)
		case rejected:
			n.log.Error(c.err, "Ignoring peer lease", "device", n.name, "subnet", c.subnet)
			errs = append(errs, fmt.Errorf("peer %s on %s: %w", c.subnet, n.name, c.err))
		}
		dirty = dirty || c.kind != unchanged
	}
	if dirty {
		if _, err := n.programLocked(false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// programLocked gives the device the peers the leases want. It compares with what it
// last programmed, or, when that is unknown, with the device. With repair, it compares
// with the device anyway, ignoring endpoints that WireGuard itself moved (roaming), and
// reports a difference as a repair. It returns whether it repaired drift.
func (n *wgLink) programLocked(repair bool) (drift bool, err error) {
	want, bad := n.peers.desired()
	for sn, why := range bad {
		if n.bad[sn] != why {
			n.log.Error(errors.New(why), "Peer lease cannot be programmed", "device", n.name, "subnet", sn)
		}
	}
	n.bad = bad
	var have []wgtypes.Peer
	endpoints := true
	if n.programmed == nil || repair {
		var err error
		if have, err = n.eng.peers(); err != nil {
			n.programmed = nil
			n.poke()
			return false, fmt.Errorf("%s: read the peers of %s: %w", errPrefix, n.name, err)
		}
		endpoints = n.programmed == nil
	} else {
		have = asPeers(n.programmed, n.params)
	}
	cfgs := diffPeers(want, have, n.params, endpoints)
	if len(cfgs) == 0 {
		n.programmed = want
		return false, nil
	}
	drift = repair && n.programmed != nil
	if drift {
		n.log.Info("Repairing WireGuard peers changed by someone else", "device", n.name, "changes", describePeerChanges(cfgs))
	}
	if err := n.eng.configure(wgtypes.Config{Peers: cfgs}); err != nil {
		n.programmed = nil
		n.poke()
		return drift, fmt.Errorf("%s: program %d peer changes on %s: %w", errPrefix, len(cfgs), n.name, err)
	}
	if drift {
		n.repaired("peer")
	}
	n.programmed = want
	var fresh []wgtypes.Key
	known := map[wgtypes.Key]bool{}
	for _, h := range have {
		known[h.PublicKey] = true
	}
	for _, c := range cfgs {
		if !c.Remove && !known[c.PublicKey] {
			fresh = append(fresh, c.PublicKey)
		}
	}
	// The first peers of a device that outlived a restart hold sessions it lost: they
	// will not initiate, so it does, at once.
	n.eng.kick(fresh, n.resumed)
	if len(fresh) > 0 {
		n.resumed = false
	}
	return drift, nil
}

// describePeerChanges says what a list of peer changes does, by key, for the log.
func describePeerChanges(cfgs []wgtypes.PeerConfig) string {
	var parts []string
	for _, c := range cfgs {
		if c.Remove {
			parts = append(parts, "remove "+c.PublicKey.String())
		} else {
			parts = append(parts, "set "+c.PublicKey.String())
		}
	}
	return strings.Join(parts, ", ")
}

// start opens the engine on the device and gives the device its addresses and routes.
// With replace the device gets exactly the peers of the leases (none yet).
func (n *wgLink) start(replace bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.openEngineLocked(replace); err != nil {
		return err
	}
	if err := n.dev.Ensure(n.h); err != nil {
		n.eng.close()
		n.eng = nil
		return err
	}
	return nil
}
