package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/ip"
)

// Batch checks and changes many routes, neighbours and bridge forwarding (FDB) entries
// for the cost of one dump of each kind, where the Handle's Ensure* pay one or two dumps
// per entry (a dump lists the whole table, so programming N peers entry by entry costs
// O(N²)). Create one with Handle.NewBatch for one pass over many entries (a backend's
// Apply or reconcile) and drop it afterwards.
//
// Each kind is dumped the first time a check needs it: every IPv4 main-table route at
// once; neighbours and FDB entries per link. The Batch then keeps its copy up to date with
// its own writes, so an entry written earlier in the pass (two peers sharing a MAC, a peer
// removed and added again) is seen. It does not follow anyone else's changes after the
// dump: that is what the next pass, with a new Batch, is for.
//
// Ensure* write only what differs from the dump and record a write the kernel acknowledged
// as done, without reading it back: the next pass (a reconcile after the kernel's change
// notifications) verifies. An entry that is not there is created exclusively (as `ip route
// add`), so one that appeared since the dump is not overwritten blindly: its "exists"
// answer falls back to a replace. Before a table has been read, Ensure* try that exclusive
// create first and read the table only when it collides: programming new peers into empty
// tables needs no dump at all, and one peer joining costs a few requests however many are
// there. Delete* treat "already gone" as success.
//
// Only IPv4 and the main routing table are handled. A Batch is not safe for concurrent
// use; it uses its Handle, which must stay open while the Batch is used.
type Batch struct {
	h *Handle
	// routes are the main-table IPv4 routes by destination; nil until first needed.
	routes map[netip.Prefix][]routeEntry
	// neighs are the IPv4 neighbours per link, by address; a link is absent until needed.
	neighs map[int]map[netip.Addr]neighEntry
	// fdb are the forwarding entries per link, by MAC (one per remote); a link is absent
	// until needed.
	fdb map[int]map[string][]neighEntry
}

// NewBatch returns an empty Batch on h. It reads nothing yet.
func (h *Handle) NewBatch() *Batch {
	return &Batch{h: h, neighs: map[int]map[netip.Addr]neighEntry{}, fdb: map[int]map[string][]neighEntry{}}
}

// routesTo returns the main-table routes to dst, dumping every route on first use.
func (b *Batch) routesTo(dst netip.Prefix) ([]routeEntry, error) {
	if b.routes == nil {
		if err := b.h.check(); err != nil {
			return nil, err
		}
		// Each route goes straight into the index as a routeEntry: the dump is never held
		// as a list of netlink.Routes (hundreds of bytes and a few allocations each).
		m, err := RetryDump(func() (map[netip.Prefix][]routeEntry, error) {
			m := map[netip.Prefix][]routeEntry{}
			err := b.h.dumps.mainRoutes(func(e routeEntry) { m[e.dst] = append(m[e.dst], e) })
			return m, err
		})
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		b.routes = m
	}
	return b.routes[dst], nil
}

