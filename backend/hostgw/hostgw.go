// Package hostgw is the host-gw backend: no encapsulation, just a route to each peer's
// subnet via the peer's public address on the external interface, for each address family
// the network runs: the peer's IPv4 subnet via its PublicIP and its IPv6 subnet via its
// PublicIPv6 (as flanneld). It needs every node on one L2 segment (of that family's
// underlay); a peer that is not directly connected is reported, per peer and family, and
// skipped.
//
// It owns only the routes it adds for peers' subnets; it creates no device. Run puts back
// a route that someone else deletes or changes within a few tens of milliseconds (kernel
// change notifications, and a full check every 30 s); flanneld takes up to 10 s. Routes of
// that shape that no admitted peer needs (peers that left while weftd was down, an old
// address of a peer that moved) are swept: see staleRoute.
//
// Routes of both families go through kernel.Batch (one per family and pass), and one
// kernel subscription of the families the network runs triggers the repairs.
package hostgw

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
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

// metric6 is the metric of host-gw's IPv6 routes: the kernel's default for a route added
// without one (IP6_RT_PRIO_USER), which flanneld's routes get. IPv4 routes have metric 0.
const metric6 = 1024

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
	env    backend.Env
	v4, v6 bool // the families the network runs
}

// families returns the address families cfg runs; a nil cfg (tests of old) runs IPv4.
// network.families lists them for the kernel package.
func families(cfg *subnet.Config) (v4, v6 bool) {
	if cfg == nil {
		return true, false
	}
	return cfg.EnableIPv4, cfg.EnableIPv6
}

func newBackend(env backend.Env) (backend.Backend, error) {
	v4, v6 := families(env.Network)
	ext := env.Ext
	if v4 && ext.PublicIP != ext.IfaceAddr {
		return nil, fmt.Errorf("host-gw needs the public IP (%s) to be the interface's address (%s on %s): peers route to it directly",
			ext.PublicIP, ext.IfaceAddr, ext.Iface.Name)
	}
	if v6 {
		if !ext.IfaceAddrV6.IsValid() {
			return nil, fmt.Errorf("host-gw with EnableIPv6 needs an IPv6 address on %s: peers route their IPv6 subnets to it", ext.Iface.Name)
		}
		if ext.PublicIPv6 != ext.IfaceAddrV6 {
			return nil, fmt.Errorf("host-gw needs the public IPv6 address (%s) to be the interface's (%s on %s): peers route to it directly",
				ext.PublicIPv6, ext.IfaceAddrV6, ext.Iface.Name)
		}
	}
	return &hostGW{env: env, v4: v4, v6: v6}, nil
}

// Prepare returns the attrs to publish: the BackendType and no backend data, for either
// family (flanneld's host-gw lease).
func (b *hostGW) Prepare(context.Context) (subnet.LeaseAttrs, error) {
	return subnet.LeaseAttrs{BackendType: Name}, nil
}

func (b *hostGW) Activate(_ context.Context, own subnet.Lease) (backend.Network, error) {
	h, err := kernel.Open()
	if err != nil {
		return nil, err
	}
	n := &network{
		h:      h,
		env:    b.env,
		ext:    b.env.Ext,
		v4:     b.v4,
		v6:     b.v6,
		log:    b.env.Log.WithValues("backend", Name),
		resync: resyncPeriod,
		done:   make(chan struct{}),
		peers:  map[string]subnet.Lease{},
		routes: map[netip.Prefix]peerRoute{},
		gone:   map[netip.Prefix]*leaving{},
		del:    routeTable.DeleteRoute,
	}
	if cfg := b.env.Network; cfg != nil {
		n.cidr, n.cidr6 = cfg.Network, cfg.IPv6Network
	}
	return n, nil
}

// peerRoute is one route a peer needs, to one of its subnets (the map key) via its public
// address of that family, and whether it is in place.
type peerRoute struct {
	key string     // the peer's Lease.Key()
	gw  netip.Addr // the peer's PublicIP or PublicIPv6
	ok  bool       // the route is in place; false: retried by Run
	err string
}

// leaving is a removed peer's route that is not deleted yet.
type leaving struct {
	lease subnet.Lease
	err   string // the last delete error, "" before the first try
}

type network struct {
	h      *kernel.Handle
	env    backend.Env
	ext    backend.ExternalInterface
	v4, v6 bool         // the families the network runs
	cidr   netip.Prefix // the IPv4 Network, which holds every peer IPv4 subnet
	cidr6  netip.Prefix // the IPv6Network
	log    klog.Logger
	resync time.Duration

	done      chan struct{} // closed by Close; ends Run
	closeOnce sync.Once

	// mu guards the fields below and serialises Apply, Run's repairs and Close, so the
	// handle is never closed under a running pass.
	mu      sync.Mutex
	peers   map[string]subnet.Lease    // admitted peers by Lease.Key()
	routes  map[netip.Prefix]peerRoute // the routes admitted peers need, by destination
	gone    map[netip.Prefix]*leaving  // removed peers' routes until they are deleted
	applied bool                       // Apply ran: the peer set is complete, leftovers can be swept
	closed  bool

	// del deletes a peer's route: routeTable.DeleteRoute, replaced by tests to fail.
	del func(t routeTable, dst netip.Prefix, linkIndex int) error
}

var _ backend.Network = (*network)(nil)

// families lists the address families n runs, for its kernel subscription.
func (n *network) families() []kernel.Family {
	var fs []kernel.Family
	if n.v4 {
		fs = append(fs, kernel.IPv4)
	}
	if n.v6 {
		fs = append(fs, kernel.IPv6)
	}
	return fs
}

func (n *network) MTU() int { return n.ext.Iface.MTU }

// wanted is one route a peer lease asks for.
type wanted struct {
	dst netip.Prefix
	gw  netip.Addr
}

// routesOf returns the routes a peer lease needs: one per family the network runs that
// the lease has a subnet of. It is pure.
func routesOf(l subnet.Lease, v4, v6 bool) []wanted {
	var ws []wanted
	if v4 && l.Subnet.IsValid() {
		ws = append(ws, wanted{l.Subnet, l.Attrs.PublicIP})
	}
	if v6 && l.IPv6Subnet.IsValid() {
		ws = append(ws, wanted{l.IPv6Subnet, l.Attrs.PublicIPv6})
	}
	return ws
}

// routeFor is the kernel route to dst via gw on the link linkIndex.
func routeFor(dst netip.Prefix, gw netip.Addr, linkIndex int) *netlink.Route {
	r := &netlink.Route{Dst: ip.IPNet(dst), Gw: net.IP(gw.AsSlice()), LinkIndex: linkIndex}
	if dst.Addr().Is6() {
		r.Priority = metric6
	}
	return r
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

// Describe reports each peer route's state, by the peer's subnet of that family.
func (n *network) Describe() backend.Description {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := backend.Description{Info: map[string]string{"interface": n.ext.Iface.Name}, Peers: map[netip.Prefix]backend.PeerStatus{}}
	for dst, r := range n.routes {
		switch {
		case !r.ok:
			d.Peers[dst] = backend.PeerStatus{State: backend.PeerError, Reason: r.err}
		default:
			d.Peers[dst] = backend.PeerStatus{State: backend.PeerProgrammed}
		}
	}
	return d
}
