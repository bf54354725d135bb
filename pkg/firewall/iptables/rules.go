package iptables

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/ip"
)

// Chain names and the built-in chains that jump to them.
const (
	NATChain     = "WEFT-POSTRTG" // nat table, jumped from POSTROUTING
	ForwardChain = "WEFT-FWD"     // filter table, jumped from FORWARD
	InputChain   = "WEFT-INPUT"   // filter table, jumped from INPUT
)

// PeerSet and PeerSet6 are the ipsets (hash:ip, family inet and inet6) of the peers'
// public addresses that the IPv4 and the IPv6 tunnel rule match.
const (
	PeerSet  = "weft-peers"
	PeerSet6 = "weft-peers6"
)

// setName returns the peer set of family f.
func setName(f firewall.Family) string {
	if f == firewall.IPv6 {
		return PeerSet6
	}
	return PeerSet
}

// protoGRE is GRE's IP protocol number. Rules name it by number, which needs no
// /etc/protocols; iptables lists it by name.
var protoGRE = strconv.Itoa(firewall.ProtoGRE)

// Aliases of the shared contract, for callers that only know this package.
type Options = firewall.Options

const (
	TunnelUDP     = firewall.TunnelUDP
	TunnelGRE     = firewall.TunnelGRE
	DefaultResync = firewall.DefaultResync
)

// ErrInvalid is firewall.ErrInvalid.
var ErrInvalid = firewall.ErrInvalid

// chainDef is one of weft's chains and the jump rule that leads to it.
type chainDef struct {
	part  firewall.Part
	table string
	name  string
	hook  string // built-in chain holding the jump rule
	first bool   // jump inserted at the top of hook (else appended, as flanneld does)
	jump  []string
}

// The three chains weft owns, in the order a pass handles them (firewall.Parts). Never
// modified.
var (
	natDef = chainDef{part: firewall.Masq, table: "nat", name: NATChain, hook: "POSTROUTING",
		jump: []string{"-m", "comment", "--comment", "weft: masq", "-j", NATChain}}
	forwardDef = chainDef{part: firewall.Forward, table: "filter", name: ForwardChain, hook: "FORWARD",
		jump: []string{"-m", "comment", "--comment", "weft: forward", "-j", ForwardChain}}
	// The tunnel rules go first in INPUT so that a host firewall further down neither drops
	// peers' tunnel traffic nor lets others past the restriction.
	inputDef = chainDef{part: firewall.Tunnel, table: "filter", name: InputChain, hook: "INPUT", first: true,
		jump: []string{"-m", "comment", "--comment", "weft: tunnel input", "-j", InputChain}}
	chainDefs = []*chainDef{&natDef, &forwardDef, &inputDef}
)

// chainPlan is the desired state of one chain: the plan's part, rendered.
type chainPlan struct {
	def    *chainDef
	action firewall.Action
	rules  [][]string   // when action == Manage
	peers  []netip.Addr // the members of the family's set (input chain, with the set)
	err    error        // inputs given but unusable; the chain is left alone
}

// render options: the family, and what this host's iptables can do.
type caps struct {
	family      firewall.Family // the rules' family (the zero value is IPv4)
	randomFully bool            // MASQUERADE --random-fully works
	ipset       bool            // the tunnel rule matches PeerSet; else one rule per block of peers
}

// desired decides, purely, what each of weft's chains of family c.family should hold: the
// shared plan, rendered for iptables (ip6tables for IPv6).
func desired(o Options, in firewall.Inputs, c caps) []chainPlan {
	plan := firewall.Desired(o, in, c.family)
	out := make([]chainPlan, 0, len(chainDefs))
	for _, def := range chainDefs {
		p := plan[def.part]
		cp := chainPlan{def: def, action: p.Action, err: p.Err}
		if p.Action == firewall.Manage {
			cp.rules = renderRules(p.Rules, p.Peers, c)
			if c.ipset && def == &inputDef {
				cp.peers = p.Peers
			}
		}
		out = append(out, cp)
	}
	return out
}

