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
		{"FLANNEL_SUBNET=10.244.5.1/24\n", "required"},
		{"FLANNEL_NETWORK=10.244.0.0/16\n", "required"},
		{"", "required"},
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