func (b *Batch) neighsOn(link int) (map[netip.Addr]neighEntry, error) {
	if m, ok := b.neighs[link]; ok {
		return m, nil
	}
	if err := b.h.check(); err != nil {
		return nil, err
	}
	m, err := RetryDump(func() (map[netip.Addr]neighEntry, error) {
		m := map[netip.Addr]neighEntry{}
		err := b.h.dumps.neighbours(unix.AF_INET, link, func(e neighEntry) {
			if e.ip.IsValid() {
				m[e.ip] = e
			}
		})
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("list neighbours on link #%d: %w", link, err)
	}
	b.neighs[link] = m
	return m, nil
}

func (b *Batch) fdbOn(link int) (map[string][]neighEntry, error) {
	if m, ok := b.fdb[link]; ok {
		return m, nil
	}
	if err := b.h.check(); err != nil {
		return nil, err
	}
	m, err := RetryDump(func() (map[string][]neighEntry, error) {
		m := map[string][]neighEntry{}
		err := b.h.dumps.neighbours(unix.AF_BRIDGE, link, func(e neighEntry) { m[e.mac] = append(m[e.mac], e) })
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("list fdb on link #%d: %w", link, err)
	}
	b.fdb[link] = m
	return m, nil
}

// matchesNeigh is NeighMatches for a listed entry.
func (e *neighEntry) matchesNeigh(addr netip.Addr, mac net.HardwareAddr) bool {
	return e.ip == addr && e.mac == string(mac) && e.state&netlink.NUD_PERMANENT != 0
}

// matchesFDB is FDBMatches for a listed entry.
func (e *neighEntry) matchesFDB(mac net.HardwareAddr, dst netip.Addr) bool {
	return e.ip == dst && e.mac == string(mac) && e.state&netlink.NUD_PERMANENT != 0 && e.flags&netlink.NTF_SELF != 0
}

// fdbNeigh is a netlink.Neigh that names the FDB entry e on link for a delete.
func (e *neighEntry) fdbNeigh(link int) *netlink.Neigh {
	n := &netlink.Neigh{LinkIndex: link, Family: unix.AF_BRIDGE, Flags: int(e.flags), State: int(e.state),
		HardwareAddr: net.HardwareAddr(e.mac), Vlan: int(e.vlan), VNI: int(e.vni)}
	if e.ip.IsValid() {
		n.IP = net.IP(e.ip.AsSlice())
	}
	return n
}

// HasRoute reports whether the route want (as passed to EnsureRoute, main table) is in
// place, as RouteMatches decides.
func (b *Batch) HasRoute(want *netlink.Route) (bool, error) {
	dst, err := batchRouteDst(want)
	if err != nil {
		return false, err
	}
	have, err := b.routesTo(dst)
	if err != nil {
		return false, err
	}
	return containsEntry(have, want), nil
}

func containsEntry(have []routeEntry, want *netlink.Route) bool {
	for i := range have {
		if have[i].matches(want) {
			return true
		}
	}
	return false
}

func batchRouteDst(r *netlink.Route) (netip.Prefix, error) {
	dst, ok := ip.FromIPNet(r.Dst)
	if !ok || !dst.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("route: destination %v is not an IPv4 network", r.Dst)
	}
	if tableOrMain(r.Table) != unix.RT_TABLE_MAIN {
		return netip.Prefix{}, fmt.Errorf("route to %s: a Batch handles the main table only, not table %d", dst, r.Table)
	}
	return dst, nil
}

// EnsureRoute makes r present, as Handle.EnsureRoute does, checking it against the dump.
func (b *Batch) EnsureRoute(r *netlink.Route) error {
	if err := b.h.check(); err != nil {
		return err
	}
	dst, err := batchRouteDst(r)
	if err != nil {
		return fmt.Errorf("ensure %w", err)
	}
	if b.routes == nil {
		if err := b.h.nl.RouteAdd(r); err == nil {
			return nil // created; a dump made later in this batch lists it
		} else if !isExist(err) {
			return fmt.Errorf("add route %s: %w", describeRoute(r), err)
		}
	}
	have, err := b.routesTo(dst)
	if err != nil {
		return err
	}
	if containsEntry(have, r) {
		return nil
	}
	err = errExist // a route to dst with r's metric may be there: replace it
	if !sameMetric(have, r) {
		err = b.h.nl.RouteAdd(r)
	}
	if isExist(err) {
		err = b.h.nl.RouteReplace(r)
	}
	if err != nil {
		return fmt.Errorf("replace route %s: %w", describeRoute(r), err)
	}
	// The kernel replaced any route to dst with the same metric and TOS.
	kept := have[:0:0]
	for _, h := range have {
		if h.priority != r.Priority || h.tos != r.Tos {
			kept = append(kept, h)
		}
	}
	b.routes[dst] = append(kept, written(r))
	return nil
}

// errExist stands for "the dump shows an entry there": write with replace at once.
var errExist = fmt.Errorf("batch: %w", unix.EEXIST)

// sameMetric reports whether have holds a route that a route add of r would collide with.
func sameMetric(have []routeEntry, r *netlink.Route) bool {
	for _, h := range have {
		if h.priority == r.Priority && h.tos == r.Tos {
			return true
		}
	}
	return false
}

// written is r as the kernel lists it after writing it, as far as RouteMatches looks.
func written(r *netlink.Route) routeEntry {
	e := entryOf(r)
	if e.typ == 0 {
		e.typ = unix.RTN_UNICAST
	}
	e.table = unix.RT_TABLE_MAIN
	return e
}

// DeleteRoute removes the main-table routes to dst whose output link is linkIndex (any
// link when linkIndex is 0), as Handle.DeleteRoute does.
func (b *Batch) DeleteRoute(dst netip.Prefix, linkIndex int) error {
	if b.routes == nil { // nothing read: no need to read the table to delete
		return b.h.DeleteRoute(dst, linkIndex)
	}
	if err := b.h.check(); err != nil {
		return err
	}
	var kept []routeEntry
	var errs []error
	for _, e := range b.routes[dst] {
		if linkIndex != 0 && e.link != linkIndex {
			kept = append(kept, e)
			continue
		}
		r := e.route()
		if err := b.h.nl.RouteDel(r); err != nil && !isGone(err) {
			kept = append(kept, e)
			errs = append(errs, fmt.Errorf("delete route %s: %w", describeRoute(r), err))
		}
	}
	b.routes[dst] = kept
	return errors.Join(errs...)
}

// HasNeigh reports whether the permanent neighbour addr -> mac is on linkIndex.
func (b *Batch) HasNeigh(linkIndex int, addr netip.Addr, mac net.HardwareAddr) (bool, error) {
	m, err := b.neighsOn(linkIndex)
	if err != nil {
		return false, err
	}
	n, ok := m[addr]
	return ok && n.matchesNeigh(addr, mac), nil
}

// EnsureNeigh makes the permanent neighbour addr -> mac on linkIndex, as Handle.EnsureNeigh
// does, checking it against the dump.
func (b *Batch) EnsureNeigh(linkIndex int, addr netip.Addr, mac net.HardwareAddr) error {
	if err := b.h.check(); err != nil {
		return err
	}
	if !addr.Is4() {
		return fmt.Errorf("ensure neighbour: %s is not an IPv4 address", addr)
	}
	n := permanentNeigh(linkIndex, addr, mac)
	if _, read := b.neighs[linkIndex]; !read {
		if err := b.h.nl.NeighAdd(n); err == nil {
			return nil
		} else if !isExist(err) {
			return fmt.Errorf("add neighbour %s lladdr %s on link #%d: %w", addr, mac, linkIndex, err)
		}
	}
	m, err := b.neighsOn(linkIndex)
	if err != nil {
		return err
	}
	have, present := m[addr]
	if present && have.matchesNeigh(addr, mac) {
		return nil
	}
	err = errExist
	if !present {
		err = b.h.nl.NeighAdd(n)
	}
	if isExist(err) {
		err = b.h.nl.NeighSet(n)
	}
	if err != nil {
		return fmt.Errorf("set neighbour %s lladdr %s on link #%d: %w", addr, mac, linkIndex, err)
	}
	m[addr] = neighEntry{ip: addr, mac: string(mac), state: netlink.NUD_PERMANENT}
	return nil
}

func permanentNeigh(linkIndex int, addr netip.Addr, mac net.HardwareAddr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    linkIndex,
		Family:       unix.AF_INET,
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           net.IP(addr.AsSlice()),
		HardwareAddr: mac,
	}
}

