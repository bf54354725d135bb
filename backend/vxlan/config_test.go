package vxlan

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/subnet"
)

func TestParseConfigDefaultsAndKeys(t *testing.T) {
	off := false
	for _, c := range []struct {
		raw  string
		want Config
	}{
		{``, Config{VNI: 1}},
		{`null`, Config{VNI: 1}},
		{`{"Type":"vxlan"}`, Config{VNI: 1}},
		{`{"Type":"vxlan","VNI":4096,"Port":4789,"GBP":true,"Learning":true,"DirectRouting":true,"MTU":9000,"ChecksumOffload":false}`,
			Config{VNI: 4096, Port: 4789, GBP: true, Learning: true, DirectRouting: true, MTU: 9000, ChecksumOffload: &off}},
		{`{"vni":2,"directrouting":true}`, Config{VNI: 2, DirectRouting: true}}, // flanneld's decoder ignores case too
		{`{"VNI":16777215,"Port":65535}`, Config{VNI: 16777215, Port: 65535}},
		{`{"ChecksumOffload":null}`, Config{VNI: 1}},
	} {
		got, err := ParseConfig(json.RawMessage(c.raw))
		if err != nil {
			t.Errorf("ParseConfig(%s): %v", c.raw, err)
			continue
		}
		if got.VNI != c.want.VNI || got.Port != c.want.Port || got.GBP != c.want.GBP || got.Learning != c.want.Learning ||
			got.DirectRouting != c.want.DirectRouting || got.MTU != c.want.MTU ||
			(got.ChecksumOffload == nil) != (c.want.ChecksumOffload == nil) ||
			(got.ChecksumOffload != nil && *got.ChecksumOffload != *c.want.ChecksumOffload) {
			t.Errorf("ParseConfig(%s) = %+v, want %+v", c.raw, got, c.want)
		}
	}
}

func TestValidateErrorsNameKeyAndValue(t *testing.T) {
	for _, c := range []struct {
		raw   string
		words []string // each must appear in the error
	}{
		{`{"VNI":0}`, []string{"VNI", "0"}},
		{`{"VNI":-1}`, []string{"VNI", "-1"}},
		{`{"VNI":16777216}`, []string{"VNI", "16777216"}},
		{`{"VNI":"1"}`, []string{"VNI", `"1"`, "integer"}},
		{`{"VNI":1.5}`, []string{"VNI", "1.5"}},
		{`{"Port":-1}`, []string{"Port", "-1"}},
		{`{"Port":65536}`, []string{"Port", "65536"}},
		{`{"Port":"8472"}`, []string{"Port", `"8472"`}},
		{`{"MTU":100}`, []string{"MTU", "100"}},
		{`{"MTU":-5}`, []string{"MTU", "-5"}},
		{`{"MTU":"1500"}`, []string{"MTU", `"1500"`}},
		{`{"GBP":"yes"}`, []string{"GBP", `"yes"`}},
		{`{"Learning":1}`, []string{"Learning", "1", "true or false"}},
		{`{"DirectRouting":"true"}`, []string{"DirectRouting", `"true"`}},
		{`{"ChecksumOffload":"auto"}`, []string{"ChecksumOffload", `"auto"`}},
		{`[1]`, []string{"not a JSON object"}},
		{`{"VNI":1`, []string{"not a JSON object"}},
	} {
		err := Validate(json.RawMessage(c.raw))
		if err == nil {
			t.Errorf("Validate(%s) = nil, want an error", c.raw)
			continue
		}
		if !errors.Is(err, subnet.ErrInvalidConfig) {
			t.Errorf("Validate(%s) = %v, does not wrap ErrInvalidConfig", c.raw, err)
		}
		for _, w := range c.words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%s) = %q, want it to mention %q", c.raw, err, w)
			}
		}
	}
}

// TestPodMTU: the pod MTU is the underlay's (the MTU key, else the interface's) less the
// VXLAN overhead of the family, at least what the family needs; an MTU key that cannot
// work is an invalid-config error naming the key and its value.
func TestPodMTU(t *testing.T) {
	type mtuCase struct {
		key, ext, want int
		ok             bool
	}
	for _, fam := range []struct {
		name   string
		podMTU func(Config, int) (int, error)
		cases  []mtuCase
	}{
		{"ipv4", podMTU, []mtuCase{
			{0, 1500, 1450, true},
			{0, 9000, 8950, true},
			{1400, 1500, 1350, true},
			{1500, 1500, 1450, true},
			{1501, 1500, 0, false}, // larger than the interface
			{0, 100, 0, false},     // interface too small for VXLAN
		}},
		{"ipv6", podMTUv6, []mtuCase{
			{0, 1500, 1430, true},
			{0, 9000, 8930, true},
			{1400, 1500, 1330, true},
			{0, 1350, 1280, true},
			{0, 1349, 0, false}, // IPv6 needs 1280
			{1600, 1500, 0, false},
			{1340, 1500, 0, false}, // the key, too small for IPv6
		}},
	} {
		t.Run(fam.name, func(t *testing.T) {
			for _, c := range fam.cases {
				got, err := fam.podMTU(Config{VNI: 1, MTU: c.key}, c.ext)
				if got != c.want || (err == nil) != c.ok {
					t.Errorf("MTU=%d, ext %d: %d, %v; want %d ok=%v", c.key, c.ext, got, err, c.want, c.ok)
				}
				if c.key == 0 || err == nil {
					continue
				}
				if !errors.Is(err, subnet.ErrInvalidConfig) {
					t.Errorf("MTU=%d: %v is not an invalid-config error", c.key, err)
				}
				if !strings.Contains(err.Error(), "MTU") || !strings.Contains(err.Error(), fmt.Sprint(c.key)) {
					t.Errorf("MTU=%d: error %v should name key and value", c.key, err)
				}
			}
		})
	}
}

