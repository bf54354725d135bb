package subnet

import (
	"encoding/json"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"unicode/utf8"
)

// Dual-stack and IPv6-only leases as flanneld writes them (key below subnets/, value).
var flannelV6Leases = []struct{ key, value string }{
	{"10.244.2.0-24&fd00:10:0:2::-64", `{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8::2","BackendType":"vxlan",` +
		`"BackendData":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"},"BackendV6Data":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:91"}}`},
	{"10.244.3.0-24&fd00:10:0:3::-64", `{"PublicIP":"192.0.2.3","PublicIPv6":"2001:db8::3","BackendType":"host-gw"}`},
	{"0.0.0.0-0&fd00:10:0:9::-64", `{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::9","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:99"}}`},
	{"0.0.0.0-0&fd00:10:0:a::-64", `{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::a","BackendType":"host-gw"}`},
	{"0.0.0.0-0&fd00:10:0:b::-64", `{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::b"}`}, // udp-style, no BackendType
	{"10.244.4.0-24", `{"PublicIP":"192.0.2.4","PublicIPv6":null,"BackendType":"host-gw"}`},
}

// flannelKeyRegexp is flanneld's own lease key parser (pkg/subnet, subnetRegex): the
// oracle for what a flanneld node reads from a key weft writes.
var flannelKeyRegexp = regexp.MustCompile(`(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$`)

// FuzzLeaseKeyIPv6 checks ParseLeaseKey and LeaseKey on every key form: whatever is
// accepted is a network address of its family (IPv4 part absent only in a two-part key),
// LeaseKey of it parses back to the same subnets and is a fixed point, and a canonical key
// reads in flanneld's parser as the same subnets.
func FuzzLeaseKeyIPv6(f *testing.F) {
	for _, l := range flannelV6Leases {
		f.Add(l.key)
	}
	for _, k := range []string{"0.0.0.0-0", "0.0.0.0-0&fd00::1-64", "10.244.5.0-24&FD00::-64", "10.244.5.0-24&fd00:0:0::-64",
		"10.244.5.0-24&fe80::%eth0-64", "10.244.5.0-24&::ffff:0.0.0.0-96", "10.244.5.0-24&fd00::-129", "10.244.5.0-24&&fd00::-64"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		v4, v6, err := ParseLeaseKey(key)
		if err != nil {
			return
		}
		if !v4.IsValid() && !v6.IsValid() {
			t.Fatalf("accepted %q with no subnet", key)
		}
		if v4.IsValid() && (!v4.Addr().Is4() || v4.Masked() != v4) {
			t.Fatalf("accepted %q with the IPv4 part %s", key, v4)
		}
		if v6.IsValid() && (!v6.Addr().Is6() || v6.Addr().Zone() != "" || v6.Masked() != v6) {
			t.Fatalf("accepted %q with the IPv6 part %s", key, v6)
		}
		canon := LeaseKey(v4, v6)
		b4, b6, err := ParseLeaseKey(canon)
		if err != nil || b4 != v4 || b6 != v6 {
			t.Fatalf("%q read as %s %s; its LeaseKey %q reads as %s %s (%v)", key, v4, v6, canon, b4, b6, err)
		}
		if LeaseKey(b4, b6) != canon {
			t.Fatalf("LeaseKey is not a fixed point: %q then %q", canon, LeaseKey(b4, b6))
		}
		if v6.Addr().Is4In6() {
			t.Fatalf("accepted %q with an IPv4-mapped IPv6 part (flanneld's parser refuses it)", key)
		}
		if canon != key {
			return // only canonical keys are stored (the etcd registry refuses the others)
		}
		m := flannelKeyRegexp.FindStringSubmatch(key)
		if m == nil {
			t.Fatalf("weft accepts the canonical key %q, flanneld's parser does not", key)
		}
		if v4.IsValid() && (m[1] != v4.Addr().String() || m[2] != strconv.Itoa(v4.Bits())) {
			t.Fatalf("%q: weft reads %s, flanneld %s-%s", key, v4, m[1], m[2])
		}
		if v6.IsValid() && (m[3] != v6.Addr().String() || m[4] != strconv.Itoa(v6.Bits())) {
			t.Fatalf("%q: weft reads %s, flanneld %s-%s", key, v6, m[3], m[4])
		}
		if !v4.IsValid() && (m[1] != "0.0.0.0" || m[2] != "0") {
			t.Fatalf("IPv6-only key %q: flanneld reads the IPv4 part %s-%s", key, m[1], m[2])
		}
	})
}

