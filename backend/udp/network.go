package udp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/subnet"
)

// repairPeriod is how often Run re-checks flannel0 (flanneld never does).
const repairPeriod = 10 * time.Second

// udpNetwork is the active udp data plane.
type udpNetwork struct {
	env    backend.Env // for OnRepair
	log    klog.Logger
	f      *fastpath.Forwarder
	dev    deviceState
	listen netip.AddrPort

	mu         sync.Mutex     // guards peers, h, lastRepair
	peers      *peerSet       // the accepted peer leases; the Forwarder holds their table
	h          *kernel.Handle // netlink in flannel0's namespace; nil after Close
	lastRepair string         // last repair outcome logged, so a lasting failure logs once

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
}

var (
	_ backend.Network        = (*udpNetwork)(nil)
	_ fastpath.StatsReporter = (*udpNetwork)(nil)
	_ backend.PacketCounter  = (*udpNetwork)(nil)
)

// MTU is flannel0's MTU: the external interface's minus 28.
func (n *udpNetwork) MTU() int { return n.dev.mtu }

// Stats returns the forwarding counters.
func (n *udpNetwork) Stats() fastpath.Stats { return n.f.Stats() }

// PacketStats returns the counters in the daemon's backend-neutral form.
func (n *udpNetwork) PacketStats() backend.PacketStats { return n.f.Stats().Export() }

// Apply folds peer events into the peer set and swaps the Forwarder's table once per
// call. A lease that cannot be used is logged with its subnet and skipped.
func (n *udpNetwork) Apply(_ context.Context, events []subnet.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	dirty := false
	for _, e := range events {
		c := n.peers.apply(e)
		sn, pub := c.lease.Subnet, c.lease.Attrs.PublicIP
		switch c.kind {
		case added:
			n.log.Info("Peer added", "subnet", sn, "publicIP", pub)
		case updated:
			n.log.Info("Peer changed", "subnet", sn, "publicIP", pub)
		case removed:
			n.log.Info("Peer removed", "subnet", sn, "publicIP", pub)
		case rejected:
			n.log.Error(c.err, "Ignoring peer lease", "subnet", sn, "publicIP", pub)
			errs = append(errs, c.err)
		}
		if c.foreign {
			n.log.Info("Peer lease names another backend; accepted as flanneld's udp backend does, but that node may not speak udp",
				"subnet", sn, "publicIP", pub, "peerBackend", c.lease.Attrs.BackendType)
		}
		dirty = dirty || c.kind != unchanged
	}
	if dirty {
		t, err := n.peers.table()
		if err != nil {
			// peerSet rejects overlaps, so this is a bug; keep the old table.
			return errors.Join(append(errs, fmt.Errorf("udp backend: build peer table: %w", err))...)
		}
		n.f.SetPeers(t)
	}
	return errors.Join(errs...)
}

// Run forwards packets and repairs flannel0 until ctx ends or Close is called. It
// returns an error only when forwarding fails for good.
func (n *udpNetwork) Run(ctx context.Context) error {
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

func (n *udpNetwork) repairLoop(ctx context.Context) {
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

// repair re-checks flannel0 and fixes what drifted, logging each change of outcome once.
func (n *udpNetwork) repair() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h == nil {
		return
	}
	outcome := ""
	drift, err := n.dev.drift(n.h)
	if err == nil && drift != "" {
		n.log.Info("Repairing TUN device", "device", DeviceName, "drift", drift)
		err = n.dev.ensure(n.h)
		if err == nil {
			n.log.Info("Repaired TUN device", "device", DeviceName)
			n.env.Repaired("device")
		}
	}
	if err != nil {
		outcome = err.Error()
		if outcome != n.lastRepair {
			n.log.Error(err, "Cannot repair TUN device; retrying", "device", DeviceName, "every", repairPeriod)
		}
	}
	n.lastRepair = outcome
}

// Close stops forwarding and releases the TUN queue, the socket and the netlink handle.
// flannel0, its address and its route stay, so a restarted weftd adopts them. Idempotent.
func (n *udpNetwork) Close() error {
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

var _ backend.Describer = (*udpNetwork)(nil)

// Describe reports the TUN device and the peers in the forwarding table.
func (n *udpNetwork) Describe() backend.Description {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := backend.Description{
		Device: DeviceName,
		Info:   map[string]string{"listen": n.listen.String()},
		Peers:  map[netip.Prefix]backend.PeerStatus{},
	}
	for sn := range n.peers.leases {
		d.Peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed}
	}
	return d
}
