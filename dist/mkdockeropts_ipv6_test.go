package dist

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// checkOutput runs mk-docker-opts.sh with runner on a subnet file holding input (MARKER
// replaced by a path that must never be created), -f, -d and args, and compares the output
// file with testdata/mk-docker-opts/golden. The script must exit 0 with nothing on stdout
// and, on stderr, nothing when wantStderr is empty, else a text containing it.
func checkOutput(t *testing.T, runner []string, input string, args, env []string, golden, wantStderr string) {
	t.Helper()
	dir := t.TempDir()
	marker := filepath.Join(dir, "marker")
	subnetFile := filepath.Join(dir, "subnet.env")
	if err := os.WriteFile(subnetFile, []byte(strings.ReplaceAll(input, "MARKER", marker)), 0o644); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(outDir, "docker_opts.env")
	res := runScript(t, runner, dir, env, append([]string{"-f", subnetFile, "-d", out}, args...)...)
	if res.code != 0 || res.stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and no output", res.code, res.stdout, res.stderr)
	}
	if wantStderr == "" && res.stderr != "" || !strings.Contains(res.stderr, wantStderr) {
		t.Errorf("stderr %q; want %q in it (nothing when empty)", res.stderr, wantStderr)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := readGolden(t, golden); string(got) != want {
		t.Errorf("output differs from testdata/mk-docker-opts/%s\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("output mode: %v, %v; want 0644", fi.Mode(), err)
	}
	if names := dirEntries(t, outDir); !slices.Equal(names, []string{"docker_opts.env"}) {
		t.Errorf("output directory holds %q; want only docker_opts.env (a temporary file left behind?)", names)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the subnet file was executed: %s exists", marker)
	}
}

// TestMkDockerOptsIPv6: -6 adds DOCKER_OPT_IPV6="--ipv6 --fixed-cidr-v6=<FLANNEL_IPV6_SUBNET>"
// (sorted among the others, folded into the combined options) for dual-stack and IPv6-only
// files; without -6 the output is what it was. An IPv6-only file (no FLANNEL_SUBNET) gives
// no --bip, with a note on stderr, and no error.
func TestMkDockerOptsIPv6(t *testing.T) {
	v4 := readGolden(t, "subnet.env")
	dual := readGolden(t, "subnet-dual.env")
	v6only := readGolden(t, "subnet-ipv6-only.env")
	const noBip = "has no FLANNEL_SUBNET (an IPv6-only network): no --bip"
	tests := []struct {
		name, input string
		args, env   []string
		golden      string
		stderr      string
	}{
		{name: "dual stack without -6 is unchanged", input: dual, golden: "both.env"},
		{name: "dual stack -6", input: dual, args: []string{"-6"}, golden: "dual-ipv6.env"},
		{name: "dual stack -6 -c", input: dual, args: []string{"-c", "-6"}, golden: "dual-ipv6-combined.env"},
		{name: "weftd's dual-stack file -6", input: weftSubnetFile(), args: []string{"-6"}, golden: "dual-ipv6.env"},
		{
			name:  "IPv6 network whose length splits a group",
			input: "FLANNEL_IPV6_NETWORK=fd00:10:244:100::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:133::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			args:  []string{"-6"}, golden: "ipv6-only-ipv6-split.env", stderr: noBip,
		},
		{name: "IPv4-only file -6 is unchanged", input: v4, args: []string{"-6"}, golden: "both.env"},
		{name: "IPv6-only -6", input: v6only, args: []string{"-6"}, golden: "ipv6-only-ipv6.env", stderr: noBip},
		{name: "IPv6-only without -6", input: v6only, golden: "ipv6-only.env", stderr: noBip},
		{
			name:  "IPv6 forms: compressed, full, upper case",
			input: "FLANNEL_IPV6_NETWORK=FD00:0010:0244:0000:0000:0000:0000:0000/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:33::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			args:  []string{"-6"}, golden: "ipv6-only-ipv6.env", stderr: noBip,
		},
		{
			name: "DOCKER_OPT_IPV6 from the environment is replaced with -6", input: dual, args: []string{"-6"},
			env: []string{"DOCKER_OPT_IPV6=--ipv6=false"}, golden: "dual-ipv6.env",
		},
	}
	for runnerName, runner := range scriptRunners(t) {
		for _, tc := range tests {
			t.Run(runnerName+"/"+tc.name, func(t *testing.T) {
				checkOutput(t, runner, tc.input, tc.args, tc.env, tc.golden, tc.stderr)
			})
		}
	}
}

// TestMkDockerOptsRejectsIPv6: malformed IPv6 values, and a family with only one of its two
// keys, are errors naming the key and value; the output file is left as it was.
func TestMkDockerOptsRejectsIPv6(t *testing.T) {
	const (
		network  = "FLANNEL_NETWORK=10.244.0.0/16\n"
		subnet   = "FLANNEL_SUBNET=10.244.51.1/24\n"
		network6 = "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\n"
		subnet6  = "FLANNEL_IPV6_SUBNET=fd00:10:244:33::1/64\n"
		tail     = "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	)
	badNet := func(v string) string { return network + subnet + "FLANNEL_IPV6_NETWORK=" + v + "\n" + subnet6 + tail }
	badSub := func(v string) string { return network6 + "FLANNEL_IPV6_SUBNET=" + v + "\n" + tail }
	tests := []struct{ name, input, wantErr string }{
		{"network with host bits", badNet("fd00:10:244::1/56"), "malformed FLANNEL_IPV6_NETWORK 'fd00:10:244::1/56'"},
		{"network with host bits in a partial group", badNet("fd00:10:244:1::/56"), "malformed FLANNEL_IPV6_NETWORK 'fd00:10:244:1::/56'"},
		{"network IPv4", badNet("10.244.0.0/16"), "malformed FLANNEL_IPV6_NETWORK '10.244.0.0/16'"},
		{"network length 129", badNet("fd00::/129"), "malformed FLANNEL_IPV6_NETWORK"},
		{"network without length", badNet("fd00::"), "malformed FLANNEL_IPV6_NETWORK"},
		{"network with code", badNet("$(touch MARKER)"), "malformed FLANNEL_IPV6_NETWORK '$(touch "},
		{"subnet with two ::", badSub("fd00::33::1/64"), "malformed FLANNEL_IPV6_SUBNET 'fd00::33::1/64'"},
		{"subnet with :::", badSub("fd00:::1/64"), "malformed FLANNEL_IPV6_SUBNET"},
		{"subnet with nine groups", badSub("fd00:10:244:33:0:0:0:0:1/64"), "malformed FLANNEL_IPV6_SUBNET"},
		{"subnet with seven groups", badSub("fd00:10:244:33:0:0:1/64"), "malformed FLANNEL_IPV6_SUBNET"},
		{"subnet with eight groups and ::", badSub("fd00:10:244:33:0:0:0::1/64"), "malformed FLANNEL_IPV6_SUBNET"},
		{"subnet with a five-digit group", badSub("fd000::1/64"), "malformed FLANNEL_IPV6_SUBNET"},
		{"subnet with a leading colon", badSub(":fd00::1/64"), "malformed FLANNEL_IPV6_SUBNET"},
		{"subnet with a trailing colon", badSub("fd00::1:/64"), "malformed FLANNEL_IPV6_SUBNET"},
		{"subnet with a zone", badSub("fe80::1%eth0/64"), "malformed FLANNEL_IPV6_SUBNET"},
		{"subnet with a dotted tail", badSub("::ffff:10.244.51.1/120"), "malformed FLANNEL_IPV6_SUBNET"},
		{"subnet with a space inside", badSub("fd00::1/64 --debug"), "malformed FLANNEL_IPV6_SUBNET"},
		{"subnet length with a leading zero", badSub("fd00::1/064"), "malformed FLANNEL_IPV6_SUBNET"},
		{"subnet IPv4", badSub("10.244.51.1/24"), "malformed FLANNEL_IPV6_SUBNET"},
		{"IPv6 network without its subnet", network + subnet + network6 + tail, "has no FLANNEL_IPV6_SUBNET"},
		{"IPv6 subnet without its network", subnet6 + tail, "has no FLANNEL_IPV6_NETWORK"},
		{"IPv4 network without its subnet in a dual-stack file", network + network6 + subnet6 + tail, "has no FLANNEL_SUBNET"},
		{"only MTU and IPMASQ", tail, "has no FLANNEL_NETWORK (nor FLANNEL_IPV6_NETWORK)"},
		{"IPv6-only without MTU", network6 + subnet6 + "FLANNEL_IPMASQ=true\n", "has no FLANNEL_MTU"},
	}
	for runnerName, runner := range scriptRunners(t) {
		for _, tc := range tests {
			t.Run(runnerName+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				marker := filepath.Join(dir, "marker")
				subnetFile := filepath.Join(dir, "subnet.env")
				if err := os.WriteFile(subnetFile, []byte(strings.ReplaceAll(tc.input, "MARKER", marker)), 0o644); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(dir, "docker_opts.env")
				const previous = "DOCKER_OPTS=\" --bip=10.9.9.1/24 --mtu=1400\"\n"
				if err := os.WriteFile(out, []byte(previous), 0o644); err != nil {
					t.Fatal(err)
				}
				res := runScript(t, runner, dir, nil, "-6", "-f", subnetFile, "-d", out)
				if res.code != 1 || !strings.Contains(res.stderr, tc.wantErr) {
					t.Errorf("exit %d, stderr %q; want 1 and %q", res.code, res.stderr, tc.wantErr)
				}
				if got, err := os.ReadFile(out); err != nil || string(got) != previous {
					t.Errorf("output file touched: %q, %v", got, err)
				}
				if _, err := os.Stat(marker); err == nil {
					t.Errorf("input was executed: %s exists", marker)
				}
			})
		}
	}
}
