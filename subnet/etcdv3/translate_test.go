package etcdv3

import (
	"bytes"
	"net/netip"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

const dir = "/coreos.com/network/subnets/"

const (
	udpValue   = `{"PublicIP":"192.0.2.1","PublicIPv6":null}`
	vxlanValue = `{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}}`
)

func kv(key, value string, lease, rev int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(dir + key), Value: []byte(value), Lease: lease, ModRevision: rev}
}

func put(cur, prev *mvccpb.KeyValue) *clientv3.Event {
	return &clientv3.Event{Type: mvccpb.PUT, Kv: cur, PrevKv: prev}
}

func del(key string, rev int64, prev *mvccpb.KeyValue) *clientv3.Event {
	return &clientv3.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(dir + key), ModRevision: rev}, PrevKv: prev}
}

// want is a compact description of an event: type, subnet, public IP ("" for none), TTLID,
// revision.
type want struct {
	typ      subnet.EventType
	sn, pub  string
	ttl, rev int64
}

func TestTranslate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		events    []*clientv3.Event
		want      []want
		malformed []string
	}{
		{
			name:   "put",
			events: []*clientv3.Event{put(kv("10.244.1.0-24", vxlanValue, 7, 10), nil)},
			want:   []want{{subnet.Added, "10.244.1.0/24", "192.0.2.2", 7, 10}},
		},
		{
			name:   "reservation put",
			events: []*clientv3.Event{put(kv("10.244.1.0-24", udpValue, 0, 10), nil)},
			want:   []want{{subnet.Added, "10.244.1.0/24", "192.0.2.1", 0, 10}},
		},
		{
			name:      "malformed key",
			events:    []*clientv3.Event{put(kv("junk", udpValue, 0, 10), nil)},
			malformed: []string{dir + "junk"},
		},
		{
			name:      "nested key",
			events:    []*clientv3.Event{put(kv("10.244.1.0-24/x", udpValue, 0, 10), nil)},
			malformed: []string{dir + "10.244.1.0-24/x"},
		},
		{
			name:      "non-canonical dual-stack key",
			events:    []*clientv3.Event{put(kv("10.244.1.0-24&fd00:0::-64", udpValue, 0, 10), nil)},
			malformed: []string{dir + "10.244.1.0-24&fd00:0::-64"},
		},
		{
			name:      "garbage over a lease removes it",
			events:    []*clientv3.Event{put(kv("10.244.1.0-24", `{`, 0, 11), kv("10.244.1.0-24", vxlanValue, 7, 10))},
			want:      []want{{subnet.Removed, "10.244.1.0/24", "192.0.2.2", 7, 11}},
			malformed: []string{dir + "10.244.1.0-24"},
		},
		{
			name:      "garbage over garbage",
			events:    []*clientv3.Event{put(kv("10.244.1.0-24", `{`, 0, 11), kv("10.244.1.0-24", `[]`, 0, 10))},
			malformed: []string{dir + "10.244.1.0-24"},
		},
		{
			name:      "garbage on a new key",
			events:    []*clientv3.Event{put(kv("10.244.1.0-24", `{"PublicIP":"10.0.0.300"}`, 0, 11), nil)},
			malformed: []string{dir + "10.244.1.0-24"},
		},
		{
			name:   "delete with previous value",
			events: []*clientv3.Event{del("10.244.1.0-24", 12, kv("10.244.1.0-24", vxlanValue, 7, 10))},
			want:   []want{{subnet.Removed, "10.244.1.0/24", "192.0.2.2", 7, 12}},
		},
		{
			name:   "delete without previous value",
			events: []*clientv3.Event{del("10.244.1.0-24", 12, nil)},
			want:   []want{{subnet.Removed, "10.244.1.0/24", "", 0, 12}},
		},
		{
			name:   "delete of garbage value",
			events: []*clientv3.Event{del("10.244.1.0-24", 12, kv("10.244.1.0-24", `{`, 0, 10))},
			want:   []want{{subnet.Removed, "10.244.1.0/24", "", 0, 12}},
		},
		{
			name:   "delete of a non-lease key",
			events: []*clientv3.Event{del("junk", 12, kv("junk", udpValue, 0, 10))},
		},
		{
			name: "order kept across keys",
			events: []*clientv3.Event{
				put(kv("10.244.1.0-24", udpValue, 0, 10), nil),
				put(kv("junk", udpValue, 0, 11), nil),
				del("10.244.2.0-24", 12, nil),
				put(kv("10.244.2.0-24", vxlanValue, 9, 13), nil),
			},
			want: []want{
				{subnet.Added, "10.244.1.0/24", "192.0.2.1", 0, 10},
				{subnet.Removed, "10.244.2.0/24", "", 0, 12},
				{subnet.Added, "10.244.2.0/24", "192.0.2.2", 9, 13},
			},
			malformed: []string{dir + "junk"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := translate(dir, tc.events)
			if len(b.Events) != len(tc.want) {
				t.Fatalf("events %+v, want %+v", b.Events, tc.want)
			}
			for i, w := range tc.want {
				ev := b.Events[i]
				pub := ""
				if ev.Lease.Attrs.PublicIP.IsValid() {
					pub = ev.Lease.Attrs.PublicIP.String()
				}
				got := want{ev.Type, ev.Lease.Subnet.String(), pub, ev.Lease.TTLID, ev.Lease.Revision}
				if got != w {
					t.Errorf("event %d = %+v, want %+v", i, got, w)
				}
			}
			if len(b.Malformed) != len(tc.malformed) {
				t.Fatalf("malformed %+v, want keys %q", b.Malformed, tc.malformed)
			}
			for i, k := range tc.malformed {
				if b.Malformed[i].Key != k || b.Malformed[i].Err == nil {
					t.Errorf("malformed %d = %+v, want key %q with an error", i, b.Malformed[i], k)
				}
			}
		})
	}
}

