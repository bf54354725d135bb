package udp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/tundev"
	"github.com/weftnet/weft/subnet"
)

// resyncPeriod is how often Run checks flannel0 without being told of a change (flanneld
// never does).
const resyncPeriod = 30 * time.Second

// udpNetwork is the active udp data plane.
type udpNetwork struct {
	env     backend.Env // for OnRepair
	log     klog.Logger
	f       *fastpath.Forwarder
	tunOpts fastpath.TUNOptions // how flannel0's queue is opened, again when it is re-created
	listen  netip.AddrPort
	resync  time.Duration // resyncPeriod; shorter in tests

	mu         sync.Mutex     // guards dev.Index, peers, h, lastRepair
	dev        tundev.Device  // only Index changes, when flannel0 is re-created
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
func (n *udpNetwork) MTU() int { return n.dev.MTU }

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

// Run forwards packets and keeps flannel0's link state, address and route in place until
// ctx ends or Close is called: what someone else changes is put back as soon as the
// kernel reports it, and every resync period everything is checked anyway. It returns
// an error only when forwarding fails for good.
func (n *udpNetwork) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.mu.Lock()
	var changes <-chan kernel.Change
	var err error
	if n.h != nil {
		changes, err = n.h.Subscribe(ctx)
	}
	n.mu.Unlock()
	if err != nil && !errors.Is(err, kernel.ErrClosed) {
		n.log.Error(err, "Cannot watch kernel changes; checking the TUN device every period only", "period", n.resync)
	}
	repairDone := make(chan struct{})
	go func() {
		defer close(repairDone)
		w := kernel.Watcher{Relevant: n.relevant, Reconcile: n.repair, Period: n.resync, Log: n.log}
		w.Run(ctx, changes)
	}()
	go func() {
		select {
		case <-n.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	err = n.f.Run(ctx)
	cancel()
	<-repairDone
	return err
}

// relevant reports whether a kernel change may concern flannel0: a change of the link
// (found by name too), of its addresses, of a main-table route through it, or of a route
// to the Network through anything else.
func (n *udpNetwork) relevant(c kernel.Change) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch c.Kind {
	case kernel.LinkChange:
		return c.LinkIndex == n.dev.Index || c.LinkName == DeviceName
	case kernel.AddrChange:
		return c.LinkIndex == n.dev.Index
	case kernel.RouteChange:
		return c.Table == unix.RT_TABLE_MAIN && (c.LinkIndex == n.dev.Index || c.Prefix == n.dev.Network)
	}
	return false
}

// repair re-checks flannel0 and fixes what drifted, logging and counting each repair and
// logging a lasting failure once. It reports whether it found drift, and an error while
// flannel0 is not as wanted.
func (n *udpNetwork) repair() (drift bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h == nil {
		return false, nil
	}
	faults, err := n.dev.Drift(n.h)
	if errors.Is(err, tundev.ErrGone) {
		// Deleted: the Forwarder's device loop finds its queue detached and re-creates
		// flannel0 through reopenDevice, which also puts its configuration back.
		return false, nil
	}
	if err == nil && len(faults) > 0 {
		drift = true
		var what []string
		for _, f := range faults {
			what = append(what, f.What)
		}
		n.log.Info("Repairing TUN device changed by someone else", "device", DeviceName, "drift", strings.Join(what, ", "))
		err = n.dev.Ensure(n.h)
		if err == nil {
			seen := map[string]bool{}
			for _, f := range faults {
				if !seen[f.Kind] {
					seen[f.Kind] = true
					n.env.Repaired(f.Kind)
				}
			}
		}
	}
	outcome := ""
	if err != nil {
		outcome = err.Error()
		if outcome != n.lastRepair {
			n.log.Error(err, "Cannot repair TUN device; retrying", "device", DeviceName)
		}
	} else if n.lastRepair != "" {
		n.log.Info("TUN device in place again", "device", DeviceName)
	}
	n.lastRepair = outcome
	return drift, err
}

// reopenDevice is the Forwarder's Config.Reopen: it re-creates flannel0 after someone
// deleted it — a persistent TUN of the same name, opened with the same options, in
// flannel0's namespace — and gives it back its MTU, link state, address and route before
// the Forwarder reads from it. Counted as a "device" repair; the Forwarder logs it.
func (n *udpNetwork) reopenDevice() (fastpath.Device, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	tun, err := n.dev.Reopen(n.h, n.tunOpts, n.env.Repaired)
	if err != nil {
		return nil, err
	}
	return tun, nil
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
		Info:   map[string]string{"listen": n.listen.String(), "offloads": n.f.Offloads()},
		Peers:  map[netip.Prefix]backend.PeerStatus{},
	}
	for sn := range n.peers.leases {
		d.Peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed}
	}
	return d
}
