package hostgw

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/pkg/wait"
	"github.com/weftnet/weft/subnet"
)

// routeTable is one family's main routing table as one pass sees it: a kernel.Batch of
// that family (see its doc: one dump per pass, writes only what differs). Tests wrap it.
type routeTable interface {
	HasRoute(want *netlink.Route) (bool, error)
	EnsureRoute(r *netlink.Route) error
	DeleteRoute(dst netip.Prefix, linkIndex int) error
	SweepRoutes(linkIndex int, stale func(kernel.ListedRoute) bool) ([]kernel.ListedRoute, error)
}

var _ routeTable = (*kernel.Batch)(nil)

// pass is the routing tables of one Apply or reconcile, a kernel.Batch per family; each
// is read at most once.
type pass struct {
	v4, v6 *kernel.Batch
}

func (n *network) newPassLocked() *pass {
	return &pass{v4: n.h.NewBatch(), v6: n.h.NewFamilyBatch(kernel.IPv6)}
}

// table returns the table of dst's family.
func (p *pass) table(dst netip.Prefix) *kernel.Batch {
	if dst.Addr().Is4() {
		return p.v4
	}
	return p.v6
}

// Apply programs peer changes. See backend.Network. One pass serves the whole call, so N
// events cost O(N) whatever the size of the routing tables; a peer already programmed
// with the same lease is left to Run's checks. Each family the network runs that the
// lease has gets its route. The first call (the complete initial peer list) also sweeps
// leftovers (sweepLocked), and so does a call in which a peer that moved cannot be
// routed, so that its route via the old address goes at once.
func (n *network) Apply(_ context.Context, events []subnet.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return kernel.ErrClosed
	}
	p := n.newPassLocked()
	var errs []error
	sweep := !n.applied
	for _, e := range events {
		key := e.Lease.Key()
		old, known := n.peers[key]
		switch e.Type {
		case subnet.Removed:
			if !known {
				continue
			}
			delete(n.peers, key)
			for _, w := range routesOf(old, n.v4, n.v6) {
				if r, ok := n.routes[w.dst]; !ok || r.key != key {
					continue // another peer's now
				}
				delete(n.routes, w.dst)
				l := &leaving{lease: old}
				n.gone[w.dst] = l
				if err := n.removeLocked(p, w.dst, l); err != nil {
					errs = append(errs, err)
				}
			}
		case subnet.Added:
			ws := routesOf(e.Lease, n.v4, n.v6)
			if known && old.Attrs.Equal(e.Lease.Attrs) && n.inPlaceLocked(key, ws) {
				continue // nothing new; Run repairs drift
			}
			n.peers[key] = e.Lease
			for _, w := range ws {
				prev, had := n.routes[w.dst]
				if l, leaving := n.gone[w.dst]; leaving {
					prev, had = peerRoute{gw: gwOf(l.lease, w.dst), ok: true}, true
					delete(n.gone, w.dst) // the route is a peer's again, or replaced, or swept
				}
				r := n.ensureLocked(p, key, w, prev)
				n.routes[w.dst] = r
				if !r.ok {
					errs = append(errs, fmt.Errorf("peer %s: %s", w.dst, r.err))
					sweep = sweep || had && prev.gw != w.gw
				} else if !had || prev.gw != w.gw || prev.key != key {
					n.log.Info("Peer route in place", "subnet", w.dst, "via", w.gw)
				}
			}
		}
	}
	n.applied = true
	if sweep {
		if _, err := n.sweepLocked(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// gwOf returns the public address of l of dst's family.
func gwOf(l subnet.Lease, dst netip.Prefix) netip.Addr {
	if dst.Addr().Is4() {
		return l.Attrs.PublicIP
	}
	return l.Attrs.PublicIPv6
}

// inPlaceLocked reports whether every route in ws is the peer key's and in place.
func (n *network) inPlaceLocked(key string, ws []wanted) bool {
	for _, w := range ws {
		if r, ok := n.routes[w.dst]; !ok || !r.ok || r.key != key || r.gw != w.gw {
			return false
		}
	}
	return true
}

// removeLocked deletes the route of a removed peer (recorded in gone). Only when that
// worked does the route leave gone; otherwise Run retries, logging each new error once.
func (n *network) removeLocked(p *pass, dst netip.Prefix, l *leaving) error {
	if err := n.del(p.table(dst), dst, n.ext.Iface.Index); err != nil {
		err = fmt.Errorf("remove peer %s: %w", dst, err)
		if err.Error() != l.err {
			n.log.Error(err, "Removing peer route failed; will retry", "subnet", dst)
		}
		l.err = err.Error()
		return err
	}
	delete(n.gone, dst)
	n.log.Info("Peer left", "subnet", dst, "publicIP", gwOf(l.lease, dst))
	return nil
}

// ensureLocked programs one peer route and returns its new state, logging a failure only
// when it differs from prev's (so a retry loop does not flood the log).
func (n *network) ensureLocked(p *pass, key string, w wanted, prev peerRoute) peerRoute {
	r := peerRoute{key: key, gw: w.gw, ok: true}
	if err := n.ensureRoute(p, w); err != nil {
		r.ok, r.err = false, err.Error()
		if prev.err != r.err {
			n.log.Error(err, "Cannot route to peer", "subnet", w.dst, "publicIP", w.gw)
		}
	}
	return r
}

func (n *network) ensureRoute(p *pass, w wanted) error {
	family := "IPv4"
	if w.dst.Addr().Is6() {
		family = "IPv6"
	}
	if !w.gw.IsValid() || w.gw.Is4() != w.dst.Addr().Is4() {
		return fmt.Errorf("peer %s has no public %s address to route it via", w.dst, family)
	}
	direct, err := n.directlyConnected(w.gw)
	if err != nil {
		return err
	}
	if !direct {
		return fmt.Errorf("peer %s (%s) is not directly connected on %s: host-gw needs all nodes on one %s L2 segment",
			w.dst, w.gw, n.ext.Iface.Name, family)
	}
	return p.table(w.dst).EnsureRoute(routeFor(w.dst, w.gw, n.ext.Iface.Index))
}

// directlyConnected reports whether the kernel reaches addr without a gateway through the
// external interface.
func (n *network) directlyConnected(addr netip.Addr) (bool, error) {
	return n.h.DirectlyConnected(addr, n.ext.Iface.Index)
}

// Run keeps the peer routes in place until ctx ends or Close is called: a route that
// someone else deletes or changes is put back as soon as the kernel reports it (within a
// few tens of milliseconds), a link or address change on the external interface triggers
// a check, and every resyncPeriod everything is checked anyway. A check that finds
// everything in place writes nothing.
func (n *network) Run(ctx context.Context) error {
	ctx, cancel := wait.UntilClosed(ctx, n.done)
	defer cancel()
	n.mu.Lock()
	var changes <-chan kernel.Change
	var err error
	if !n.closed {
		changes, err = n.h.Subscribe(ctx, n.families()...)
	}
	n.mu.Unlock()
	if err != nil {
		n.log.Error(err, "Cannot watch kernel changes; checking routes every period only", "period", n.resync)
	}
	w := kernel.Watcher{Relevant: n.relevant, Reconcile: n.reconcile, Period: n.resync, Log: n.log}
	w.Run(ctx, changes)
	if changes != nil {
		for range changes { // the subscriptions end with ctx; their goroutines then exit
		}
	}
	return nil
}

// relevant reports whether a kernel change may concern the peer routes: a main-table
// route inside a Network or through the external interface, or a link or address
// change of the external interface (taking it down or removing its address deletes the
// routes without a notification for each).
func (n *network) relevant(c kernel.Change) bool {
	ext := n.ext.Iface.Index
	switch c.Kind {
	case kernel.RouteChange:
		return c.Table == unix.RT_TABLE_MAIN &&
			(c.LinkIndex == ext || ip.Contains(n.cidr, c.Prefix) || ip.Contains(n.cidr6, c.Prefix))
	case kernel.LinkChange, kernel.AddrChange:
		return c.LinkIndex == ext
	}
	return false
}

// reconcile checks every peer route with one dump per family (O(peers)) and puts back what
// is missing or was changed by someone else, retries the deletes of removed peers and,
// once Apply has run, sweeps leftovers. It reports whether it found drift (or leftovers),
// and an error while some peer's route is not in place or not deleted.
func (n *network) reconcile() (drift bool, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false, nil
	}
	p := n.newPassLocked()
	var errs []error
	for dst, l := range n.gone {
		if err := n.removeLocked(p, dst, l); err != nil {
			errs = append(errs, err)
		}
	}
	for dst, r := range n.routes {
		if r.ok {
			ok, err := p.table(dst).HasRoute(routeFor(dst, r.gw, n.ext.Iface.Index))
			if err != nil {
				n.log.Error(err, "Cannot list routes to check peers")
				return drift, errors.Join(append(errs, err)...)
			}
			if ok {
				continue
			}
		}
		was := r.ok
		if was {
			drift = true
			n.log.Info("Repairing peer route changed or deleted by someone else", "subnet", dst, "via", r.gw)
		}
		r = n.ensureLocked(p, r.key, wanted{dst, r.gw}, r)
		n.routes[dst] = r
		switch {
		case !r.ok:
			errs = append(errs, fmt.Errorf("peer %s: %s", dst, r.err))
		case !was:
			n.log.Info("Peer route in place after retry", "subnet", dst)
		default:
			n.env.Repaired("route")
		}
	}
	if n.applied {
		swept, err := n.sweepLocked(p)
		drift = drift || swept
		errs = append(errs, err)
	}
	return drift, errors.Join(errs...)
}