// FuzzParseLeaseDualStack feeds keys and values to ParseLease, seeded with flanneld's
// dual-stack and IPv6-only leases. Whatever it accepts re-encodes (MarshalJSON) and parses
// back under its own key (Lease.Key) to the same subnets and attributes, and the encoding
// is a fixed point. A lease that CheckLeaseAttrs admits re-encodes with both public
// addresses it names.
func FuzzParseLeaseDualStack(f *testing.F) {
	for _, l := range flannelV6Leases {
		f.Add(l.key, []byte(l.value))
	}
	f.Add("0.0.0.0-0&fd00:10:0:9::-64", []byte(`{"PublicIP":"0.0.0.0","PublicIPv6":null}`))
	f.Add("10.244.2.0-24&fd00:10:0:2::-64", []byte(`{"PublicIP":"192.0.2.2","PublicIPv6":"fe80::1%eth0"}`))
	f.Add("10.244.2.0-24&fd00:10:0:2::-64", []byte(`{"PublicIP":"192.0.2.2","PublicIPv6":"::ffff:192.0.2.2","BackendV6Data":null}`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		l, err := ParseLease(key, value)
		if err != nil {
			return
		}
		out, err := json.Marshal(l.Attrs)
		if err != nil {
			t.Fatalf("accepted %q=%q but cannot re-encode: %v", key, value, err)
		}
		again, err := ParseLease(l.Key(), out)
		if err != nil {
			t.Fatalf("accepted %q=%q; its re-encoding %q under %q does not parse: %v", key, value, out, l.Key(), err)
		}
		if again.Subnet != l.Subnet || again.IPv6Subnet != l.IPv6Subnet || !again.Attrs.Equal(l.Attrs) ||
			again.Attrs.PublicIP != l.Attrs.PublicIP || again.Attrs.PublicIPv6 != l.Attrs.PublicIPv6 {
			t.Fatalf("round trip of %q=%q changed %+v into %+v", key, value, l, again)
		}
		if out2, err := json.Marshal(again.Attrs); err != nil || string(out2) != string(out) {
			t.Fatalf("encoding is not a fixed point: %q then %q (%v)", out, out2, err)
		}
		if CheckLeaseAttrs(l.Subnet, l.IPv6Subnet, l.Attrs) == nil {
			if l.Subnet.IsValid() && !l.Attrs.PublicIP.Is4() || l.IPv6Subnet.IsValid() && !l.Attrs.PublicIPv6.Is6() {
				t.Fatalf("admitted %q=%q without the public address of each of its families: %+v", key, value, l.Attrs)
			}
		}
	})
}

// FuzzLeaseWriteRead builds leases of every shape weft may write (IPv4, dual stack, IPv6
// only) from fuzzed parts: whatever CheckLeaseSubnets and CheckLeaseAttrs allow is written
// (LeaseKey, MarshalJSON) and read back (ParseLease) as the very same lease.
func FuzzLeaseWriteRead(f *testing.F) {
	f.Add(true, []byte{10, 244, 5, 0}, uint8(24), true, []byte{0xfd, 0, 0, 0x10, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0}, uint8(64),
		[]byte{192, 0, 2, 5}, []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5}, "vxlan", []byte(`{"VNI":1}`), []byte(`{"VNI":1}`))
	f.Add(false, []byte{}, uint8(0), true, []byte{0xfd, 0, 0, 0x10, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0}, uint8(64),
		[]byte{}, []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}, "host-gw", []byte{}, []byte{})
	f.Add(true, []byte{10, 244, 5, 0}, uint8(24), false, []byte{}, uint8(0), []byte{192, 0, 2, 5}, []byte{}, "", []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, has4 bool, a4 []byte, bits4 uint8, has6 bool, a6 []byte, bits6 uint8,
		pub4, pub6 []byte, backendType string, data, data6 []byte) {
		var l Lease
		if has4 {
			if len(a4) != 4 {
				return
			}
			if l.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte(a4)), int(bits4)).Masked(); !l.Subnet.IsValid() {
				return
			}
		}
		if has6 {
			if len(a6) != 16 {
				return
			}
			if l.IPv6Subnet = netip.PrefixFrom(netip.AddrFrom16([16]byte(a6)), int(bits6)).Masked(); !l.IPv6Subnet.IsValid() {
				return
			}
		}
		if len(pub4) == 4 {
			// 0.0.0.0 is how an absent PublicIP is written, and reads back as absent.
			if l.Attrs.PublicIP = netip.AddrFrom4([4]byte(pub4)); l.Attrs.PublicIP.IsUnspecified() {
				l.Attrs.PublicIP = netip.Addr{}
			}
		}
		if len(pub6) == 16 {
			l.Attrs.PublicIPv6 = netip.AddrFrom16([16]byte(pub6))
		}
		if !utf8.ValidString(backendType) {
			return // BackendType comes from the JSON config: always UTF-8 (json.Marshal would write U+FFFD)
		}
		l.Attrs.BackendType = backendType
		if json.Valid(data) {
			l.Attrs.BackendData = data
		}
		if json.Valid(data6) {
			l.Attrs.BackendV6Data = data6
		}
		if CheckLeaseSubnets(l.Subnet, l.IPv6Subnet) != nil || CheckLeaseAttrs(l.Subnet, l.IPv6Subnet, l.Attrs) != nil {
			return
		}
		if l.Subnet.IsValid() && l.Subnet.Bits() == 0 && l.IPv6Subnet.IsValid() && l.Subnet.Addr().IsUnspecified() {
			return // 0.0.0.0/0 beside an IPv6 subnet is the IPv6-only key's placeholder, no node's subnet
		}
		key := LeaseKey(l.Subnet, l.IPv6Subnet)
		value, err := json.Marshal(l.Attrs)
		if err != nil {
			return // e.g. a BackendType that is not UTF-8 JSON text: refused at write time
		}
		back, err := ParseLease(key, value)
		if err != nil {
			t.Fatalf("weft writes %q=%q and cannot read it: %v", key, value, err)
		}
		if back.Subnet != l.Subnet || back.IPv6Subnet != l.IPv6Subnet || back.Key() != key || !back.Attrs.Equal(l.Attrs) ||
			back.Attrs.PublicIP != l.Attrs.PublicIP || back.Attrs.PublicIPv6 != l.Attrs.PublicIPv6 {
			t.Fatalf("wrote %+v as %q=%q, read back %+v", l, key, value, back)
		}
	})
}
