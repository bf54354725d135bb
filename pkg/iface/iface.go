// Package iface chooses the node's external (underlay) interface the way flanneld does, from
// --iface, --iface-regex, --iface-can-reach and --public-ip, and returns it as a
// backend.ExternalInterface.
//
// Selection, in this order (as flanneld's main.go and ipmatch.LookupExtIface):
//
//  1. Each --iface value in turn: an IPv4 address selects the interface holding it (and that
//     address becomes IfaceAddr); anything else is an interface name.
//  2. Each --iface-regex in turn: first the IPv4 addresses of every interface are matched
//     (interfaces in kernel index order, addresses in kernel order, the matching address
//     becomes IfaceAddr); only if no address matches, the interface names are.
//  3. --iface-can-reach: the interface and source address of the kernel's route to it.
//  4. Only when none of the three is given: the interface of the first default IPv4 route in
//     the main table (with --public-ip alone, the interface holding that address is preferred;
//     see below).
//
// A candidate that does not give an interface with an IPv4 address is skipped (logged) and
// the next one is tried; when candidates were given and none works, Select fails rather than
// falling back to the default route, as flanneld does. IfaceAddr, when the step above did not
// fix it, is the interface's first global unicast IPv4 address, else its first link-local one.
// PublicIP is --public-ip when given, else IfaceAddr.
//
// Deliberate differences from flanneld, all in cases where flanneld fails or misbehaves:
// option values are validated before any lookup (an invalid regexp, an empty value, a
// --iface-can-reach or --public-ip that is not an IPv4 address are errors, where flanneld
// skips or falls back to the default route); with only --public-ip given and no interface
// holding it (a NAT address), the default-route interface is used where flanneld exits; a
// multipath default route selects its first next hop's interface where flanneld fails; and a
// failure lists every candidate tried and why.
//
// The package reads kernel state only; it changes nothing. Select works in the network
// namespace of the calling thread (see pkg/nsutil).
package iface

import (
	"errors"
	"net/netip"
	"regexp"
	"strings"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
)

// Options are the interface-selection flags, as given on the command line.
type Options struct {
	// Ifaces is --iface: interface names or IPv4 addresses, tried in order.
	Ifaces []string
	// Regexes is --iface-regex: Go regular expressions matched against the interfaces'
	// IPv4 addresses and then their names, tried in order.
	Regexes []string
	// CanReach is --iface-can-reach: an IPv4 address; the interface the kernel would use
	// to reach it is selected.
	CanReach string
	// PublicIP is --public-ip: the address published to peers, when not the interface's.
	PublicIP string
	// IPv4 and IPv6 are the families the network runs (both false: IPv4 only).
	IPv4, IPv6 bool
	// PublicIPv6 is --public-ipv6: the IPv6 address published to peers, when not the
	// interface's.
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
	// interface matched it.
	ErrNotFound = errors.New("not found")
	// ErrUnusable means the interface a candidate selected has no usable IPv4 address,
	// or no MTU.
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
	opts.Log.Info("Using external interface", "iface", ext.Iface.Name, "ifaceAddr", ext.IfaceAddr, "publicIP", ext.PublicIP)
	return ext, nil
}

// Validate checks the option values without looking at the system: the regexps compile,
// and --iface-can-reach and --public-ip are IPv4 addresses. Select calls it first.
func (o Options) Validate() error {
	_, err := parse(o)
	return err
}

// parsed is Options after validation.
type parsed struct {
	ifaces   []string
	regexes  []*regexp.Regexp
	canReach netip.Addr // invalid when not given
	publicIP netip.Addr // invalid when not given
}

func parse(o Options) (parsed, error) {
	var p parsed
	for _, s := range o.Ifaces {
		if s == "" {
			return parsed{}, failf(ErrInvalid, "--iface %q: empty value", s)
		}
		if a, err := netip.ParseAddr(s); err == nil && !a.Unmap().Is4() {
			return parsed{}, failf(ErrInvalid, "--iface %s: not an IPv4 address", s)
		}
		p.ifaces = append(p.ifaces, s)
	}
	for _, s := range o.Regexes {
		if s == "" {
			return parsed{}, failf(ErrInvalid, "--iface-regex %q: empty value", s)
		}
		re, err := regexp.Compile(s)
		if err != nil {
			return parsed{}, failf(ErrInvalid, "--iface-regex %q: invalid regexp: %w", s, err)
		}
		p.regexes = append(p.regexes, re)
	}
	var err error
	if o.CanReach != "" {
		if p.canReach, err = parseIPv4(o.CanReach); err != nil {
			return parsed{}, failf(ErrInvalid, "--iface-can-reach %q: %s", o.CanReach, err)
		}
	}
	if o.PublicIP != "" {
		if p.publicIP, err = parseIPv4(o.PublicIP); err != nil {
			return parsed{}, failf(ErrInvalid, "--public-ip %q: %s", o.PublicIP, err)
		}
	}
	return p, nil
}

// parseIPv4 accepts a unicast IPv4 address (an IPv4-mapped IPv6 form is unmapped).
func parseIPv4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Unmap().Is4() {
		return netip.Addr{}, errors.New("not an IPv4 address")
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, errors.New("not a unicast IPv4 address")
	}
	return a, nil
}
