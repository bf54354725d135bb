package firewall

import (
	"fmt"
	"net/netip"
)

// Part is one of weft's three rule groups. Each implementation keeps a part in a place of
// its own (an iptables chain, an nftables chain), so that parts change independently.
type Part int

const (
	Masq    Part = iota // masquerade, in the nat POSTROUTING path
	Forward             // ACCEPT of the overlay network, in the FORWARD path
	Tunnel              // the tunnel port: ACCEPT from peers, DROP from others, in INPUT
)

// NumParts is the number of parts; Part values are 0..NumParts-1.
const NumParts = 3

// Parts lists every part in the order a pass handles them.
var Parts = [NumParts]Part{Masq, Forward, Tunnel}

func (p Part) String() string {
	return [...]string{"masquerade", "forward", "tunnel"}[p]
}

// Action says what a pass does with one part.
type Action int

const (
	Leave  Action = iota // inputs not known (or unusable): touch nothing, so rules survive a restart
	Manage               // make the part hold exactly its rules
	Remove               // the feature is off: delete the part
)

func (a Action) String() string {
	return [...]string{"leave", "manage", "remove"}[a]
}

// Inputs is everything the rules depend on besides Options, as the setters fill it.
type Inputs struct {
	Overlay            // zero until SetNetwork
	TunnelSet   bool   // SetTunnelPort was called
	TunnelProto string // "" means no tunnel
	TunnelPort  int
	TunnelPort6 int // the IPv6 rules' port when not TunnelPort (0)
	// Peers and IPv6Peers are the peers' public addresses of each family, sorted and
	// distinct (PeerSetOf); replaced, never modified.
	Peers, IPv6Peers []netip.Addr
}

// PeersOf returns the peers of family f.
func (in Inputs) PeersOf(f Family) []netip.Addr {
	if f == IPv6 {
		return in.IPv6Peers
	}
	return in.Peers
}

// PartPlan is the desired state of one part.
type PartPlan struct {
	Part   Part
	Action Action
	Rules  []Rule // when Action == Manage, in order
	// Peers are the addresses a FromPeers rule matches (Tunnel only), sorted and distinct.
	Peers []netip.Addr
	Err   error // inputs given but unusable; Action is Leave
}

// Plan is the desired state of every part, indexed by Part.
type Plan [NumParts]PartPlan

// Verdict is what a rule does with a packet it matches.
type Verdict int

const (
	Return     Verdict = iota // leave weft's rules (no masquerade)
	Masquerade                // source NAT to the outgoing interface's address
	Accept
	Drop
)

// Rule is one rule of the plan, as data: every implementation renders the same fields.
// A zero field matches anything.
type Rule struct {
	Comment string // starts with "weft: "; every rule carries one
	// KubeProxyMark matches packets carrying kube-proxy's masquerade mark (KubeProxyMark).
	KubeProxyMark bool
	Src, Dst      netip.Prefix
	NotSrc        bool // Src is negated
	NotDst        bool // Dst is negated
	Proto         string
	DPort         int  // with Proto TunnelUDP
	FromPeers     bool // the source is one of the part's Peers (a set where the tool has sets)
	Verdict       Verdict
	FullyRandom   bool // Masquerade with fully random source ports
}

// KubeProxyMark is the mark (value and mask) kube-proxy puts on packets it will
// masquerade itself.
const KubeProxyMark = 0x4000

// ProtoGRE is GRE's IP protocol number; ProtoUDP is UDP's.
const (
	ProtoGRE = 47
	ProtoUDP = 17
)