func TestNeedTxChecksumOff(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		major, minor int
		override     *bool
		want         bool
	}{
		{3, 10, nil, true},
		{4, 19, nil, true},
		{5, 4, nil, true},
		{5, 6, nil, true},
		{5, 7, nil, false},
		{5, 15, nil, false},
		{6, 0, nil, false},
		{6, 18, nil, false},
		{4, 19, &yes, false}, // offload forced on: leave it
		{6, 1, &no, true},    // offload forced off
		{5, 7, &no, true},
	} {
		if got := needTxChecksumOff(c.major, c.minor, c.override); got != c.want {
			t.Errorf("needTxChecksumOff(%d, %d, %v) = %v, want %v", c.major, c.minor, c.override, got, c.want)
		}
	}
}

func TestVtepMAC(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	m1 := vtepMAC(a, 1)
	if len(m1) != 6 || m1[0]&0x01 != 0 || m1[0]&0x02 == 0 {
		t.Fatalf("vtepMAC = %s: want a 6-byte locally administered unicast MAC", m1)
	}
	if m2 := vtepMAC(a, 1); m1.String() != m2.String() {
		t.Fatalf("vtepMAC not stable: %s vs %s", m1, m2)
	}
	if vtepMAC(a, 2).String() == m1.String() || vtepMAC(netip.MustParseAddr("192.0.2.2"), 1).String() == m1.String() {
		t.Fatal("vtepMAC ignores its inputs")
	}
}

func TestLeaseDataBytes(t *testing.T) {
	mac, _ := net.ParseMAC("fa:a7:71:71:58:90")
	for _, c := range []struct {
		vni  int
		want string
	}{
		{1, `{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}`},
		{4096, `{"VNI":4096,"VtepMAC":"fa:a7:71:71:58:90"}`},
		{65536 + 7, `{"VNI":7,"VtepMAC":"fa:a7:71:71:58:90"}`}, // flanneld writes a uint16
	} {
		if got := string(marshalLeaseData(c.vni, mac)); got != c.want {
			t.Errorf("marshalLeaseData(%d) = %s, want %s", c.vni, got, c.want)
		}
	}
	// Inside a whole lease value, as flanneld writes it.
	attrs := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.2"), BackendType: Name, BackendData: marshalLeaseData(1, mac)}
	b, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}}`
	if string(b) != want {
		t.Fatalf("lease value = %s\nwant          %s", b, want)
	}
}

func TestParseLeaseData(t *testing.T) {
	for _, c := range []struct {
		raw string
		ok  bool
		vni int
	}{
		{`{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}`, true, 1},
		{`{"VtepMAC":"FA:A7:71:71:58:90"}`, true, 0},
		{`{"VNI":1,"VtepMAC":"fa-a7-71-71-58-90"}`, true, 1},
		{``, false, 0},
		{`null`, false, 0},
		{`{"VNI":1}`, false, 0},
		{`{"VNI":1,"VtepMAC":"nope"}`, false, 0},
		{`{"VNI":1,"VtepMAC":"00:00:00:00:00:00"}`, false, 0},
		{`{"VNI":1,"VtepMAC":"ff:ff:ff:ff:ff:ff"}`, false, 0},
		{`{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"}`, false, 0},
		{`{"VNI":1,"VtepMAC":"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"}`, false, 0},
		{`{"VNI":-1,"VtepMAC":"fa:a7:71:71:58:90"}`, false, 0},
		{`{"VNI":1.5,"VtepMAC":"fa:a7:71:71:58:90"}`, false, 0},
		{`{"VNI":1,"VtepMAC":5}`, false, 0},
		{`[]`, false, 0},
	} {
		d, err := parseLeaseData(json.RawMessage(c.raw))
		if (err == nil) != c.ok || (c.ok && d.VNI != c.vni) {
			t.Errorf("parseLeaseData(%s) = %+v, %v; want ok=%v vni=%d", c.raw, d, err, c.ok, c.vni)
		}
	}
}

