// Package hostgw is the host-gw backend: no encapsulation, just a route to each peer's
// subnet via the peer's public address on the external interface. It needs every node on
// one L2 segment; a peer that is not directly connected is reported, per peer, and skipped.
//
// It owns only the routes it adds for peers' subnets; it creates no device. Run puts back
// a route that someone else deletes or changes within a few tens of milliseconds (kernel
// change notifications, and a full check every 30 s); flanneld takes up to 10 s. Routes of
// that shape that no admitted peer needs (peers that left while weftd was down, an old
// address of a peer that moved) are swept: see staleRoute.
package hostgw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/subnet"
)

// Name is the Backend.Type value and the lease's BackendType.
const Name = "host-gw"

// resyncPeriod is how often Run checks all routes without being told of a change
// (flanneld: every 10 s, which is also how long a deleted route stays missing there).
const resyncPeriod = 30 * time.Second

// Type returns the host-gw backend's entry for the daemon's table.
func Type() backend.Type {
	return backend.Type{Name: Name, Validate: validate, New: newBackend}
}

func validate(raw json.RawMessage) error {
	var none struct{}
	if _, err := backend.DecodeKeys(raw, &none); err != nil {
		return fmt.Errorf("host-gw backend: %w", err)
	}
	return nil
}

type hostGW struct {
	env backend.Env
}

func newBackend(env backend.Env) (backend.Backend, error) {
	if env.Ext.PublicIP != env.Ext.IfaceAddr {
		return nil, fmt.Errorf("host-gw needs the public IP (%s) to be the interface's address (%s on %s): peers route to it directly",
			env.Ext.PublicIP, env.Ext.IfaceAddr, env.Ext.Iface.Name)
	}
	return &hostGW{env: env}, nil
}

func (b *hostGW) Prepare(context.Context) (subnet.LeaseAttrs, error) {
	return subnet.LeaseAttrs{BackendType: Name}, nil
}

func (b *hostGW) Activate(_ context.Context, own subnet.Lease) (backend.Network, error) {
	h, err := kernel.Open()
	if err != nil {
		return nil, err
	}
	var cidr netip.Prefix
	if b.env.Network != nil {
		cidr = b.env.Network.Network
	}
	return &network{
		h:      h,
		env:    b.env,
		ext:    b.env.Ext,
		cidr:   cidr,
		log:    b.env.Log.WithValues("backend", Name),
		resync: resyncPeriod,
		done:   make(chan struct{}),
		peers:  map[netip.Prefix]peer{},
		gone:   map[netip.Prefix]*leaving{},
		del:    (*kernel.Batch).DeleteRoute,
	}, nil
}

// peer is what the network knows of one peer.
type peer struct {
	lease subnet.Lease
	ok    bool // the route is in place; false: retried by Run
	err   string
}

// leaving is a removed peer whose route is not deleted yet.
type leaving struct {
	lease subnet.Lease
	err   string // the last delete error, "" before the first try
}

type network struct {
	h      *kernel.Handle
	env    backend.Env
	ext    backend.ExternalInterface
	cidr   netip.Prefix // the Network, which holds every peer subnet
	log    klog.Logger
	resync time.Duration

	done      chan struct{} // closed by Close; ends Run
	closeOnce sync.Once

	// mu guards the fields below and serialises Apply, Run's repairs and Close, so the
	// handle is never closed under a running pass.
	mu      sync.Mutex
	peers   map[netip.Prefix]peer     // admitted peers
	gone    map[netip.Prefix]*leaving // removed peers until their route is deleted
	applied bool                      // Apply ran: the peer set is complete, leftovers can be swept
	closed  bool

	// del deletes a peer's route: (*kernel.Batch).DeleteRoute, replaced by tests to fail.
	del func(b *kernel.Batch, dst netip.Prefix, linkIndex int) error
}

var _ backend.Network = (*network)(nil)

func (n *network) MTU() int { return n.ext.Iface.MTU }

