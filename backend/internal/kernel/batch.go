package kernel

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Batch is the one way this package programs routes, neighbours and bridge forwarding
// (FDB) entries: it checks and changes many of them for the cost of one dump of each kind
// (a dump lists the whole table, so checking N peers with a dump each would cost O(N²)).
// Create one with Handle.NewBatch for one pass over many entries (a backend's Apply or
// reconcile) and drop it afterwards.
//
// A Batch works on one address family (NewBatch: IPv4; NewFamilyBatch: IPv4 or IPv6):
// its routes, its neighbours (ARP or NDP) and, on each link, all FDB entries, whose
// remotes must be of the same family (a VXLAN device's underlay is the family's). A
// backend running both families uses one Batch of each per pass.
//
// Each kind is dumped the first time a check needs it: every main-table route of the
// family at once; neighbours and FDB entries per link. The Batch then keeps its copy up to date with
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
// Only the main routing table is handled. A Batch is not safe for concurrent use; it
// uses its Handle, which must stay open while the Batch is used.
type Batch struct {
	h      *Handle
	family Family
	// routes are the family's main-table routes by destination; nil until first needed.
	routes map[netip.Prefix][]routeEntry
	// neighs are the family's neighbours per link, by address; a link is absent until needed.
	neighs map[int]map[netip.Addr]neighEntry
	// fdb are the forwarding entries per link, by MAC (one per remote); a link is absent
	// until needed.
	fdb map[int]map[string][]neighEntry
}

// NewBatch returns an empty IPv4 Batch on h. It reads nothing yet.
func (h *Handle) NewBatch() *Batch { return h.NewFamilyBatch(IPv4) }

// NewFamilyBatch returns an empty Batch for the routes and neighbours of family f (IPv4
// or IPv6) on h. It reads nothing yet. With another f, every method of the Batch fails.
func (h *Handle) NewFamilyBatch(f Family) *Batch {
	return &Batch{h: h, family: f, neighs: map[int]map[netip.Addr]neighEntry{}, fdb: map[int]map[string][]neighEntry{}}
}

// Family is the address family of b's routes and neighbours.
func (b *Batch) Family() Family { return b.family }

// check reports a closed Handle or a Batch of no known family.
func (b *Batch) check() error {
	if !b.family.valid() {
		return fmt.Errorf("batch: address family %d is neither IPv4 nor IPv6", uint8(b.family))
	}
	return b.h.check()
}

// ofFamily checks that addr, named what in errors, is an address of b's family.
func (b *Batch) ofFamily(what string, addr netip.Addr) error {
	if !b.family.has(addr) {
		return fmt.Errorf("%s: %s is not an %s address", what, addr, b.family)
	}
	return nil
}

// routesTo returns the main-table routes to dst, dumping every route on first use.
func (b *Batch) routesTo(dst netip.Prefix) ([]routeEntry, error) {
	all, err := b.allRoutes()
	if err != nil {
		return nil, err
	}
	return all[dst], nil
}

// allRoutes returns the main-table routes by destination, dumping them on first use.
func (b *Batch) allRoutes() (map[netip.Prefix][]routeEntry, error) {
	if b.routes == nil {
		if err := b.check(); err != nil {
			return nil, err
		}
		// Each route goes straight into the index as a routeEntry: the dump is never held
		// as a list of netlink.Routes (hundreds of bytes and a few allocations each).
		m, err := RetryDump(func() (map[netip.Prefix][]routeEntry, error) {
			m := map[netip.Prefix][]routeEntry{}
			err := b.h.dumps.mainRoutes(b.family, func(e routeEntry, _ []byte) { m[e.dst] = append(m[e.dst], e) })
			return m, err
		})
		if err != nil {
			return nil, fmt.Errorf("list %s routes: %w", b.family, err)
		}
		b.routes = m
	}
	return b.routes, nil
}

func (b *Batch) neighsOn(link int) (map[netip.Addr]neighEntry, error) {
	if m, ok := b.neighs[link]; ok {
		return m, nil
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	m, err := RetryDump(func() (map[netip.Addr]neighEntry, error) {
		m := map[netip.Addr]neighEntry{}
		err := b.h.dumps.neighbours(uint8(b.family), link, func(e neighEntry) {
			if e.ip.IsValid() {
				m[e.ip] = e
			}
		})
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("list %s neighbours on link #%d: %w", b.family, link, err)
	}
	b.neighs[link] = m
	return m, nil
}

func (b *Batch) fdbOn(link int) (map[string][]neighEntry, error) {
	if m, ok := b.fdb[link]; ok {
		return m, nil
	}
	if err := b.check(); err != nil {
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
