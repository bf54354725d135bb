package iptables

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/firewall"
)

// ipsets is the part of the kernel's ip_set that weft uses, for hash:ip sets of IPv4 or
// IPv6 addresses. Every method sends netlink requests from the calling thread, so it works in
// that thread's network namespace.
type ipsets interface {
	// List returns the members of the set, sorted; ok is false when there is no such set.
	List(name string) (members []netip.Addr, ok bool, err error)
	// Create makes an empty hash:ip set of addresses of family f (family inet or inet6).
	Create(name string, f firewall.Family) error
	// Add and Del add and remove one member; an address already there (Add) or not there
	// (Del) is not an error.
	Add(name string, a netip.Addr) error
	Del(name string, a netip.Addr) error
	// Destroy deletes the set; a missing set is not an error. It fails while a rule uses it.
	Destroy(name string) error
}

// netlinkSets is ipsets through github.com/vishvananda/netlink (already weft's netlink
// library): no ipset binary needed.
type netlinkSets struct{}

var _ ipsets = netlinkSets{}

// guard runs fn, turning a panic of the library into an error: its ipset calls assert
// every failure to be an errno, which a socket or dump error is not.
func guard(what string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ipset %s: netlink library panicked: %v", what, r)
		}
	}()
	if err = fn(); err != nil {
		return fmt.Errorf("ipset %s: %w", what, err)
	}
	return nil
}

func (netlinkSets) List(name string) (members []netip.Addr, ok bool, err error) {
	err = guard("list "+name, func() error {
		res, err := netlink.IpsetList(name)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return err
		}
		if res.TypeName != "" && res.TypeName != "hash:ip" {
			return fmt.Errorf("%w: set %s has type %s, want hash:ip", firewall.ErrInvalid, name, res.TypeName)
		}
		ok = true
		for _, e := range res.Entries {
			if a, valid := netip.AddrFromSlice(e.IP); valid {
				members = append(members, a.Unmap())
			}
		}
		return nil
	})
	slices.SortFunc(members, netip.Addr.Compare)
	return slices.Compact(members), ok, err
}

func (netlinkSets) Create(name string, f firewall.Family) error {
	family := uint8(unix.AF_INET)
	if f == firewall.IPv6 {
		family = unix.AF_INET6
	}
	return guard("create "+name, func() error {
		return netlink.IpsetCreate(name, "hash:ip", netlink.IpsetCreateOptions{Family: family})
	})
}

func (netlinkSets) Add(name string, a netip.Addr) error {
	return guard("add to "+name, func() error {
		err := netlink.IpsetAdd(name, &netlink.IPSetEntry{IP: net.IP(a.AsSlice()), Replace: true})
		if isIPSetErr(err, nl.IPSET_ERR_EXIST) {
			return nil
		}
		return err
	})
}

func (netlinkSets) Del(name string, a netip.Addr) error {
	return guard("delete from "+name, func() error {
		err := netlink.IpsetDel(name, &netlink.IPSetEntry{IP: net.IP(a.AsSlice())})
		if isIPSetErr(err, nl.IPSET_ERR_EXIST) {
			return nil
		}
		return err
	})
}

func (netlinkSets) Destroy(name string) error {
	return guard("destroy "+name, func() error {
		if err := netlink.IpsetDestroy(name); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		return nil
	})
}

func isIPSetErr(err error, code int) bool {
	var e nl.IPSetError
	return errors.As(err, &e) && int(e) == code
}

// syncSetLocked makes the family's set (PeerSet or PeerSet6) hold exactly peers, creating it when missing, adding and
// removing only the differences (a peer joining is one netlink request). It reports
// whether it changed anything. Called with s.syncMu held.
func (s *stack) syncSetLocked(peers []netip.Addr) (changed bool, err error) {
	have, ok, err := s.sets.List(s.set)
	if err != nil {
		return false, err
	}
	if ok && slices.ContainsFunc(have, func(a netip.Addr) bool { return !s.fam.Has(a) }) {
		return false, fmt.Errorf("%w: set %s holds addresses of the wrong family (not %v); delete it", firewall.ErrInvalid, s.set, s.fam)
	}
	if !ok {
		if err := s.sets.Create(s.set, s.fam); err != nil {
			return false, fmt.Errorf("%w: %w", errNoIPSet, err)
		}
		s.log.Info("ipset created", "set", s.set)
		changed = true
	}
	add, del := firewall.Diff(have, peers)
	for _, a := range add {
		if err := s.sets.Add(s.set, a); err != nil {
			return true, err
		}
	}
	for _, a := range del {
		if err := s.sets.Del(s.set, a); err != nil {
			return true, err
		}
	}
	if len(add)+len(del) > 0 {
		s.log.Info("ipset updated", "set", s.set, "added", len(add), "removed", len(del), "members", len(peers))
		changed = true
	}
	return changed, nil
}

// errNoIPSet marks a failure to create the set: the kernel has no usable ip_set, and the
// tunnel rules fall back to one rule per block of peers.
var errNoIPSet = errors.New("cannot create the ipset")