// TestCheckPeerData: the Type's part of admission refuses the BackendData the network
// could not program (no or a bad VTEP MAC, a bad VNI), whatever else the lease says.
func TestCheckPeerData(t *testing.T) {
	check := Type().CheckPeerData
	if check == nil {
		t.Fatal("the vxlan Type has no CheckPeerData")
	}
	pub := netip.MustParseAddr("192.0.2.2")
	for _, c := range []struct {
		data string
		want string // substring of the error; "" = admitted
	}{
		{`{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}`, ""},
		{`{"VNI":4096,"VtepMAC":"fa:a7:71:71:58:90"}`, ""}, // another VNI: admitted, warned about
		{`{"VtepMAC":"fa:a7:71:71:58:90"}`, ""},
		{``, "no BackendData"},
		{`{"VNI":1}`, "no VtepMAC"},
		{`{"VNI":1,"VtepMAC":"zz"}`, "not a MAC address"},
		{`{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"}`, "not a unicast"},
		{`{"VNI":-1,"VtepMAC":"fa:a7:71:71:58:90"}`, "not a VNI"},
		{`"fa:a7:71:71:58:90"`, "BackendData"},
	} {
		attrs := subnet.LeaseAttrs{PublicIP: pub, BackendType: Name, BackendData: json.RawMessage(c.data)}
		err := check(attrs)
		if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckPeerData(%s) = %v, want ~%q", c.data, err, c.want)
		}
		if _, perr := peerFromLease(newFamily(false, deviceSpec{}, netip.Prefix{}, false), subnet.Lease{Subnet: netip.MustParsePrefix(subnetB), Attrs: attrs}); (perr == nil) != (err == nil) {
			t.Errorf("%s: CheckPeerData says %v but peerFromLease %v", c.data, err, perr)
		}
	}
}

// FuzzParseLeaseData: anything parseLeaseData accepts is programmable, and CheckPeerData
// (admission) agrees with it on every input.
func FuzzParseLeaseData(f *testing.F) {
	f.Add([]byte(`{"VNI":1,"VtepMAC":"fa:a7:71:71:58:90"}`))
	f.Add([]byte(`{"VNI":1e99,"VtepMAC":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseLeaseData(b)
		if err == nil && (len(d.MAC) != 6 || d.MAC[0]&1 != 0 || d.VNI < 0 || d.VNI > maxVNI) {
			t.Fatalf("accepted bad data %q: %+v", b, d)
		}
		if cerr := checkPeerData(subnet.LeaseAttrs{BackendType: Name, BackendData: b}); (cerr == nil) != (err == nil) {
			t.Fatalf("%q: checkPeerData %v, parseLeaseData %v", b, cerr, err)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"Type":"vxlan","VNI":1,"Port":8472,"MTU":1500}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err == nil && (c.VNI < 1 || c.VNI > maxVNI || c.Port < 0 || c.Port > maxPort || (c.MTU != 0 && c.MTU < minPodMTU+encapOverhead)) {
			t.Fatalf("accepted bad config %q: %+v", b, c)
		}
	})
}

func TestIncompatible(t *testing.T) {
	s := deviceSpec{name: "flannel.1", vni: 1, extIndex: 2, local: netip.MustParseAddr("192.0.2.1"), port: 8472}
	good := func() *netlink.Vxlan {
		return &netlink.Vxlan{VxlanId: 1, VtepDevIndex: 2, SrcAddr: net.ParseIP("192.0.2.1"), Port: 8472}
	}
	for _, c := range []struct {
		name string
		edit func(v *netlink.Vxlan)
		bad  string // substring of the reason; "" = compatible
	}{
		{"same", func(*netlink.Vxlan) {}, ""},
		{"other MAC and MTU are fixed in place", func(v *netlink.Vxlan) { v.MTU = 1400; v.HardwareAddr = net.HardwareAddr{2, 0, 0, 0, 0, 1} }, ""},
		{"vni", func(v *netlink.Vxlan) { v.VxlanId = 5 }, "vni 5"},
		{"port", func(v *netlink.Vxlan) { v.Port = 4789 }, "dstport 4789"},
		{"local", func(v *netlink.Vxlan) { v.SrcAddr = net.ParseIP("192.0.2.9") }, "local"},
		{"no local", func(v *netlink.Vxlan) { v.SrcAddr = nil }, "local"},
		{"dev", func(v *netlink.Vxlan) { v.VtepDevIndex = 7 }, "dev index"},
		{"learning", func(v *netlink.Vxlan) { v.Learning = true }, "learning"},
		{"gbp", func(v *netlink.Vxlan) { v.GBP = true }, "gbp"},
		{"group", func(v *netlink.Vxlan) { v.Group = net.ParseIP("239.1.1.1") }, "group"},
		{"external", func(v *netlink.Vxlan) { v.FlowBased = true }, "external"},
	} {
		v := good()
		c.edit(v)
		got := incompatible(s, v)
		if (c.bad == "") != (got == "") || !strings.Contains(got, c.bad) {
			t.Errorf("%s: incompatible = %q, want %q", c.name, got, c.bad)
		}
	}
	if got := incompatible(s, &netlink.Bridge{}); !strings.Contains(got, "bridge") {
		t.Errorf("bridge named flannel.1: incompatible = %q", got)
	}
}
