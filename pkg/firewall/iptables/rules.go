package iptables

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"

	"github.com/weftnet/weft/pkg/ip"
)

// Chain names and the built-in chains that jump to them.
const (
	NATChain     = "WEFT-POSTRTG" // nat table, jumped from POSTROUTING
	ForwardChain = "WEFT-FWD"     // filter table, jumped from FORWARD
	InputChain   = "WEFT-INPUT"   // filter table, jumped from INPUT
)

// kubeProxyMark is the mark kube-proxy puts on packets it will masquerade itself.
const kubeProxyMark = "0x4000/0x4000"

// multicast is never masqueraded.
const multicast = "224.0.0.0/4"

// protoGRE is GRE's IP protocol number. Rules name it by number, which needs no
// /etc/protocols; iptables lists it by name.
const protoGRE = "47"

// Tunnel protocols accepted by SetTunnelPort.
const (
	TunnelUDP = "udp"
	TunnelGRE = "gre"
)

// ErrInvalid is wrapped by errors about inputs the rules cannot be built from.
var ErrInvalid = errors.New("invalid iptables input")

// chainDef is one of weft's chains and the jump rule that leads to it.
type chainDef struct {
	table string
	name  string
	hook  string // built-in chain holding the jump rule
	first bool   // jump inserted at the top of hook (else appended, as flanneld does)
	jump  []string
}

// The three chains weft owns, in the order a pass handles them. Never modified.
var (
	natDef = chainDef{table: "nat", name: NATChain, hook: "POSTROUTING",
		jump: []string{"-m", "comment", "--comment", "weft: masq", "-j", NATChain}}
	forwardDef = chainDef{table: "filter", name: ForwardChain, hook: "FORWARD",
		jump: []string{"-m", "comment", "--comment", "weft: forward", "-j", ForwardChain}}
	// The tunnel rules go first in INPUT so that a host firewall further down neither drops
	// peers' tunnel traffic nor lets others past the restriction.
	inputDef = chainDef{table: "filter", name: InputChain, hook: "INPUT", first: true,
		jump: []string{"-m", "comment", "--comment", "weft: tunnel input", "-j", InputChain}}
	chainDefs = []*chainDef{&natDef, &forwardDef, &inputDef}
)

// action says what a pass does with one chain.
type action int

const (
	leave  action = iota // inputs not known yet: touch nothing, so rules survive a restart
	manage               // make the chain hold exactly the desired rules, and jump to it
	remove               // the feature is off: delete the jump and the chain
)

// chainPlan is the desired state of one chain.
type chainPlan struct {
	def    *chainDef
	action action
	rules  [][]string // when action == manage
	err    error      // inputs given but unusable; the chain is left alone
}

// state is everything the rules depend on besides Options.
type state struct {
	network, subnet netip.Prefix // zero until SetNetwork
	tunnelSet       bool         // SetTunnelPort was called
	tunnelProto     string       // "" means no tunnel
	tunnelPort      int
	peers           []netip.Addr
}

// desired decides, purely, what each of weft's chains should hold.
func desired(o Options, s state, randomFully bool) []chainPlan {
	nat := chainPlan{def: &natDef}
	fwd := chainPlan{def: &forwardDef}
	in := chainPlan{def: &inputDef}

	switch {
	case !o.IPMasq:
		nat.action = remove
	case s.network.IsValid():
		nat.action = manage
		nat.rules, nat.err = natRules(s.network, s.subnet, randomFully)
	}
	switch {
	case !o.ForwardRules:
		fwd.action = remove
	case s.network.IsValid():
		fwd.action = manage
		fwd.rules, fwd.err = forwardRules(s.network)
	}
	switch {
	case !s.tunnelSet:
	case s.tunnelProto == "":
		in.action = remove
	default:
		in.action = manage
		in.rules, in.err = inputRules(s.peers, s.tunnelProto, s.tunnelPort, o.RestrictTunnelPort)
	}
	for _, p := range []*chainPlan{&nat, &fwd, &in} {
		if p.err != nil {
			p.action, p.rules = leave, nil
		}
	}
	return []chainPlan{nat, fwd, in}
}

// natRules returns flanneld's masquerade rules (v0.28 order) for the nat chain.
func natRules(network, subnet netip.Prefix, randomFully bool) ([][]string, error) {
	if err := checkNetwork(network, subnet); err != nil {
		return nil, err
	}
	n, sn := network.Masked().String(), subnet.Masked().String()
	masq := []string{"-j", "MASQUERADE"}
	if randomFully {
		masq = append(masq, "--random-fully")
	}
	return [][]string{
		withComment("weft: kube-proxy marked, no masq", []string{"-m", "mark", "--mark", kubeProxyMark}, "-j", "RETURN"),
		withComment("weft: own subnet to network, no masq", []string{"-s", sn, "-d", n}, "-j", "RETURN"),
		withComment("weft: network to own subnet, no masq", []string{"-s", n, "-d", sn}, "-j", "RETURN"),
		withComment("weft: outside to own subnet, no masq", []string{"!", "-s", n, "-d", sn}, "-j", "RETURN"),
		withComment("weft: masq network to outside", []string{"-s", n, "!", "-d", multicast}, masq...),
		withComment("weft: masq outside to network", []string{"!", "-s", n, "-d", n}, masq...),
	}, nil
}

