package subnet

import (
	"encoding/json"
	"net/netip"
	"testing"
)

// Values as flanneld v0.28 writes them (FLANNEL-COMPAT.md): weft must parse them and write
// the very same bytes.
var flannelValues = []string{
	`{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}}`,
	`{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"host-gw"}`,
	`{"PublicIP":"192.0.2.1","PublicIPv6":null}`,
}

func TestLeaseValuesRoundTripByteExact(t *testing.T) {
	for _, v := range flannelValues {
		var a LeaseAttrs
		if err := json.Unmarshal([]byte(v), &a); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		out, err := json.Marshal(a)
		if err != nil || string(out) != v {
			t.Errorf("round trip:\n got %s (%v)\nwant %s", out, err, v)
		}
	}
	// Indented BackendData is compacted; PublicIPv6 is written when set.
	a := LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.3"), PublicIPv6: netip.MustParseAddr("2001:db8::3"), BackendType: "vxlan", BackendData: json.RawMessage("{\n \"VNI\": 1 }")}
	out, _ := json.Marshal(a)
	if want := `{"PublicIP":"192.0.2.3","PublicIPv6":"2001:db8::3","BackendType":"vxlan","BackendData":{"VNI":1}}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
}

func TestLeaseValueErrors(t *testing.T) {
	for _, v := range []string{`{}`, `{"PublicIP":"x"}`, `{"PublicIP":"2001:db8::1"}`, `{"PublicIP":"192.0.2.1","PublicIPv6":"1.2.3.4"}`, `[`, `null`} {
		var a LeaseAttrs
		if err := json.Unmarshal([]byte(v), &a); err == nil {
			t.Errorf("%s parsed, want an error", v)
		}
	}
}

func TestLeaseKeys(t *testing.T) {
	for key, want := range map[string]string{
		"10.244.5.0-24":             "10.244.5.0/24",
		"10.244.78.0-24&fd00::-64":  "10.244.78.0/24",
		"10.244.5.0-24&fd00:1::-64": "10.244.5.0/24",
	} {
		v4, _, err := ParseLeaseKey(key)
		if err != nil || v4 != netip.MustParsePrefix(want) {
			t.Errorf("ParseLeaseKey(%q) = %v, %v", key, v4, err)
		}
		v4, v6, _ := ParseLeaseKey(key)
		if LeaseKey(v4, v6) != key {
			t.Errorf("LeaseKey round trip of %q gives %q", key, LeaseKey(v4, v6))
		}
	}
	for _, bad := range []string{"", "10.244.5.0", "10.244.5.1-24", "10.244.5.0-33", "10.244.5.0-024", "10.244.5.0-+24", "fd00::-64", "10.244.5.0-24&10.1.0.0-16", "10.244.5.0-24&", "x-1", "10.244.5.0/24"} {
		if _, _, err := ParseLeaseKey(bad); err == nil {
			t.Errorf("ParseLeaseKey(%q) accepted", bad)
		}
	}
}

func FuzzParseLease(f *testing.F) {
	for _, v := range flannelValues {
		f.Add("10.244.5.0-24", []byte(v))
	}
	f.Add("10.244.78.0-24&fd00::-64", []byte(`{"PublicIP":"192.0.2.1","PublicIPv6":"fd00::1"}`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		l, err := ParseLease(key, value)
		if err != nil {
			return
		}
		// Anything accepted re-encodes and parses back to the same lease.
		out, err := json.Marshal(l.Attrs)
		if err != nil {
			t.Fatalf("accepted %q but cannot re-encode: %v", value, err)
		}
		again, err := ParseLease(l.Key(), out)
		if err != nil || !again.Attrs.Equal(l.Attrs) || again.Subnet != l.Subnet {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
	})
}
