package iptables

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/weftnet/weft/pkg/firewall"
)

func TestChooseMode(t *testing.T) {
	const (
		kubeLegacy = "*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-X\nCOMMIT\n"
		hint       = "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"
		canary     = "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n"
		weftRules  = "*nat\n-A POSTROUTING -j WEFT-POSTRTG\n-A WEFT-POSTRTG -j RETURN\nCOMMIT\n"
		docker     = "*filter\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\n-A INPUT -j ACCEPT\nCOMMIT\n"
		nftWarning = "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n"
	)
	for _, tc := range []struct {
		name, legacy, nft, want string
	}{
		{"nothing anywhere: nft", "", "", ModeNFT},
		{"kubelet hint in nft wins over legacy rules", kubeLegacy + docker, hint, ModeNFT},
		{"kubelet canary in legacy", canary, docker, ModeLegacy},
		{"hint in both: nft, as iptables-wrappers", hint, hint, ModeNFT},
		{"kube rules in legacy only", kubeLegacy, nftWarning + docker, ModeLegacy},
		{"weft rules in nft only", docker, weftRules, ModeNFT},
		{"more kube/weft rules in legacy", kubeLegacy + weftRules, weftRules, ModeLegacy},
		{"no kube/weft rules, more in legacy", docker, "", ModeLegacy},
		{"no kube/weft rules, tied", docker, docker, ModeNFT},
		{"a chain declaration is not a rule", ":KUBE-SERVICES - [0:0]\n", "", ModeNFT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := chooseMode(tc.legacy, tc.nft)
			if got != tc.want || reason == "" {
				t.Fatalf("chooseMode = %s (%s), want %s", got, reason, tc.want)
			}
		})
	}
}

// TestFindBinaries: with one front end installed, that one; with both, the detection picks
// and names the binary; with none, ErrNoIPTables.
func TestFindBinaries(t *testing.T) {
	real, err := exec.LookPath("iptables")
	if err != nil {
		t.Skipf("iptables not installed: %v", err)
	}
	lookIn := func(have ...string) func(string) (string, error) {
		return func(bin string) (string, error) {
			for _, h := range have {
				if bin == h {
					return real, nil // go-iptables runs --version on it
				}
			}
			return "", &exec.Error{Name: bin, Err: exec.ErrNotFound}
		}
	}
	var saved []string
	save := func(legacy string) func(string) string {
		return func(bin string) string {
			saved = append(saved, bin)
			if strings.Contains(bin, "legacy") {
				return legacy
			}
			return ""
		}
	}
	kube := "-A KUBE-FORWARD -j ACCEPT\n"
	for _, tc := range []struct {
		name       string
		have       []string
		legacySave string
		mode       string
		saves      int
	}{
		{"both, kube rules in legacy", []string{"iptables-legacy", "iptables-nft", "iptables"}, kube, ModeLegacy, 4},
		{"both, nothing anywhere", []string{"iptables-legacy", "iptables-nft"}, "", ModeNFT, 4},
		{"legacy only", []string{"iptables-legacy"}, kube, ModeLegacy, 0},
		{"nft only", []string{"iptables-nft"}, kube, ModeNFT, 0},
		{"plain iptables", []string{"iptables"}, kube, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved = nil
			tool, err := find(lookIn(tc.have...), save(tc.legacySave), testr.New(t))
			if err != nil {
				t.Fatal(err)
			}
			if tool.Mode != tc.mode || len(saved) != tc.saves {
				t.Fatalf("mode %q after %d save runs (%v), want %q after %d", tool.Mode, len(saved), saved, tc.mode, tc.saves)
			}
		})
	}
	if _, err := find(lookIn(), save(""), testr.New(t)); !errors.Is(err, ErrNoIPTables) {
		t.Fatalf("no binaries: %v, want ErrNoIPTables", err)
	}
}

// TestNSFindFollowsTheHost runs the detection against real rules, inside namespaces: rules
// written with iptables-legacy only make weft choose legacy, with iptables-nft only nft.
func TestNSFindFollowsTheHost(t *testing.T) {
	for _, bin := range []string{"iptables-legacy", "iptables-nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed: %v", bin, err)
		}
	}
	for _, tc := range []struct {
		writer, want string
	}{{"iptables-legacy", ModeLegacy}, {"iptables-nft", ModeNFT}} {
		t.Run(tc.writer, func(t *testing.T) {
			e := newNSEnv(t, tc.writer)
			// What a node running kube-proxy in that mode holds.
			e.run(t, "-t", "nat", "-N", "KUBE-SERVICES")
			e.run(t, "-t", "nat", "-A", "PREROUTING", "-j", "KUBE-SERVICES")
			e.run(t, "-t", "nat", "-A", "KUBE-SERVICES", "-d", "10.96.0.1/32", "-j", "RETURN")
			var tool *Tool
			e.do(t, func() (err error) {
				tool, err = Find(testr.New(t))
				return err
			})
			if tool.Mode != tc.want || !strings.HasSuffix(tool.Path, "iptables-"+tc.want) {
				t.Fatalf("Find chose %s (%s): %s; want %s", tool.Mode, tool.Path, tool.Reason, tc.want)
			}
			t.Logf("chose %s: %s", tool.Mode, tool.Reason)
			// And weft's rules go there: the Manager writes with the chosen binary.
			m := New(tool, Options{IPMasq: true}, testr.New(t))
			m.SetNetwork(firewall.Overlay{Network: testNetwork, Subnet: testSubnet})
			e.do(t, m.Sync)
			out, err := e.saveOf(tc.writer + "-save")
			if err != nil || !strings.Contains(out, "-A WEFT-POSTRTG") {
				t.Fatalf("%s-save shows no weft rules (%v):\n%s", tc.writer, err, out)
			}
		})
	}
}
