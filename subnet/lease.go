package subnet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/pkg/ip"
)

// Lease is one node's claim on a subnet, as stored under <prefix>/subnets/<key>.
//
// A lease has one subnet per family the network runs: Subnet (IPv4) is zero in an
// IPv6-only network, IPv6Subnet is zero in an IPv4-only one. Code that needs one identity
// per lease uses Key, never Subnet alone.
type Lease struct {
	Subnet     netip.Prefix // the IPv4 subnet, e.g. 10.244.5.0/24; zero for an IPv6-only lease
	IPv6Subnet netip.Prefix // the IPv6 subnet, e.g. fd00:0:0:5::/64; zero for an IPv4-only lease
	Attrs      LeaseAttrs

	// Storage bookkeeping, filled in by the Registry.
	TTLID      int64     // the store's TTL handle (an etcd lease ID); 0 for a reservation
	Expiration time.Time // when the TTL runs out, if known; zero for a reservation
	Revision   int64     // the key's modification revision, for compare-and-swap
}

// Reserved reports whether the lease is a reservation: a subnet key with no TTL, pinned to
// the node whose PublicIP it names. weft never hands a reservation to another node and
// never attaches a TTL to it.
func (l Lease) Reserved() bool { return l.TTLID == 0 }

// IsZero reports whether l has no subnet at all (no lease held yet).
func (l Lease) IsZero() bool { return !l.Subnet.IsValid() && !l.IPv6Subnet.IsValid() }

// FirstSubnet returns the IPv4 subnet, or the IPv6 one of a lease without IPv4: one
// subnet to name the lease by where one is enough (a health line, a log).
func (l Lease) FirstSubnet() netip.Prefix {
	if l.Subnet.IsValid() {
		return l.Subnet
	}
	return l.IPv6Subnet
}

// SameNode reports whether l and o name the same node: the same IPv4 public address, or
// for leases without one (IPv6-only) the same IPv6 public address.
func (l Lease) SameNode(o Lease) bool {
	if l.Attrs.PublicIP.IsValid() || o.Attrs.PublicIP.IsValid() {
		return l.Attrs.PublicIP == o.Attrs.PublicIP
	}
	return l.Attrs.PublicIPv6 == o.Attrs.PublicIPv6
}

// Key returns the lease's key below <prefix>/subnets/.
func (l Lease) Key() string { return LeaseKey(l.Subnet, l.IPv6Subnet) }

// LeaseAttrs is the JSON value of a lease, byte-compatible with flannel's.
type LeaseAttrs struct {
	PublicIP      netip.Addr      // zero in an IPv6-only lease: written as "0.0.0.0", as flanneld does
	PublicIPv6    netip.Addr      // zero: written as null
	BackendType   string          // omitted when empty (flannel's udp backend writes none)
	BackendData   json.RawMessage // omitted when empty
	BackendV6Data json.RawMessage // omitted when empty
}