// DeleteNeigh removes the IPv4 neighbour entry for addr on linkIndex; a missing one is fine.
func (b *Batch) DeleteNeigh(linkIndex int, addr netip.Addr) error {
	if err := b.h.DeleteNeigh(linkIndex, addr); err != nil {
		return err
	}
	if m, ok := b.neighs[linkIndex]; ok {
		delete(m, addr)
	}
	return nil
}

// HasFDB reports whether the permanent forwarding entry mac -> dst is on linkIndex (other
// remotes for mac may be there too).
func (b *Batch) HasFDB(linkIndex int, mac net.HardwareAddr, dst netip.Addr) (bool, error) {
	m, err := b.fdbOn(linkIndex)
	if err != nil {
		return false, err
	}
	for _, n := range m[string(mac)] {
		if n.matchesFDB(mac, dst) {
			return true, nil
		}
	}
	return false, nil
}

// EnsureFDB makes "mac dst <dst> self permanent" on linkIndex the only remote of mac, as
// Handle.EnsureFDB does, checking it against the dump.
func (b *Batch) EnsureFDB(linkIndex int, mac net.HardwareAddr, dst netip.Addr) error {
	if err := b.h.check(); err != nil {
		return err
	}
	if !dst.Is4() {
		return fmt.Errorf("ensure fdb: %s is not an IPv4 address", dst)
	}
	n := fdbEntry(linkIndex, mac, dst)
	if _, read := b.fdb[linkIndex]; !read {
		if err := b.h.nl.NeighAdd(n); err == nil {
			return nil
		} else if !isExist(err) {
			return fmt.Errorf("add fdb %s dst %s on link #%d: %w", mac, dst, linkIndex, err)
		}
	}
	m, err := b.fdbOn(linkIndex)
	if err != nil {
		return err
	}
	have := m[string(mac)]
	var found bool
	var kept []neighEntry
	for _, e := range have {
		if e.matchesFDB(mac, dst) {
			found = true
			kept = append(kept, e)
			continue
		}
		if err := b.h.nl.NeighDel(e.fdbNeigh(linkIndex)); err != nil && !isGone(err) {
			m[string(mac)] = append(kept, e)
			return fmt.Errorf("delete stale fdb %s dst %s on link #%d: %w", mac, e.ip, linkIndex, err)
		}
	}
	m[string(mac)] = kept
	if found {
		return nil
	}
	err = errExist
	if len(kept) == 0 {
		err = b.h.nl.NeighAdd(n)
	}
	if isExist(err) {
		err = b.h.nl.NeighSet(n)
	}
	if err != nil {
		return fmt.Errorf("set fdb %s dst %s on link #%d: %w", mac, dst, linkIndex, err)
	}
	m[string(mac)] = []neighEntry{{ip: dst, mac: string(mac), state: netlink.NUD_PERMANENT, flags: netlink.NTF_SELF}}
	return nil
}

func fdbEntry(linkIndex int, mac net.HardwareAddr, dst netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    linkIndex,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT,
		IP:           net.IP(dst.AsSlice()),
		HardwareAddr: mac,
	}
}

// DeleteFDB removes the forwarding entry mac -> dst on linkIndex (every remote of mac when
// dst is the zero Addr). A missing entry is fine.
func (b *Batch) DeleteFDB(linkIndex int, mac net.HardwareAddr, dst netip.Addr) error {
	if err := b.h.DeleteFDB(linkIndex, mac, dst); err != nil {
		return err
	}
	m, ok := b.fdb[linkIndex]
	if !ok {
		return nil
	}
	var kept []neighEntry
	for _, e := range m[string(mac)] {
		if dst.IsValid() && e.ip != dst {
			kept = append(kept, e)
		}
	}
	if len(kept) == 0 {
		delete(m, string(mac))
	} else {
		m[string(mac)] = kept
	}
	return nil
}
