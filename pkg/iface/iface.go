// Package iface chooses the node's external (underlay) interface the way flanneld does, from
// --iface, --iface-regex, --iface-can-reach, --public-ip and --public-ipv6, for the address
// families the network runs, and returns it as a backend.ExternalInterface.
//
// Selection, in this order (as flanneld's main.go and ipmatch.LookupExtIface):
//
//  1. Each --iface value in turn: an address selects the interface holding it (and that
//     address becomes IfaceAddr, or IfaceAddrV6 for an IPv6 one); anything else is an
//     interface name.
//  2. Each --iface-regex in turn: first the addresses of every interface are matched
//     (interfaces in kernel index order, addresses in kernel order, the matching address
//     becomes the interface address); only if no address matches, the interface names are.
//  3. --iface-can-reach: the interface and source address of the kernel's route to it.
//  4. Only when none of the three is given: the interface of the first default route in the
//     main table (with --public-ip or --public-ipv6 alone, the interface holding that address
//     is preferred; see below).
//
// The families. Options.IPv4 and Options.IPv6 say which the network runs (neither means
// IPv4 only). IPv4 only: the addresses above are IPv4 ones, the default route is 0.0.0.0/0,
// and the IPv6 fields of the result stay zero. IPv6 only: the same with IPv6 (the default
// route is ::/0) and the IPv4 fields stay zero. Dual stack: as flanneld, the interface is
// chosen as for IPv4 (an --iface or --iface-can-reach address may be of either family; a
// regexp first looks for an interface where it matches an IPv4 and an IPv6 address, then
// IPv4 addresses, then IPv6 addresses, then names; the default route is the IPv4 one, and an
// IPv6 default route through another interface is an error, as in flanneld), and the IPv6
// address is taken from the same interface.
//
// A candidate that does not give an interface with an address of every family the network
// runs is skipped (logged, with the reason) and the next one is tried; when candidates were
// given and none works, Select fails rather than falling back to the default route, as
// flanneld does. The interface address, when the step above did not fix it, is for IPv4 the
// interface's first global unicast address, else its first link-local one (flanneld's
// GetInterfaceIP4Addrs); for IPv6 its first global unicast address, never a link-local one.
// PublicIP is --public-ip when given, else IfaceAddr; PublicIPv6 is --public-ipv6, else
// IfaceAddrV6.
//
// Deliberate differences from flanneld, all in cases where flanneld fails or misbehaves:
// option values are validated before any lookup (an invalid regexp, an empty value, an
// address of a family the network does not run, a --public-ip that is not IPv4 or a
// --public-ipv6 that is not a global unicast IPv6 address are errors, where flanneld skips or
// falls back to the default route); with only --public-ip given and no interface holding it
// (a NAT address), the default-route interface is used where flanneld exits, and the same
// for --public-ipv6; a multipath default route selects its first next hop's interface where
// flanneld fails; and a failure lists every candidate tried and why. For IPv6: a link-local
// address is never the interface address (flanneld falls back to one; a tunnel endpoint
// needs a routable address), and neither are temporary (privacy) addresses, which change,
// nor addresses that failed duplicate address detection. In dual stack: every way of
// choosing fills both addresses (flanneld leaves the IPv6 address empty after --iface with
// an IPv4 address or --iface-can-reach, cannot take an IPv6 --iface address, and treats a
// regexp that matches only one family's addresses as a name pattern); --public-ipv6 may be
// on another interface than the chosen one or on none (a NAT address), as --public-ip may
// (flanneld requires it on the chosen interface); and without an IPv6 default route the IPv4
// default route's interface is used for both (flanneld fails). A --public-ip in an
// IPv6-only network, or a --public-ipv6 in an IPv4-only one, is validated, logged and
// ignored.
//
// "First" is kernel order, as in flanneld; the kernel lists an interface's IPv6 addresses
// newest first.
//
// The package reads kernel state only; it changes nothing. Select works in the network
// namespace of the calling thread (see pkg/nsutil).
package iface

import (
	"errors"
	"strings"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
)

// Options are the interface-selection flags, as given on the command line, and the address
// families of the network.
type Options struct {
	// IPv4 and IPv6 are the families the network runs (subnet.Config's EnableIPv4 and
	// EnableIPv6). Both false means IPv4 only, as before IPv6 existed.
	IPv4, IPv6 bool
	// Ifaces is --iface: interface names or addresses (of a family the network runs),
	// tried in order.
	Ifaces []string
	// Regexes is --iface-regex: Go regular expressions matched against the interfaces'
	// addresses and then their names, tried in order.
	Regexes []string
	// CanReach is --iface-can-reach: an address (of a family the network runs); the
	// interface the kernel would use to reach it is selected.
	CanReach string
	// PublicIP is --public-ip: the IPv4 address published to peers, when not the
	// interface's.
	PublicIP string
	// PublicIPv6 is --public-ipv6: the IPv6 address published to peers, when not the
	// interface's. A global unicast IPv6 address: not IPv4-mapped, not link-local.
	PublicIPv6 string
	// Log receives one line per skipped candidate and one for the choice. The zero value
	// discards.
	Log klog.Logger
}

// Errors that Select's errors wrap; test with errors.Is.
var (
	// ErrInvalid means an option value is malformed; nothing was looked up.
	ErrInvalid = errors.New("invalid option")
	// ErrNotFound means a candidate named no existing interface, or no route or
	// interface matched it, or (dual stack) the IPv4 and IPv6 default routes use different
	// interfaces.
	ErrNotFound = errors.New("not found")
	// ErrUnusable means the interface a candidate selected has no usable address of a
	// family the network runs, or no MTU.
	ErrUnusable = errors.New("interface unusable")
)

// NoInterfaceError is returned when two or more candidates were given and none gives a
// usable interface (with a single candidate, its own error is returned). Tried holds one
// error per candidate, in the order tried; each names its flag and value.
type NoInterfaceError struct {
	Tried []error
}

func (e *NoInterfaceError) Error() string {
	msgs := make([]string, len(e.Tried))
	for i, err := range e.Tried {
		msgs[i] = err.Error()
	}
	return "no usable interface matches the interfaces, regexps and addresses given: " + strings.Join(msgs, "; ")
}

// Unwrap returns the per-candidate errors, for errors.Is and errors.As.
func (e *NoInterfaceError) Unwrap() []error { return e.Tried }

// Select chooses the external interface for opts from the current network namespace.
func Select(opts Options) (backend.ExternalInterface, error) {
	p, err := parse(opts)
	if err != nil {
		return backend.ExternalInterface{}, err
	}
	ext, err := choose(netlinkKernel{}, p, opts.Log)
	if err != nil {
		return backend.ExternalInterface{}, err
	}
	kv := []any{"iface", ext.Iface.Name}
	if p.v4 {
		kv = append(kv, "ifaceAddr", ext.IfaceAddr, "publicIP", ext.PublicIP)
	}
	if p.v6 {
		kv = append(kv, "ifaceAddrV6", ext.IfaceAddrV6, "publicIPv6", ext.PublicIPv6)
	}
	opts.Log.Info("Using external interface", kv...)
	return ext, nil
}

// Validate checks the option values without looking at the system: the regexps compile,
// --iface addresses and --iface-can-reach are of a family the network runs, --public-ip is
// an IPv4 address and --public-ipv6 a global unicast IPv6 one. Select calls it first.
func (o Options) Validate() error {
	_, err := parse(o)
	return err
}