// Desired decides, purely, what each part of family f should hold for options o and
// inputs in. A part is left alone until its inputs are known (the network for the
// masquerade and forward rules; the network and the tunnel for the tunnel rules) or while
// the network of f is unusable (the part's Err says why), and removed when its feature is
// off (no tunnel, for the tunnel rules) or the network does not run f. The tunnel rules
// are the same for any number of peers (the peers go in a set): Peers carries those of
// family f.
func Desired(o Options, in Inputs, f Family) Plan {
	var p Plan
	for _, part := range Parts {
		p[part].Part = part
	}
	known, runs := in.Overlay.Known(), in.Overlay.Runs(f)
	network, subnet := in.Overlay.Of(f)
	switch {
	case !o.IPMasq, known && !runs:
		p[Masq].Action = Remove
	case known:
		p[Masq].Action = Manage
		p[Masq].Rules, p[Masq].Err = MasqRules(f, network, subnet, !o.DisableFullyRandom)
	}
	switch {
	case !o.ForwardRules, known && !runs:
		p[Forward].Action = Remove
	case known:
		p[Forward].Action = Manage
		if p[Forward].Err = CheckNetwork(f, network, network); p[Forward].Err == nil {
			p[Forward].Rules = ForwardRules(network)
		}
	}
	switch {
	case !in.TunnelSet:
	case in.TunnelProto == "":
		p[Tunnel].Action = Remove
	case !known:
	case !runs:
		p[Tunnel].Action = Remove
	default:
		p[Tunnel].Action = Manage
		if p[Tunnel].Err = CheckNetwork(f, network, subnet); p[Tunnel].Err != nil {
			break
		}
		port := in.TunnelPort
		if f == IPv6 && in.TunnelPort6 != 0 && in.TunnelProto == TunnelUDP {
			port = in.TunnelPort6
		}
		p[Tunnel].Rules, p[Tunnel].Err = TunnelRules(in.TunnelProto, port, o.RestrictTunnelPort)
		p[Tunnel].Peers = in.PeersOf(f)
	}
	for i := range p {
		if p[i].Err != nil {
			p[i].Action, p[i].Rules, p[i].Peers = Leave, nil, nil
		}
	}
	return p
}

// MasqRules returns flanneld's masquerade rules of family f (v0.28 order; its IPv6 rules
// are its IPv4 ones with the IPv6 network and subnet and ff00::/8 for multicast): no
// masquerade for what kube-proxy marked, within the network, or from outside to this
// node's pods; masquerade from the network to outside (multicast excepted) and from
// outside into the network.
func MasqRules(f Family, network, subnet netip.Prefix, fullyRandom bool) ([]Rule, error) {
	if err := CheckNetwork(f, network, subnet); err != nil {
		return nil, err
	}
	n, sn := network.Masked(), subnet.Masked()
	return []Rule{
		{Comment: "weft: kube-proxy marked, no masq", KubeProxyMark: true, Verdict: Return},
		{Comment: "weft: own subnet to network, no masq", Src: sn, Dst: n, Verdict: Return},
		{Comment: "weft: network to own subnet, no masq", Src: n, Dst: sn, Verdict: Return},
		{Comment: "weft: outside to own subnet, no masq", Src: n, NotSrc: true, Dst: sn, Verdict: Return},
		{Comment: "weft: masq network to outside", Src: n, Dst: Multicast(f), NotDst: true, Verdict: Masquerade, FullyRandom: fullyRandom},
		{Comment: "weft: masq outside to network", Src: n, NotSrc: true, Dst: n, Verdict: Masquerade, FullyRandom: fullyRandom},
	}, nil
}

// ForwardRules returns the forward ACCEPT rules for the overlay network (a valid prefix of
// either family, CheckNetwork).
func ForwardRules(network netip.Prefix) []Rule {
	n := network.Masked()
	return []Rule{
		{Comment: "weft: forward from network", Src: n, Verdict: Accept},
		{Comment: "weft: forward to network", Dst: n, Verdict: Accept},
	}
}

// TunnelRules returns the tunnel rules: ACCEPT of the encapsulation from the peers and,
// with restrict, a DROP of it from anyone else.
func TunnelRules(proto string, port int, restrict bool) ([]Rule, error) {
	base := Rule{Proto: proto}
	switch proto {
	case TunnelUDP:
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("%w: udp tunnel port %d", ErrInvalid, port)
		}
		base.DPort = port
	case TunnelGRE:
	default:
		return nil, fmt.Errorf("%w: tunnel protocol %q (want %q or %q)", ErrInvalid, proto, TunnelUDP, TunnelGRE)
	}
	accept, drop := base, base
	accept.Comment, accept.FromPeers, accept.Verdict = "weft: tunnel from peer", true, Accept
	drop.Comment, drop.Verdict = "weft: tunnel from non-peer, drop", Drop
	if restrict {
		return []Rule{accept, drop}, nil
	}
	return []Rule{accept}, nil
}

// Diff returns the addresses of want missing from have, and those of have not in want.
// Both must be sorted and distinct (PeerSet).
func Diff(have, want []netip.Addr) (add, del []netip.Addr) {
	i, j := 0, 0
	for i < len(have) || j < len(want) {
		switch {
		case j == len(want) || i < len(have) && have[i].Less(want[j]):
			del = append(del, have[i])
			i++
		case i == len(have) || want[j].Less(have[i]):
			add = append(add, want[j])
			j++
		default:
			i++
			j++
		}
	}
	return add, del
}
