package etcdv3

import (
	"bytes"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// Dual-stack and IPv6-only leases exactly as flanneld stores them: key below subnets/ and
// value. weft must read each and, writing the same attributes back, store the same bytes.
var flannelV6Leases = []struct{ key, value string }{
	{"10.244.2.0-24&fd00:10:0:2::-64", `{"PublicIP":"192.0.2.2","PublicIPv6":"2001:db8::2","BackendType":"vxlan",` +
		`"BackendData":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"},"BackendV6Data":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:91"}}`},
	{"10.244.3.0-24&fd00:10:0:3::-64", `{"PublicIP":"192.0.2.3","PublicIPv6":"2001:db8::3","BackendType":"host-gw"}`},
	{"0.0.0.0-0&fd00:10:0:9::-64", `{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::9","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:99"}}`},
	{"0.0.0.0-0&fd00:10:0:a::-64", `{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::a","BackendType":"host-gw"}`},
	{"0.0.0.0-0&fd00:10:0:b::-64", `{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::b"}`},
}

// TestFlanneldV6LeasesByteExact: flanneld's dual-stack and IPv6-only leases decode with
// both families, and encodeAttrs writes their attributes back byte for byte.
func TestFlanneldV6LeasesByteExact(t *testing.T) {
	for _, fl := range flannelV6Leases {
		l, err := decodeLease(dir, kv(fl.key, fl.value, 7, 9))
		if err != nil {
			t.Fatalf("%s: %v", fl.key, err)
		}
		if !l.IPv6Subnet.IsValid() || !l.Attrs.PublicIPv6.Is6() || l.Key() != fl.key {
			t.Errorf("%s decoded as %+v", fl.key, l)
		}
		if v6only := fl.key[:9] == "0.0.0.0-0"; v6only != (!l.Subnet.IsValid() && !l.Attrs.PublicIP.IsValid()) {
			t.Errorf("%s: IPv6-only %v, but decoded IPv4 side %s %s", fl.key, v6only, l.Subnet, l.Attrs.PublicIP)
		}
		enc, _, err := encodeAttrs(l.Subnet, l.IPv6Subnet, l.Attrs)
		if err != nil || string(enc) != fl.value {
			t.Errorf("%s: encoded\n %s (%v)\nwant flanneld's\n %s", fl.key, enc, err, fl.value)
		}
	}
}

// FuzzDecodeLeaseDualStack feeds stored keys and values, seeded with flanneld's dual-stack
// and IPv6-only leases, through the registry's decoding: the listing (decodeLease) and the
// watch (translate) agree on what is a lease and what is malformed. A lease it accepts
// names its own key again; one that CheckLeaseAttrs admits for its own subnets is written
// back by encodeAttrs (as CreateLease and UpdateLease do) to a value that decodes at that
// key to the same subnets and attributes, and that encoding is a fixed point.
func FuzzDecodeLeaseDualStack(f *testing.F) {
	for _, fl := range flannelV6Leases {
		f.Add(fl.key, []byte(fl.value))
	}
	for _, k := range []string{"10.244.2.0-24&fd00:10:0:2::0-64", "10.244.2.0-24&FD00:10:0:2::-64", "0.0.0.0-0", "10.244.2.0-24&fd00:10:0:2::1-64"} {
		f.Add(k, []byte(flannelV6Leases[0].value))
	}
	f.Add("10.244.2.0-24&fd00:10:0:2::-64", []byte(`{"PublicIP":"192.0.2.2","PublicIPv6":null}`))
	f.Add("0.0.0.0-0&fd00:10:0:9::-64", []byte(`{"PublicIP":"192.0.2.9","PublicIPv6":"2001:db8::9"}`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		stored := &mvccpb.KeyValue{Key: []byte(dir + key), Value: value, Lease: 7, ModRevision: 9}
		b := translate(dir, []*clientv3.Event{put(stored, nil)})
		l, err := decodeLease(dir, stored)
		if err != nil {
			if len(b.Events) != 0 || len(b.Malformed) != 1 || b.Malformed[0].Key != dir+key {
				t.Fatalf("listing rejects %q=%q (%v), the watch gave %+v", key, value, err, b)
			}
			return
		}
		if len(b.Events) != 1 || b.Events[0].Type != subnet.Added || len(b.Malformed) != 0 ||
			b.Events[0].Lease.Subnet != l.Subnet || b.Events[0].Lease.IPv6Subnet != l.IPv6Subnet || !b.Events[0].Lease.Attrs.Equal(l.Attrs) {
			t.Fatalf("listing accepts %q=%q as %+v, the watch gave %+v", key, value, l, b)
		}
		if l.Key() != key {
			t.Fatalf("decoded %q under another key %q", key, l.Key())
		}
		if subnet.CheckLeaseAttrs(l.Subnet, l.IPv6Subnet, l.Attrs) != nil {
			return
		}
		enc, back, err := encodeAttrs(l.Subnet, l.IPv6Subnet, l.Attrs)
		if err != nil {
			t.Fatalf("admits %q=%q but cannot write it back: %v", key, value, err)
		}
		again, err := decodeLease(dir, &mvccpb.KeyValue{Key: []byte(dir + l.Key()), Value: enc})
		if err != nil {
			t.Fatalf("the re-encoding %q of %q does not decode: %v", enc, key, err)
		}
		if again.Subnet != l.Subnet || again.IPv6Subnet != l.IPv6Subnet || !again.Attrs.Equal(l.Attrs) || !again.Attrs.Equal(back) ||
			again.Attrs.PublicIP != l.Attrs.PublicIP || again.Attrs.PublicIPv6 != l.Attrs.PublicIPv6 {
			t.Fatalf("round trip of %q changed %+v into %+v", key, l, again)
		}
		if enc2, _, err := encodeAttrs(again.Subnet, again.IPv6Subnet, again.Attrs); err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not a fixed point: %q then %q (%v)", enc, enc2, err)
		}
	})
}
