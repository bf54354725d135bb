package gre

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/tundev"
	"github.com/weftnet/weft/subnet"
)

// userNetwork is the userspace-mode data plane: the TUN, a raw GRE socket and a
// fastpath.Forwarder between them, with the peer table built from the leases.
type userNetwork struct {
	env     backend.Env // for OnRepair
	log     klog.Logger
	f       *fastpath.Forwarder
	tunOpts fastpath.TUNOptions // how the TUN's queue is opened, again when it is re-created
	local   netip.Addr          // the raw socket's address
	reason  string              // why userspace mode was chosen, for Describe

	mu         sync.Mutex     // guards dev.Index, peers, h, lastRepair
	dev        tundev.Device  // only Index changes, when the TUN is re-created
	peers      *peerSet       // accepted and ignored leases; the Forwarder holds the table
	h          *kernel.Handle // netlink in the TUN's namespace; nil after Close
	lastRepair string         // last repair outcome logged, so a lasting failure logs once

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
}

var (
	_ backend.Network        = (*userNetwork)(nil)
	_ backend.Tunnel         = (*userNetwork)(nil)
	_ backend.Describer      = (*userNetwork)(nil)
	_ backend.PacketCounter  = (*userNetwork)(nil)
	_ fastpath.StatsReporter = (*userNetwork)(nil)
)

// MTU is the TUN (and pod) MTU.
func (n *userNetwork) MTU() int { return n.dev.MTU }

// TunnelPort: GRE is IP protocol 47 and has no port.
func (n *userNetwork) TunnelPort() (string, int) { return "gre", 0 }

// Stats returns the forwarding counters.
func (n *userNetwork) Stats() fastpath.Stats { return n.f.Stats() }

// PacketStats returns the counters in the daemon's backend-neutral form.
func (n *userNetwork) PacketStats() backend.PacketStats { return n.f.Stats().Export() }

// peerTable builds the fast path's table: each peer's subnet and its public IP with port
// 0, as a raw socket reports senders.
func peerTable(s *peerSet) (*fastpath.PeerTable, error) {
	peers := make([]fastpath.Peer, 0, len(s.peers))
	for sn, pub := range s.peers {
		peers = append(peers, fastpath.Peer{Subnet: sn, Endpoint: netip.AddrPortFrom(pub, 0)})
	}
	return fastpath.NewPeerTable(peers)
}

// Apply folds peer events into the peer set and swaps the Forwarder's table once per
// call.
func (n *userNetwork) Apply(_ context.Context, events []subnet.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	dirty := false
	for _, e := range events {
		c := n.peers.apply(e)
		switch c.kind {
		case added:
			n.log.Info("Added peer", "subnet", c.subnet, "publicIP", c.publicIP)
		case updated:
			n.log.Info("Updated peer", "subnet", c.subnet, "publicIP", c.publicIP, "was", c.old)
		case removed:
			n.log.Info("Removed peer", "subnet", c.subnet, "publicIP", c.old)
		case ignored:
			n.log.Info("Ignoring peer lease", "subnet", c.subnet, "reason", c.reason)
		}
		dirty = dirty || c.kind != unchanged
	}
	if !dirty {
		return nil
	}
	t, err := peerTable(n.peers)
	if err != nil {
		// peerSet rejects overlaps, so this is a bug; keep the old table.
		return fmt.Errorf("gre backend: build peer table: %w", err)
	}
	n.f.SetPeers(t)
	return nil
}

// Run forwards packets and repairs the TUN until ctx ends or Close is called. It returns
// an error only when forwarding fails for good.
func (n *userNetwork) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	repairDone := make(chan struct{})
	go func() {
		defer close(repairDone)
		n.repairLoop(ctx)
	}()
	err := n.f.Run(ctx)
	cancel()
	<-repairDone
	return err
}

func (n *userNetwork) repairLoop(ctx context.Context) {
	t := time.NewTicker(repairPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.closed:
			return
		case <-t.C:
			n.repair()
		}
	}
}

// repair re-checks the TUN and fixes what drifted, logging each change of outcome once.
func (n *userNetwork) repair() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h == nil {
		return
	}
	faults, err := n.dev.Drift(n.h)
	if errors.Is(err, tundev.ErrGone) {
		// Deleted: the Forwarder's device loop finds its queue detached and re-creates
		// the TUN through reopenDevice, which also puts its configuration back.
		return
	}
	if err == nil && len(faults) > 0 {
		what := make([]string, len(faults))
		for i, f := range faults {
			what[i] = f.What
		}
		n.log.Info("Repairing TUN device", "device", TUNName, "drift", strings.Join(what, ", "))
		if err = n.dev.Ensure(n.h); err == nil {
			n.log.Info("Repaired TUN device", "device", TUNName)
			n.env.Repaired("device")
		}
	}
	outcome := ""
	if err != nil {
		outcome = err.Error()
		if outcome != n.lastRepair {
			n.log.Error(err, "Cannot repair TUN device; retrying", "device", TUNName, "every", repairPeriod)
		}
	}
	n.lastRepair = outcome
}

// reopenDevice is the Forwarder's Config.Reopen: it re-creates the TUN after someone
// deleted it — persistent, same name and options, in its namespace — and gives it back
// its MTU, link state, address and route before the Forwarder reads from it. Counted as
// a "device" repair; the Forwarder logs it.
func (n *userNetwork) reopenDevice() (fastpath.Device, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	tun, err := n.dev.Reopen(n.h, n.tunOpts, n.env.Repaired)
	if err != nil {
		return nil, err
	}
	return tun, nil
}

// Close stops forwarding and releases the TUN queue, the socket and the netlink handle.
// The TUN, its address and its route stay, so a restarted weftd adopts them. Idempotent.
func (n *userNetwork) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.closed)
		err = n.f.Close()
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.h != nil {
			err = errors.Join(err, n.h.Close())
			n.h = nil
		}
	})
	return err
}

// Describe reports the TUN, the mode and the peers in the forwarding table.
func (n *userNetwork) Describe() backend.Description {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := backend.Description{
		Device: TUNName,
		Info:   map[string]string{"mode": string(ModeUserspace), "local": n.local.String(), "offloads": n.f.Offloads()},
		Peers:  map[netip.Prefix]backend.PeerStatus{},
	}
	if n.reason != "" {
		d.Info["userspaceReason"] = n.reason
	}
	for sn := range n.peers.peers {
		d.Peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed}
	}
	for sn, reason := range n.peers.ignored {
		d.Peers[sn] = backend.PeerStatus{State: backend.PeerIgnored, Reason: reason}
	}
	return d
}