// Apply programs peer changes. See backend.Network. One Batch serves the whole call, so N
// events cost O(N) whatever the size of the routing table; a peer already programmed with
// the same lease is left to Run's checks. The first call (the complete initial peer list)
// also sweeps leftovers (sweepLocked), and so does a call in which a peer that moved
// cannot be routed, so that its route via the old address goes at once.
func (n *network) Apply(_ context.Context, events []subnet.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	b := n.h.NewBatch()
	var errs []error
	sweep := !n.applied
	for _, e := range events {
		sn := e.Lease.Subnet
		old, known := n.peers[sn]
		switch e.Type {
		case subnet.Removed:
			if !known {
				continue
			}
			delete(n.peers, sn)
			l := &leaving{lease: old.lease}
			n.gone[sn] = l
			if err := n.removeLocked(b, sn, l); err != nil {
				errs = append(errs, err)
			}
		case subnet.Added:
			if known && old.ok && old.lease.Attrs.Equal(e.Lease.Attrs) {
				continue // nothing new; Run repairs drift
			}
			if l, leaving := n.gone[sn]; leaving {
				old, known = peer{lease: l.lease, ok: true}, true
				delete(n.gone, sn) // the route is the peer's again, or replaced, or swept
			}
			p := n.ensureLocked(b, e.Lease)
			n.peers[sn] = p
			if !p.ok {
				errs = append(errs, fmt.Errorf("peer %s: %s", sn, p.err))
				sweep = sweep || known && old.lease.Attrs.PublicIP != e.Lease.Attrs.PublicIP
			} else if !known || !old.lease.Attrs.Equal(e.Lease.Attrs) {
				n.log.Info("Peer route in place", "subnet", sn, "via", e.Lease.Attrs.PublicIP)
			}
		}
	}
	n.applied = true
	if sweep {
		if _, err := n.sweepLocked(b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeLocked deletes the route of a removed peer (recorded in gone). Only when that
// worked does the peer leave gone; otherwise Run retries, logging each new error once.
func (n *network) removeLocked(b *kernel.Batch, sn netip.Prefix, l *leaving) error {
	if err := n.del(b, sn, n.ext.Iface.Index); err != nil {
		err = fmt.Errorf("remove peer %s: %w", sn, err)
		if err.Error() != l.err {
			n.log.Error(err, "Removing peer route failed; will retry", "subnet", sn)
		}
		l.err = err.Error()
		return err
	}
	delete(n.gone, sn)
	n.log.Info("Peer left", "subnet", sn, "publicIP", l.lease.Attrs.PublicIP)
	return nil
}

// ensureLocked programs one peer's route and returns its new state, logging a failure
// only when it differs from the last one (so a retry loop does not flood the log).
func (n *network) ensureLocked(b *kernel.Batch, l subnet.Lease) peer {
	prev := n.peers[l.Subnet]
	p := peer{lease: l, ok: true}
	if err := n.ensureRoute(b, l); err != nil {
		p.ok, p.err = false, err.Error()
		if prev.err != p.err {
			n.log.Error(err, "Cannot route to peer", "subnet", l.Subnet, "publicIP", l.Attrs.PublicIP)
		}
	}
	return p
}

func (n *network) ensureRoute(b *kernel.Batch, l subnet.Lease) error {
	gw := l.Attrs.PublicIP
	direct, err := n.h.DirectlyConnected(gw, n.ext.Iface.Index)
	if err != nil {
		return err
	}
	if !direct {
		return fmt.Errorf("peer %s (%s) is not directly connected on %s: host-gw needs all nodes on one L2 segment",
			l.Subnet, gw, n.ext.Iface.Name)
	}
	return b.EnsureRoute(routeFor(l, n.ext.Iface.Index))
}

// Run keeps the peer routes in place until ctx ends or Close is called: a route that
// someone else deletes or changes is put back as soon as the kernel reports it (within a
// few tens of milliseconds), a link or address change on the external interface triggers
// a check, and every resyncPeriod everything is checked anyway. A check that finds
// everything in place writes nothing.
func (n *network) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	n.mu.Lock()
	var changes <-chan kernel.Change
	var err error
	if !n.closed {
		changes, err = n.h.Subscribe(ctx)
	}
	n.mu.Unlock()
	if err != nil {
		n.log.Error(err, "Cannot watch kernel changes; checking routes every period only", "period", n.resync)
	}
	w := kernel.Watcher{Relevant: n.relevant, Reconcile: n.reconcile, Period: n.resync, Log: n.log}
	w.Run(ctx, changes)
	return nil
}

// relevant reports whether a kernel change may concern the peer routes: a main-table
// route inside the Network or through the external interface, or a link or address
// change of the external interface (taking it down or removing its address deletes the
// routes without a notification for each).
func (n *network) relevant(c kernel.Change) bool {
	ext := n.ext.Iface.Index
	switch c.Kind {
	case kernel.RouteChange:
		return c.Table == unix.RT_TABLE_MAIN && (c.LinkIndex == ext || ip.Contains(n.cidr, c.Prefix))
	case kernel.LinkChange, kernel.AddrChange:
		return c.LinkIndex == ext
	}
	return false
}

// reconcile checks every peer's route with one dump (O(peers)) and puts back what is
// missing or was changed by someone else, retries the deletes of removed peers and, once
// Apply has run, sweeps leftovers. It reports whether it found drift (or leftovers), and
// an error while some peer's route is not in place or not deleted.
func (n *network) reconcile() (drift bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false, nil
	}
	b := n.h.NewBatch() // one dump for all peers
	var errs []error
	for sn, l := range n.gone {
		if err := n.removeLocked(b, sn, l); err != nil {
			errs = append(errs, err)
		}
	}
	for sn, p := range n.peers {
		if p.ok {
			ok, err := b.HasRoute(routeFor(p.lease, n.ext.Iface.Index))
			if err != nil {
				n.log.Error(err, "Cannot list routes to check peers")
				return drift, errors.Join(append(errs, err)...)
			}
			if ok {
				continue
			}
		}
		was := p.ok
		if was {
			drift = true
			n.log.Info("Repairing peer route changed or deleted by someone else", "subnet", sn, "via", p.lease.Attrs.PublicIP)
		}
		p = n.ensureLocked(b, p.lease)
		n.peers[sn] = p
		switch {
		case !p.ok:
			errs = append(errs, fmt.Errorf("peer %s: %s", sn, p.err))
		case !was:
			n.log.Info("Peer route in place after retry", "subnet", sn)
		default:
			n.env.Repaired("route")
		}
	}
	if n.applied {
		swept, err := n.sweepLocked(b)
		drift = drift || swept
		errs = append(errs, err)
	}
	return drift, errors.Join(errs...)
}

func routeFor(l subnet.Lease, linkIndex int) *netlink.Route {
	return &netlink.Route{Dst: ip.IPNet(l.Subnet), Gw: net.IP(l.Attrs.PublicIP.AsSlice()), LinkIndex: linkIndex}
}

// Close ends Run and releases the netlink sockets; the routes stay. Idempotent.
func (n *network) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.done)
		n.mu.Lock()
		defer n.mu.Unlock()
		n.closed = true
		err = n.h.Close()
	})
	return err
}

var _ backend.Describer = (*network)(nil)

// Describe reports each peer's route state.
func (n *network) Describe() backend.Description {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := backend.Description{Info: map[string]string{"interface": n.ext.Iface.Name}, Peers: map[netip.Prefix]backend.PeerStatus{}}
	for sn, p := range n.peers {
		switch {
		case !p.ok:
			d.Peers[sn] = backend.PeerStatus{State: backend.PeerError, Reason: p.err}
		default:
			d.Peers[sn] = backend.PeerStatus{State: backend.PeerProgrammed}
		}
	}
	return d
}