// MarshalJSON writes the attributes exactly as flannel does: compact, in field order
// PublicIP ("0.0.0.0" when unset, as flanneld's IPv6-only leases), PublicIPv6 (null when
// unset), then BackendType, BackendData and BackendV6Data only when set.
func (a LeaseAttrs) MarshalJSON() ([]byte, error) {
	pub := a.PublicIP
	switch {
	case !pub.IsValid():
		pub = netip.IPv4Unspecified()
	case !pub.Is4():
		return nil, fmt.Errorf("lease PublicIP %q is not an IPv4 address", a.PublicIP)
	}
	if a.PublicIPv6.IsValid() && !a.PublicIPv6.Is6() {
		return nil, fmt.Errorf("lease PublicIPv6 %q is not an IPv6 address", a.PublicIPv6)
	}
	var b bytes.Buffer
	b.WriteString(`{"PublicIP":`)
	b.WriteString(strconv.Quote(pub.String()))
	b.WriteString(`,"PublicIPv6":`)
	if a.PublicIPv6.IsValid() {
		b.WriteString(strconv.Quote(a.PublicIPv6.String()))
	} else {
		b.WriteString("null")
	}
	if a.BackendType != "" {
		// encoding/json, as flannel: strconv.Quote writes Go escapes (\x7f, \a) that are not JSON.
		t, err := json.Marshal(a.BackendType)
		if err != nil {
			return nil, err
		}
		b.WriteString(`,"BackendType":`)
		b.Write(t)
	}
	for _, f := range []struct {
		name string
		data json.RawMessage
	}{{"BackendData", a.BackendData}, {"BackendV6Data", a.BackendV6Data}} {
		if len(f.data) == 0 {
			continue
		}
		var c bytes.Buffer
		if err := json.Compact(&c, f.data); err != nil {
			return nil, fmt.Errorf("lease %s is not JSON: %w", f.name, err)
		}
		if c.String() == "null" {
			continue
		}
		b.WriteString(`,"` + f.name + `":`)
		b.Write(c.Bytes())
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON accepts values written by flanneld and by weft.
func (a *LeaseAttrs) UnmarshalJSON(data []byte) error {
	var raw struct {
		PublicIP      *string
		PublicIPv6    *string
		BackendType   string
		BackendData   json.RawMessage
		BackendV6Data json.RawMessage
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("lease value is not JSON: %w", err)
	}
	if raw.PublicIP == nil {
		return fmt.Errorf("lease value has no PublicIP")
	}
	pub, err := netip.ParseAddr(*raw.PublicIP)
	if err != nil || !pub.Is4() {
		return fmt.Errorf("lease PublicIP %q is not an IPv4 address", *raw.PublicIP)
	}
	if pub.IsUnspecified() {
		pub = netip.Addr{} // flanneld's IPv6-only lease: no IPv4 address
	}
	*a = LeaseAttrs{PublicIP: pub, BackendType: raw.BackendType}
	if raw.PublicIPv6 != nil {
		if a.PublicIPv6, err = netip.ParseAddr(*raw.PublicIPv6); err != nil || !a.PublicIPv6.Is6() || a.PublicIPv6.Zone() != "" {
			return fmt.Errorf("lease PublicIPv6 %q is not an IPv6 address", *raw.PublicIPv6)
		}
	}
	if !isNull(raw.BackendData) {
		a.BackendData = raw.BackendData
	}
	if !isNull(raw.BackendV6Data) {
		a.BackendV6Data = raw.BackendV6Data
	}
	return nil
}

func isNull(m json.RawMessage) bool {
	t := bytes.TrimSpace(m)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// Equal reports whether two attribute sets would be stored as the same bytes.
func (a LeaseAttrs) Equal(b LeaseAttrs) bool {
	x, errX := json.Marshal(a)
	y, errY := json.Marshal(b)
	return errX == nil && errY == nil && bytes.Equal(x, y)
}

// LeaseKey formats a lease key as flannel does: "10.244.5.0-24", or
// "10.244.5.0-24&fd00:0:0:5::-64" for a dual-stack lease, or "0.0.0.0-0&fd00:0:0:5::-64"
// for an IPv6-only one (v4 zero).
func LeaseKey(v4, v6 netip.Prefix) string {
	if !v4.IsValid() {
		v4 = noIPv4
	}
	k := v4.Addr().String() + "-" + strconv.Itoa(v4.Bits())
	if v6.IsValid() {
		k += "&" + v6.Addr().String() + "-" + strconv.Itoa(v6.Bits())
	}
	return k
}

// noIPv4 is the IPv4 part of flanneld's IPv6-only lease keys.
var noIPv4 = netip.PrefixFrom(netip.IPv4Unspecified(), 0)

// ParseLeaseKey parses a key written by LeaseKey (or by flanneld). It rejects anything
// that is not exactly a network address and length. The IPv4 part of an IPv6-only key
// ("0.0.0.0-0&…") is returned as the zero Prefix; "0.0.0.0-0" alone is returned as it is
// (a key no node's subnet has, which admission ignores).
func ParseLeaseKey(key string) (v4, v6 netip.Prefix, err error) {
	s4, s6, dual := strings.Cut(key, "&")
	if v4, err = parseKeyPart(s4); err != nil || !v4.Addr().Is4() {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("lease key %q: not an IPv4 subnet key like 10.244.5.0-24", key)
	}
	if dual {
		if v6, err = parseKeyPart(s6); err != nil || !v6.Addr().Is6() || v6.Addr().Is4In6() {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("lease key %q: IPv6 part is not a subnet key like fd00::-64", key)
		}
		if v4 == noIPv4 {
			v4 = netip.Prefix{}
		}
	}
	return v4, v6, nil
}

func parseKeyPart(s string) (netip.Prefix, error) {
	addr, bits, ok := strings.Cut(s, "-")
	if !ok {
		return netip.Prefix{}, fmt.Errorf("no '-' in %q", s)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q", addr)
	}
	n, err := strconv.Atoi(bits)
	if err != nil || strconv.Itoa(n) != bits || n < 0 || n > a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("bad length %q", bits)
	}
	p := netip.PrefixFrom(a, n)
	if !ip.IsNetworkAddress(p) {
		return netip.Prefix{}, fmt.Errorf("%s is not a network address", p)
	}
	return p, nil
}

// ParseLease builds a Lease from a key (below the subnets directory) and its JSON value.
func ParseLease(key string, value []byte) (Lease, error) {
	v4, v6, err := ParseLeaseKey(key)
	if err != nil {
		return Lease{}, err
	}
	var l Lease
	l.Subnet, l.IPv6Subnet = v4, v6
	if err := json.Unmarshal(value, &l.Attrs); err != nil {
		return Lease{}, fmt.Errorf("lease %q: %w", key, err)
	}
	return l, nil
}