// forwardRules returns the FORWARD accept rules for the overlay network.
func forwardRules(network netip.Prefix) ([][]string, error) {
	if err := checkNetwork(network, network); err != nil {
		return nil, err
	}
	n := network.Masked().String()
	return [][]string{
		withComment("weft: forward from network", []string{"-s", n}, "-j", "ACCEPT"),
		withComment("weft: forward to network", []string{"-d", n}, "-j", "ACCEPT"),
	}, nil
}

// inputRules returns the ACCEPT rules for the tunnel's traffic from the peers, sorted by
// address; with restrict, a final DROP of that traffic from anyone else. Peers that are
// not IPv4 addresses are skipped (these are iptables, not ip6tables, rules). Peers whose
// addresses fill a whole CIDR block share one rule for it (peerBlocks), so nodes numbered
// in a row need a handful of rules rather than one each; scattered addresses keep one /32
// rule each.
func inputRules(peers []netip.Addr, proto string, port int, restrict bool) ([][]string, error) {
	var match []string
	switch proto {
	case TunnelUDP:
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("%w: udp tunnel port %d", ErrInvalid, port)
		}
		match = []string{"-p", "udp", "-m", "udp", "--dport", strconv.Itoa(port)}
	case TunnelGRE:
		match = []string{"-p", protoGRE}
	default:
		return nil, fmt.Errorf("%w: tunnel protocol %q (want %q or %q)", ErrInvalid, proto, TunnelUDP, TunnelGRE)
	}
	blocks := peerBlocks(peerSet(peers))
	rules := make([][]string, 0, len(blocks)+1)
	for _, b := range blocks {
		m := append([]string{"-s", b.String()}, match...)
		rules = append(rules, withComment("weft: tunnel from peer", m, "-j", "ACCEPT"))
	}
	if restrict {
		rules = append(rules, withComment("weft: tunnel from non-peer, drop", match, "-j", "DROP"))
	}
	return rules, nil
}

// peerSet returns the IPv4 addresses among peers (4-in-6 unmapped), sorted, without
// duplicates, in a new slice.
func peerSet(peers []netip.Addr) []netip.Addr {
	addrs := make([]netip.Addr, 0, len(peers))
	for _, a := range peers {
		if a = a.Unmap(); a.Is4() {
			addrs = append(addrs, a)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs)
}

// minPeerBlock is the smallest block of peers that shares one rule: two peers in a /31
// keep a /32 rule each (one rule saved is not worth a rule that names no node), which also
// keeps small clusters' rules one per node.
const minPeerBlock = 4

// peerBlocks returns CIDR blocks that hold exactly addrs (sorted, distinct IPv4 addresses,
// as peerSet returns them), in address order: from the lowest address not yet covered,
// the largest block aligned there whose every address is in addrs, if it holds at least
// minPeerBlock addresses, else that address alone. It is pure.
func peerBlocks(addrs []netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(addrs))
	for i := 0; i < len(addrs); {
		a := uint64(ip.ToUint32(addrs[i]))
		size := uint64(1)
		// Double the block while a stays aligned to it and addrs holds all of it: sorted and
		// distinct, they do when the last one is a+size-1.
		for size < 1<<32 && a%(size*2) == 0 && i+int(size*2) <= len(addrs) &&
			uint64(ip.ToUint32(addrs[i+int(size*2)-1])) == a+size*2-1 {
			size *= 2
		}
		if size < minPeerBlock {
			size = 1
		}
		out = append(out, netip.PrefixFrom(addrs[i], 32-bits.TrailingZeros64(size)))
		i += int(size)
	}
	return out
}

// withComment assembles match, the comment, and target in the order iptables lists them.
func withComment(comment string, match []string, target ...string) []string {
	r := slices.Clip(match)
	r = append(r, "-m", "comment", "--comment", comment)
	return append(r, target...)
}

// checkNetwork verifies that network is IPv4 and holds subnet.
func checkNetwork(network, subnet netip.Prefix) error {
	switch {
	case !network.IsValid() || !network.Addr().Is4():
		return fmt.Errorf("%w: network %v is not an IPv4 prefix", ErrInvalid, network)
	case !subnet.IsValid() || !subnet.Addr().Is4():
		return fmt.Errorf("%w: subnet %v is not an IPv4 prefix", ErrInvalid, subnet)
	case subnet.Bits() < network.Bits() || !network.Contains(subnet.Addr()):
		return fmt.Errorf("%w: subnet %v is not inside network %v", ErrInvalid, subnet, network)
	}
	return nil
}
