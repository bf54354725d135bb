package subnetenv

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMarshalIsFlannelsFormat(t *testing.T) {
	e := Env{
		Network: netip.MustParsePrefix("10.244.0.0/16"),
		Subnet:  netip.MustParsePrefix("10.244.5.1/24"),
		MTU:     1450,
		IPMasq:  true,
	}
	want := "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	if got := string(e.Marshal()); got != want {
		t.Errorf("Marshal:\n%s\nwant (flanneld's order):\n%s", got, want)
	}
	e.IPv6Network = netip.MustParsePrefix("fd00:10::/56")
	e.IPv6Subnet = netip.MustParsePrefix("fd00:10:0:5::1/64")
	want = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_IPV6_SUBNET=fd00:10:0:5::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	if got := string(e.Marshal()); got != want {
		t.Errorf("Marshal with IPv6:\n%s\nwant:\n%s", got, want)
	}
}

func TestParse(t *testing.T) {
	e, err := Parse([]byte("# written by flanneld\r\n\nFLANNEL_NETWORK=10.244.0.0/16\r\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\nFLANNEL_FUTURE=whatever\n  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Network.String() != "10.244.0.0/16" || e.Subnet.String() != "10.244.5.1/24" || e.MTU != 1472 || e.IPMasq {
		t.Errorf("parsed %+v", e)
	}
	for _, tc := range []struct{ in, want string }{
		{"FLANNEL_SUBNET=10.244.5.1/24\n", "FLANNEL_NETWORK is missing"},
		{"FLANNEL_NETWORK=10.244.0.0/16\n", "FLANNEL_SUBNET is missing"},
		{"", "required"},
		{"FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", "required"},
		{"FLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_MTU=1450\n", "FLANNEL_IPV6_SUBNET is missing"},
		{"FLANNEL_IPV6_SUBNET=fd00:10:0:5::1/64\n", "FLANNEL_IPV6_NETWORK is missing"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_IPV6_SUBNET=fd00:10:0:5::1/64\n", "FLANNEL_SUBNET is missing"},
		{"FLANNEL_NETWORK=fd00:10::/56\nFLANNEL_SUBNET=10.244.5.1/24\n", "not an IPv4 prefix"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=fd00:10:0:5::1/64\n", "FLANNEL_SUBNET"},
		{"FLANNEL_IPV6_NETWORK=10.244.0.0/16\nFLANNEL_IPV6_SUBNET=fd00:10:0:5::1/64\n", "not an IPv6 prefix"},
		{"FLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_IPV6_SUBNET=::ffff:10.244.5.1/120\n", "FLANNEL_IPV6_SUBNET"},
		{"FLANNEL_IPV6_NETWORK=fd00:10::/129\nFLANNEL_IPV6_SUBNET=fd00:10:0:5::1/64\n", "FLANNEL_IPV6_NETWORK"},
		{"FLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_IPV6_SUBNET=fe80::1%eth0/64\n", "FLANNEL_IPV6_SUBNET"},
		{"FLANNEL_NETWORK=10.244.0.0\nFLANNEL_SUBNET=10.244.5.1/24\n", "FLANNEL_NETWORK"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/33\n", "FLANNEL_SUBNET"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=67\n", "FLANNEL_MTU"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=65536\n", "FLANNEL_MTU"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=x\n", "FLANNEL_MTU"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_IPMASQ=1\n", "FLANNEL_IPMASQ"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nexport X\n", "not KEY=value"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_IPV6_SUBNET=fd00::1\n", "FLANNEL_IPV6_SUBNET"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=" + strings.Repeat("1", 70000) + "\n", "too long"},
	} {
		if _, err := Parse([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%.60q) = %v, want an error mentioning %q", tc.in, err, tc.want)
		}
	}
}

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "flannel", "subnet.env")
	e := Env{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.5.1/24"), MTU: 1500}
	if err := Write(path, e); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil || got != e {
		t.Fatalf("Read after Write: %+v, %v; want %+v", got, err, e)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, %v; want 0644", st.Mode(), err)
	}
	// A rewrite replaces the file whole and leaves no temporary file behind.
	e.Subnet = netip.MustParsePrefix("10.244.9.1/24")
	if err := Write(path, e); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(path); err != nil || got != e {
		t.Fatalf("Read after rewrite: %+v, %v", got, err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil || len(entries) != 1 {
		t.Fatalf("directory holds %v (%v), want only subnet.env", entries, err)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing")); !os.IsNotExist(err) {
		t.Errorf("Read of a missing file: %v, want a not-exist error", err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Read of garbage: %v, want an error naming the path", err)
	}
}

// flanneld's files, as its WriteSubnetFile writes them for the three kinds of network.
const (
	flannelIPv4Only = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	flannelDual     = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_IPV6_SUBNET=fd00:10:0:5::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	flannelIPv6Only = "FLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_IPV6_SUBNET=fd00:10:0:5::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
)

// Each of flanneld's three file shapes parses into the Env that marshals back to the same
// bytes; the IPv6-only file has no IPv4 lines and no IPv4 fields.
func TestFlanneldFilesRoundTrip(t *testing.T) {
	v4net, v4sub := netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.5.1/24")
	v6net, v6sub := netip.MustParsePrefix("fd00:10::/56"), netip.MustParsePrefix("fd00:10:0:5::1/64")
	for _, tc := range []struct {
		name, file string
		want       Env
		v4, v6     bool
	}{
		{"ipv4-only", flannelIPv4Only, Env{Network: v4net, Subnet: v4sub, MTU: 1450, IPMasq: true}, true, false},
		{"dual-stack", flannelDual, Env{Network: v4net, Subnet: v4sub, IPv6Network: v6net, IPv6Subnet: v6sub, MTU: 1450, IPMasq: true}, true, true},
		{"ipv6-only", flannelIPv6Only, Env{IPv6Network: v6net, IPv6Subnet: v6sub, MTU: 1450}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Parse([]byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if e != tc.want {
				t.Fatalf("Parse = %+v, want %+v", e, tc.want)
			}
			if e.HasIPv4() != tc.v4 || e.HasIPv6() != tc.v6 {
				t.Errorf("HasIPv4, HasIPv6 = %t, %t; want %t, %t", e.HasIPv4(), e.HasIPv6(), tc.v4, tc.v6)
			}
			if got := string(e.Marshal()); got != tc.file {
				t.Errorf("Marshal:\n%s\nwant flanneld's:\n%s", got, tc.file)
			}
			if err := e.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			path := filepath.Join(t.TempDir(), "subnet.env")
			if err := Write(path, e); err != nil {
				t.Fatal(err)
			}
			if data, err := os.ReadFile(path); err != nil || string(data) != tc.file {
				t.Errorf("Write wrote %q (%v), want %q", data, err, tc.file)
			}
			if got, err := Read(path); err != nil || got != e {
				t.Errorf("Read = %+v, %v; want %+v", got, err, e)
			}
		})
	}
}

// Write refuses an Env that would make a file Parse (and the CNI plugin) cannot read, and
// leaves the file already there as it was.
func TestWriteRefusesIncompleteEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	if err := os.WriteFile(path, []byte(flannelDual), 0o644); err != nil {
		t.Fatal(err)
	}
	v4net, v4sub := netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.5.1/24")
	v6net, v6sub := netip.MustParsePrefix("fd00:10::/56"), netip.MustParsePrefix("fd00:10:0:5::1/64")
	for _, tc := range []struct {
		e    Env
		want string
	}{
		{Env{MTU: 1450}, "neither"},
		{Env{Network: v4net, MTU: 1450}, "FLANNEL_SUBNET is missing"},
		{Env{Subnet: v4sub, MTU: 1450}, "FLANNEL_NETWORK is missing"},
		{Env{IPv6Network: v6net, MTU: 1450}, "FLANNEL_IPV6_SUBNET is missing"},
		{Env{Network: v4net, Subnet: v4sub, IPv6Subnet: v6sub, MTU: 1450}, "FLANNEL_IPV6_NETWORK is missing"},
		{Env{Network: v6net, Subnet: v4sub, MTU: 1450}, "not an IPv4 prefix"},
		{Env{IPv6Network: v4net, IPv6Subnet: v6sub, MTU: 1450}, "not an IPv6 prefix"},
		{Env{Network: v4net, Subnet: v4sub}, "FLANNEL_MTU=0"},
		{Env{IPv6Network: v6net, IPv6Subnet: v6sub, MTU: 65536}, "FLANNEL_MTU=65536"},
	} {
		if err := Write(path, tc.e); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("Write(%+v) = %v, want an error naming the path and %q", tc.e, err, tc.want)
		}
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != flannelDual {
		t.Errorf("after refused writes the file is %q (%v), want it untouched", data, err)
	}
}
