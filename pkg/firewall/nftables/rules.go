package nftables

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"

	"github.com/weftnet/weft/pkg/firewall"
)

// The tables weft owns, their chains and sets. Everything weft writes in nftables mode is
// in these tables; nothing outside them is touched.
const (
	TableName = "weft"  // `nft list table ip weft` and `nft list table ip6 weft`
	SetName   = "peers" // ipv4_addr / ipv6_addr: the peers' public addresses the tunnel rule admits
)

// famDef is how one IP family's rules are kept: a table of the family of its own ("ip weft",
// "ip6 weft"), as iptables and ip6tables keep theirs, rather than one "inet" table. So the
// IPv4 table stays exactly what earlier versions wrote (an upgrade rewrites nothing, and a
// restart keeps its rules in place), a network that does not run a family has no table of
// it, and the kernel needs no inet nat (Linux 5.2).
type famDef struct {
	table    nftables.TableFamily
	key      nftables.SetDatatype
	src, dst uint32 // offsets of the addresses in the IP header
	addrLen  uint32
}

var famDefs = [firewall.NumFamilies]famDef{
	firewall.IPv4: {table: nftables.TableFamilyIPv4, key: nftables.TypeIPAddr, src: 12, dst: 16, addrLen: 4},
	firewall.IPv6: {table: nftables.TableFamilyIPv6, key: nftables.TypeIP6Addr, src: 8, dst: 24, addrLen: 16},
}

// chainDef is the base chain of one part of the plan.
type chainDef struct {
	part     firewall.Part
	name     string
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
}

// The chains of the table, by firewall.Part. Never modified. Masquerading runs at srcnat
// (100) and the filter chains at filter (0), the priorities of iptables' own nat and filter
// chains. An accept in weft's chains does not end the path through another table's base
// chain at the same hook (unlike an ACCEPT in a chain jumped to from iptables' INPUT):
// another table's drop still drops.
var chainDefs = [firewall.NumParts]chainDef{
	firewall.Masq: {part: firewall.Masq, name: "postrouting", typ: nftables.ChainTypeNAT,
		hook: nftables.ChainHookPostrouting, priority: nftables.ChainPriorityNATSource},
	firewall.Forward: {part: firewall.Forward, name: "forward", typ: nftables.ChainTypeFilter,
		hook: nftables.ChainHookForward, priority: nftables.ChainPriorityFilter},
	firewall.Tunnel: {part: firewall.Tunnel, name: "input", typ: nftables.ChainTypeFilter,
		hook: nftables.ChainHookInput, priority: nftables.ChainPriorityFilter},
}

// chain returns the chain of def in table t, as it is added.
func (d *chainDef) chain(t *nftables.Table) *nftables.Chain {
	return &nftables.Chain{Name: d.name, Table: t, Type: d.typ, Hooknum: d.hook, Priority: d.priority}
}

// matches reports whether an existing chain is def's base chain.
func (d *chainDef) matches(c *nftables.Chain) bool {
	return c.Type == d.typ && c.Hooknum != nil && *c.Hooknum == *d.hook &&
		c.Priority != nil && *c.Priority == *d.priority
}

// offDPort is the offset of the destination port in the UDP header.
const offDPort = 2

// ruleExprs renders one plan rule of family f as nftables expressions: the matches in the
// order the rule lists them, a counter, the verdict. set is the peer set a FromPeers rule
// looks up.
func ruleExprs(f firewall.Family, r firewall.Rule, set *nftables.Set, fullyRandom bool) []expr.Any {
	fd := famDefs[f]
	var e []expr.Any
	if r.KubeProxyMark {
		mark := binaryutil.NativeEndian.PutUint32(firewall.KubeProxyMark)
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mark, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: mark})
	}
	e = append(e, prefixMatch(fd.src, r.Src, r.NotSrc)...)
	e = append(e, prefixMatch(fd.dst, r.Dst, r.NotDst)...)
	switch r.Proto {
	case firewall.TunnelUDP:
		e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{firewall.ProtoUDP}})
	case firewall.TunnelGRE:
		e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{firewall.ProtoGRE}})
	}
	if r.DPort != 0 {
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offDPort, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(r.DPort))})
	}
	if r.FromPeers {
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fd.src, Len: fd.addrLen},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID})
	}
	e = append(e, &expr.Counter{})
	switch r.Verdict {
	case firewall.Return:
		e = append(e, &expr.Verdict{Kind: expr.VerdictReturn})
	case firewall.Accept:
		e = append(e, &expr.Verdict{Kind: expr.VerdictAccept})
	case firewall.Drop:
		e = append(e, &expr.Verdict{Kind: expr.VerdictDrop})
	case firewall.Masquerade:
		e = append(e, &expr.Masq{FullyRandom: r.FullyRandom && fullyRandom})
	}
	return e
}

// prefixMatch matches the address at off (of p's family) against p (negated with not), as
// nft compiles `ip saddr 10.0.0.0/16` or `ip6 saddr fd00::/56`: load, mask (not for a
// full-length prefix), compare.
func prefixMatch(off uint32, p netip.Prefix, not bool) []expr.Any {
	if !p.IsValid() {
		return nil
	}
	op := expr.CmpOpEq
	if not {
		op = expr.CmpOpNeq
	}
	n := uint32(p.Addr().BitLen() / 8)
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}}
	if p.Bits() < p.Addr().BitLen() {
		m := make([]byte, n)
		for i := range p.Bits() {
			m[i/8] |= 0x80 >> (i % 8)
		}
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: m, Xor: make([]byte, n)})
	}
	return append(e, &expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()})
}

// comment is a rule's user data: the comment `nft list` shows.
func comment(c string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, c)
}

// ruleKey is a rule's identity for comparison: its expressions as the kernel is sent them
// (for a table of family f), with counters zeroed and set IDs (which only name a set
// within one batch) dropped, and its user data. A rule read back from the kernel has the
// key of the rule written.
func ruleKey(f firewall.Family, exprs []expr.Any, udata []byte) (string, error) {
	var b bytes.Buffer
	for _, e := range exprs {
		switch x := e.(type) {
		case *expr.Counter:
			e = &expr.Counter{}
		case *expr.Lookup:
			c := *x
			c.SetID = 0
			e = &c
		}
		m, err := expr.Marshal(byte(famDefs[f].table), e)
		if err != nil {
			return "", fmt.Errorf("nftables: encode %T: %w", e, err)
		}
		fmt.Fprintf(&b, "%d:", len(m))
		b.Write(m)
	}
	b.WriteString("|")
	b.Write(udata)
	return b.String(), nil
}

// addrElements returns set elements for addrs (all of the set's family).
func addrElements(addrs []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, len(addrs))
	for i, a := range addrs {
		out[i] = nftables.SetElement{Key: a.AsSlice()}
	}
	return out
}

// elementAddrs returns the addresses of family f of set elements, sorted and distinct.
func elementAddrs(f firewall.Family, els []nftables.SetElement) []netip.Addr {
	addrs := make([]netip.Addr, 0, len(els))
	for _, e := range els {
		if a, ok := netip.AddrFromSlice(e.Key); ok && !e.IntervalEnd {
			addrs = append(addrs, a)
		}
	}
	return firewall.PeerSetOf(f, addrs)
}