// renderRules turns plan rules into iptables arguments. A FromPeers rule matches the
// family's set (PeerSet, PeerSet6) with c.ipset, else becomes one rule per CIDR block of peers (peerBlocks).
func renderRules(rules []firewall.Rule, peers []netip.Addr, c caps) [][]string {
	out := make([][]string, 0, len(rules))
	for _, r := range rules {
		if r.FromPeers && !c.ipset {
			for _, b := range peerBlocks(peers) {
				r := r
				r.FromPeers, r.Src = false, b
				out = append(out, ruleArgs(r, c))
			}
			continue
		}
		out = append(out, ruleArgs(r, c))
	}
	return out
}

// ruleArgs returns one rule's arguments in the order iptables lists them: addresses,
// protocol, matches, the comment, the target.
func ruleArgs(r firewall.Rule, c caps) []string {
	var a []string
	addr := func(not bool, flag string, p netip.Prefix) {
		if !p.IsValid() {
			return
		}
		if not {
			a = append(a, "!")
		}
		a = append(a, flag, p.String())
	}
	addr(r.NotSrc, "-s", r.Src)
	addr(r.NotDst, "-d", r.Dst)
	switch r.Proto {
	case firewall.TunnelUDP:
		a = append(a, "-p", "udp")
	case firewall.TunnelGRE:
		a = append(a, "-p", protoGRE)
	}
	if r.KubeProxyMark {
		m := fmt.Sprintf("%#x", firewall.KubeProxyMark)
		a = append(a, "-m", "mark", "--mark", m+"/"+m)
	}
	if r.FromPeers {
		a = append(a, "-m", "set", "--match-set", setName(c.family), "src")
	}
	if r.DPort != 0 {
		a = append(a, "-m", "udp", "--dport", strconv.Itoa(r.DPort))
	}
	a = append(a, "-m", "comment", "--comment", r.Comment)
	switch r.Verdict {
	case firewall.Return:
		a = append(a, "-j", "RETURN")
	case firewall.Accept:
		a = append(a, "-j", "ACCEPT")
	case firewall.Drop:
		a = append(a, "-j", "DROP")
	case firewall.Masquerade:
		a = append(a, "-j", "MASQUERADE")
		if r.FullyRandom && c.randomFully {
			a = append(a, "--random-fully")
		}
	}
	return a
}

// Without ip_set in the kernel the tunnel rule cannot match a set: then it becomes one rule
// per CIDR block of peers, so that nodes numbered in a row still need a handful of rules.

// minPeerBlock is the smallest block of peers that shares one rule: two peers in a /31
// keep a /32 rule each (one rule saved is not worth a rule that names no node), which also
// keeps small clusters' rules one per node.
const minPeerBlock = 4

// peerBlocks returns CIDR blocks that hold exactly addrs (sorted, distinct addresses of one
// family, as firewall.PeerSetOf returns them), in address order: from the lowest address
// not yet covered, the largest block aligned there whose every address is in addrs, if it
// holds at least minPeerBlock addresses, else that address alone (/32 or /128). It is pure.
func peerBlocks(addrs []netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(addrs))
	for i := 0; i < len(addrs); {
		a, bitLen := addrs[i], addrs[i].BitLen()
		k := 0 // the block holds 2^k addresses
		// Double the block while a stays aligned to it and addrs holds all of it: sorted and
		// distinct, they do when the last one is the block's last address.
		for k < bitLen && i+(2<<k) <= len(addrs) {
			p := netip.PrefixFrom(a, bitLen-k-1)
			if p.Masked().Addr() != a || addrs[i+(2<<k)-1] != ip.LastAddr(p) {
				break
			}
			k++
		}
		if 1<<k < minPeerBlock {
			k = 0
		}
		out = append(out, netip.PrefixFrom(a, bitLen-k))
		i += 1 << k
	}
	return out
}