func TestTranslateDualStackDelete(t *testing.T) {
	b := translate(dir, []*clientv3.Event{del("10.244.1.0-24&fd00:0:0:1::-64", 5, nil)})
	if len(b.Events) != 1 || b.Events[0].Lease.IPv6Subnet != netip.MustParsePrefix("fd00:0:0:1::/64") {
		t.Fatalf("events %+v, want Removed with the IPv6 subnet", b.Events)
	}
}

// FuzzParseLease feeds arbitrary stored keys and values through the registry's decoding
// (decodeLease, as used by ListLeases, and translate, as used by WatchLeases). Whatever it
// accepts must name its own key again (Lease.Key), re-encode in flannel's format, and read
// back to the same attributes; the encoding must be a fixed point.
func FuzzParseLease(f *testing.F) {
	for _, k := range []string{"10.244.1.0-24", "10.244.0.0-16", "10.244.1.0-24&fd00:0:0:1::-64", "junk", "10.244.1.1-24", "1.2.3.0-24/x"} {
		for _, v := range []string{udpValue, vxlanValue, `{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"host-gw"}`,
			`{"PublicIP":"192.0.2.1","PublicIPv6":"fd00::1","BackendV6Data":{"a":[1, 2]}}`, `{`, `null`, `{"PublicIP":null}`} {
			f.Add(k, []byte(v))
		}
	}
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		stored := &mvccpb.KeyValue{Key: []byte(dir + key), Value: value, Lease: 7, ModRevision: 9}
		b := translate(dir, []*clientv3.Event{put(stored, nil), del(key, 10, stored)})
		l, err := decodeLease(dir, stored)
		if err != nil {
			if len(b.Malformed) != 1 || b.Malformed[0].Key != dir+key {
				t.Fatalf("rejected %q=%q (%v) but the watch reported %+v", key, value, err, b)
			}
			return
		}
		if len(b.Events) != 2 || b.Events[0].Type != subnet.Added || b.Events[1].Type != subnet.Removed || len(b.Malformed) != 0 {
			t.Fatalf("accepted %q=%q but the watch gave %+v", key, value, b)
		}
		if l.Key() != key || l.TTLID != 7 || l.Revision != 9 {
			t.Fatalf("decoded %q as %+v (key %q)", key, l, l.Key())
		}
		enc, back, err := encodeAttrs(netip.Prefix{}, netip.Prefix{}, l.Attrs)
		if err != nil {
			t.Fatalf("accepted %q but cannot write it back: %v", value, err)
		}
		again, err := decodeLease(dir, &mvccpb.KeyValue{Key: []byte(dir + l.Key()), Value: enc})
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", enc, err)
		}
		if !again.Attrs.Equal(l.Attrs) || !again.Attrs.Equal(back) {
			t.Fatalf("round trip changed %+v into %+v", l.Attrs, again.Attrs)
		}
		if enc2, _, err := encodeAttrs(netip.Prefix{}, netip.Prefix{}, again.Attrs); err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not a fixed point: %q then %q (%v)", enc, enc2, err)
		}
	})
}
