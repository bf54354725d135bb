package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	goipt "github.com/coreos/go-iptables/iptables"
	"k8s.io/klog/v2"
)

// A host's iptables has two back ends that do not see each other's rules: legacy (the
// x_tables kernel API) and nft (iptables rules kept in nf_tables). Rules weft writes with
// one are invisible to, and do not order with, a kube-proxy writing with the other; so weft
// uses the one the host uses, decided as kubernetes-sigs/iptables-wrappers decides it
// (chooseMode). Debian's iptables package ships both (iptables-legacy, iptables-nft).

// Modes of the iptables front end.
const (
	ModeLegacy = "legacy"
	ModeNFT    = "nft"
)

// ErrNoIPTables is returned by Find when there is no iptables binary on PATH.
var ErrNoIPTables = errors.New("iptables binary not found (install the iptables package, nft or legacy)")

// Tool is the iptables front end weft runs: the iptables and ip6tables binaries of one
// mode and their -restore companions.
type Tool struct {
	Mode   string // ModeLegacy, ModeNFT, or "" when only a plain `iptables` was found
	Path   string // the iptables binary
	Path6  string // the ip6tables binary of the same mode; "" when not installed
	Reason string // why this mode, for the log and the tests

	ipt          *goipt.IPTables
	restorePath  string          // "" when not installed
	ipt6         *goipt.IPTables // nil when there is no ip6tables
	restorePath6 string          // "" when not installed
}

func (t *Tool) runner() runner { return cmdRunner{IPTables: t.ipt, restorePath: t.restorePath} }

func (t *Tool) runner6() runner { return cmdRunner{IPTables: t.ipt6, restorePath: t.restorePath6} }

// saveTimeout bounds one *-save run of the detection, as iptables-wrappers does (an nft
// back end with a huge ruleset must not stall the start).
const saveTimeout = 5 * time.Second

// Find picks the iptables front end. With both iptables-legacy and iptables-nft installed,
// it reads both back ends' rules (iptables-legacy-save, iptables-nft-save and the ip6tables
// ones, in the calling thread's network namespace) and takes the back end the host uses;
// with only one of them, or only a plain `iptables`, it takes what there is. The ip6tables
// binary of the same mode writes the IPv6 rules; without one, only IPv4 rules can be kept
// (a Manager reports ErrNoIP6Tables when the network runs IPv6). It logs the choice and
// its reason. It changes nothing.
func Find(log klog.Logger) (*Tool, error) {
	return find(exec.LookPath, runSave, log)
}

func find(lookPath func(string) (string, error), save func(bin string) string, log klog.Logger) (*Tool, error) {
	_, errL := lookPath("iptables-legacy")
	_, errN := lookPath("iptables-nft")
	t := &Tool{}
	bin := "iptables"
	switch {
	case errL == nil && errN == nil:
		legacy := save("iptables-legacy-save") + save("ip6tables-legacy-save")
		nft := save("iptables-nft-save") + save("ip6tables-nft-save")
		t.Mode, t.Reason = chooseMode(legacy, nft)
		bin = "iptables-" + t.Mode
	case errL == nil:
		t.Mode, t.Reason, bin = ModeLegacy, "iptables-nft is not installed", "iptables-legacy"
	case errN == nil:
		t.Mode, t.Reason, bin = ModeNFT, "iptables-legacy is not installed", "iptables-nft"
	default:
		t.Reason = "neither iptables-legacy nor iptables-nft is installed; using iptables as it is"
	}
	path, err := lookPath(bin)
	if errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrNoIPTables, err)
	}
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	t.Path = path
	if t.ipt, err = goipt.New(goipt.Path(path), goipt.Timeout(lockWaitSeconds)); err != nil {
		return nil, fmt.Errorf("iptables %s: %w", path, err)
	}
	if rp, err := lookPath(bin + "-restore"); err == nil {
		t.restorePath = rp
	}
	v1, v2, v3 := t.ipt.GetIptablesVersion()
	bin6 := strings.Replace(bin, "iptables", "ip6tables", 1)
	if path6, err := lookPath(bin6); err != nil {
		log.Info("No ip6tables; IPv6 rules cannot be kept", "binary", bin6)
	} else if t.ipt6, err = goipt.New(goipt.IPFamily(goipt.ProtocolIPv6), goipt.Path(path6), goipt.Timeout(lockWaitSeconds)); err != nil {
		log.Info("ip6tables does not run; IPv6 rules cannot be kept", "binary", path6, "err", err.Error())
		t.ipt6 = nil
	} else {
		t.Path6 = path6
		if rp, err := lookPath(bin6 + "-restore"); err == nil {
			t.restorePath6 = rp
		}
	}
	log.Info("Using iptables", "mode", t.Mode, "binary", path, "ip6tables", t.Path6, "version", fmt.Sprintf("%d.%d.%d", v1, v2, v3), "reason", t.Reason)
	return t, nil
}

// runSave returns the output of bin (an *-save tool), or "" if it is missing or fails.
func runSave(bin string) string {
	path, err := exec.LookPath(bin)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), saveTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path)
	cmd.Stdout = &out
	if cmd.Run() != nil {
		return ""
	}
	return out.String()
}

// kubeletHints are the chains kubelet creates in the mangle table of the back end it uses.
var kubeletHints = []string{":KUBE-IPTABLES-HINT ", ":KUBE-KUBELET-CANARY "}

// chooseMode decides, purely, from the outputs of the legacy and nft *-save tools, which
// back end the host uses:
//
//  1. the one holding kubelet's hint chain (KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY), nft
//     first, as iptables-wrappers does;
//  2. else the one with more kube or weft rules (rules of chains named KUBE-* or WEFT-*);
//  3. else the one with more rules at all, nft when tied (nothing anywhere: a new host,
//     and nft is what current distributions and Debian's iptables default to).
func chooseMode(legacy, nft string) (mode, reason string) {
	for _, m := range []struct{ mode, save string }{{ModeNFT, nft}, {ModeLegacy, legacy}} {
		for _, l := range strings.Split(m.save, "\n") {
			for _, h := range kubeletHints {
				if strings.HasPrefix(l, h) {
					return m.mode, fmt.Sprintf("kubelet's %s chain is in the %s back end", strings.Trim(h, ": "), m.mode)
				}
			}
		}
	}
	lo, no := countRules(legacy, true), countRules(nft, true)
	if lo != no {
		mode := ModeNFT
		if lo > no {
			mode = ModeLegacy
		}
		return mode, fmt.Sprintf("%d kube/weft rules in legacy, %d in nft", lo, no)
	}
	la, na := countRules(legacy, false), countRules(nft, false)
	if la > na {
		return ModeLegacy, fmt.Sprintf("no kube/weft rules; %d rules in legacy, %d in nft", la, na)
	}
	return ModeNFT, fmt.Sprintf("no kube/weft rules; %d rules in legacy, %d in nft (nft when tied)", la, na)
}

// countRules counts the rule lines ("-A chain ...") of a save output; with owned, only
// those in or jumping to a KUBE-* or WEFT-* chain.
func countRules(save string, owned bool) int {
	n := 0
	for _, l := range strings.Split(save, "\n") {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		if !owned || strings.Contains(l, "KUBE-") || strings.Contains(l, "WEFT-") {
			n++
		}
	}
	return n
}
